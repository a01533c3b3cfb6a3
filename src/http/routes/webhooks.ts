import type { Services } from '../../services.js';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/outbox.js';
import { defineRoutes } from '../route.js';

const id = { type: 'string', minLength: 1, maxLength: 96 };

/** Application-level webhook endpoints and the delivery log (docs/webhooks.md). */
export function webhookRoutes({ webhooks }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/admin/webhooks',
      auth: 'admin',
      scope: 'webhooks:write',
      summary: 'Add a webhook endpoint subscribed to event types ("*" = all); the answer holds its signing secret, shown this once',
      example: `curl -X POST $BASE/admin/webhooks -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"url":"https://example.com/hooks/imkit","events":["message.created","members.added"]}'`,
      schema: {
        body: {
          type: 'object',
          required: ['url', 'events'],
          additionalProperties: false,
          properties: {
            url: { type: 'string', minLength: 1, maxLength: 2048 },
            events: { type: 'array', minItems: 1, maxItems: WEBHOOK_EVENT_TYPES.length + 1, items: { type: 'string', minLength: 1, maxLength: 40 } },
            key: { type: 'string', minLength: 1, maxLength: 128 },
            description: { type: 'string', maxLength: 500 },
          },
        },
      },
      handler: async ({ actor, body }) => webhooks.create(actor.app.id, body),
    },
    {
      method: 'GET',
      url: '/admin/webhooks',
      auth: 'admin',
      scope: 'webhooks:write',
      summary: "The application's webhook endpoints (never their secrets)",
      example: 'curl $BASE/admin/webhooks -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => webhooks.list(actor.app.id),
    },
    {
      method: 'GET',
      url: '/admin/webhooks/deliveries',
      auth: 'admin',
      scope: 'webhooks:write',
      summary: 'The delivery log, newest first: event, target, status, attempts, last status code, next attempt (filters endpoint, room, status; page with before = the last id)',
      example: 'curl -G $BASE/admin/webhooks/deliveries -H "IM-API-KEY: $API_KEY" -d status=failed -d limit=20',
      schema: {
        querystring: {
          type: 'object',
          properties: {
            endpoint: id,
            room: { type: 'string', minLength: 1, maxLength: 128 },
            status: { type: 'string', enum: ['pending', 'sending', 'delivered', 'failed', 'refused'] },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
            before: id,
          },
        },
      },
      handler: async ({ actor, query }) => webhooks.deliveries(actor.app.id, query),
    },
    {
      method: 'POST',
      url: '/admin/webhooks/deliveries/:id/retry',
      auth: 'admin',
      scope: 'webhooks:write',
      summary: 'Make a failed, refused or waiting delivery due now (one more attempt)',
      example: 'curl -X POST $BASE/admin/webhooks/deliveries/$DELIVERY_ID/retry -H "IM-API-KEY: $API_KEY"',
      schema: { params: { type: 'object', properties: { id } } },
      handler: async ({ actor, params }) => webhooks.retry(actor.app.id, params.id),
    },
    {
      method: 'DELETE',
      url: '/admin/webhooks/:id',
      auth: 'admin',
      scope: 'webhooks:write',
      summary: 'Remove a webhook endpoint; its waiting deliveries end as failed',
      example: 'curl -X DELETE $BASE/admin/webhooks/$ENDPOINT_ID -H "IM-API-KEY: $API_KEY"',
      schema: { params: { type: 'object', properties: { id } } },
      handler: async ({ actor, params }) => webhooks.delete(actor.app.id, params.id),
    },
    {
      method: 'POST',
      url: '/admin/webhooks/:id/rotate-secret',
      auth: 'admin',
      scope: 'webhooks:write',
      summary: 'A new signing secret (shown this once); the previous one keeps signing for expiresIn (default 24h, at most 7d, 0 = not at all)',
      example: `curl -X POST $BASE/admin/webhooks/$ENDPOINT_ID/rotate-secret -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"expiresIn":"24h"}'`,
      schema: {
        params: { type: 'object', properties: { id } },
        body: { type: ['object', 'null'], additionalProperties: false, properties: { expiresIn: { type: 'string', maxLength: 16 } } },
      },
      handler: async ({ actor, params, body }) => webhooks.rotate(actor.app.id, params.id, body?.expiresIn),
    },
  ]);
}
