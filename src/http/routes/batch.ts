import { MAX_BATCH_ITEMS } from '../../chat/batch-service.js';
import { callerOf } from '../../chat/policy.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

/** Batch send (spec §3.6 S2): accepted at once, executed by the durable batch worker. */
export function batchRoutes({ batch }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/messages/batch',
      auth: 'admin',
      scope: 'users:write',
      summary: 'Queue one templated message ($name$ placeholders) for many rooms or receivers; returns {batchID, count} at once',
      example: `curl -X POST $BASE/messages/batch -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"messageType":"text","message":"Hi $name$","sender":"system","paras":[{"room":"demo","$name$":"all"}]}'`,
      schema: {
        body: {
          type: 'object',
          required: ['message', 'messageType', 'paras'],
          properties: {
            message: { type: 'string' },
            messageType: { type: 'string', minLength: 1, maxLength: 64 },
            sender: { type: 'string', minLength: 1, maxLength: 128 },
            push: { type: ['boolean', 'string'], maxLength: 1000 },
            skipTotalBadge: { type: 'boolean' },
            paras: { type: 'array', minItems: 1, maxItems: MAX_BATCH_ITEMS, items: { type: 'object' } },
          },
        },
      },
      handler: async ({ actor, body }) => batch.accept(callerOf(actor), body),
    },
    {
      method: 'GET',
      url: '/messages/batch/:batchID',
      auth: 'admin',
      scope: 'users:read',
      summary: 'Progress of a batch: status (running/done), count, sent, failed, pending, the first errors',
      example: 'curl $BASE/messages/batch/<batchID> -H "IM-API-KEY: $API_KEY"',
      schema: { params: { type: 'object', required: ['batchID'], properties: { batchID: { type: 'string', minLength: 1, maxLength: 64 } } } },
      handler: async ({ actor, params }) => batch.progress(callerOf(actor), params.batchID),
    },
  ]);
}
