import { callerOf } from '../../chat/policy.js';
import { MAX_PAGE } from '../../chat/messages-service.js';
import type { Services } from '../../services.js';
import { Described, defineRoutes } from '../route.js';

const id = { type: 'string', minLength: 1, maxLength: 128 };
const messageId = { type: 'string', pattern: '^[0-9a-f]{24}$' };
const roomParams = { type: 'object', required: ['id'], properties: { id } };
const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const J = `-H 'Content-Type: application/json'`;
const limit = { type: 'integer', minimum: 1, maximum: MAX_PAGE };

/** Messages (spec §3.6 and the SDK routes of realtime §5). */
export function messageRoutes({ messages }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/rooms/:id/message',
      auth: 'either',
      scope: 'messages:write',
      summary: 'Send a message as the caller; with an existing `_id` edit it (type kept, editedAt set); with `messageType: "recall"` recall it',
      example: `curl -X POST $BASE/rooms/demo/message ${H} ${J} -d '{"messageType":"text","message":"Hello"}'`,
      schema: {
        params: roomParams,
        body: { type: 'object', properties: { _id: messageId, messageType: { type: 'string', minLength: 1, maxLength: 64 }, message: {}, mentions: { type: 'array', items: id, maxItems: 1000 } } },
      },
      handler: async ({ actor, params, body }) => messages.send(callerOf(actor), params.id, body),
      recoverSent: async ({ actor }, messageId) => messages.sent(callerOf(actor), messageId),
    },
    {
      method: 'POST',
      url: '/messages',
      auth: 'admin',
      scope: 'users:write',
      summary: 'Send a message as any sender (`sender`, e.g. a user id or "system"); the result carries the sender as an id',
      example: `curl -X POST $BASE/messages -H "IM-API-KEY: $API_KEY" ${J} -d '{"room":"demo","sender":"u1","messageType":"text","message":"Hi"}'`,
      schema: {
        body: {
          type: 'object',
          required: ['room', 'message', 'messageType'],
          properties: { room: id, sender: id, message: {}, messageType: { type: 'string', minLength: 1, maxLength: 64 }, push: { type: ['boolean', 'string'], maxLength: 1000 }, skipTotalBadge: { type: 'boolean' }, mentions: { type: 'array', items: id } },
        },
      },
      handler: async ({ actor, body }) => messages.adminSend(callerOf(actor), body),
      recoverSent: async ({ actor, body }, messageId) => messages.sent(callerOf(actor), messageId, { body }),
    },
    {
      method: 'GET',
      url: '/rooms/:id/messages/v3',
      auth: 'either',
      scope: 'messages:read',
      summary: 'Room history: newest first by default; beforeMessage pages back, afterMessage/afterTime sync forward; sortOrder asc|desc',
      example: `curl -G $BASE/rooms/demo/messages/v3 ${H} -d limit=20`,
      schema: {
        params: roomParams,
        querystring: {
          type: 'object',
          properties: {
            beforeMessage: messageId,
            afterMessage: messageId,
            afterTime: { type: 'string', maxLength: 64 },
            timeRangeField: { type: 'string', enum: ['updatedAt', 'createdAt', 'messageTime'] },
            sortOrder: { type: 'string', enum: ['asc', 'desc'] },
            limit,
          },
        },
      },
      handler: async ({ actor, params, query }) => messages.history(callerOf(actor), params.id, query),
    },
    {
      method: 'GET',
      url: '/rooms/:id/messages',
      auth: 'either',
      scope: 'messages:read',
      summary: 'Room history, legacy form: newest first, beforeMessage pages back',
      example: `curl -G $BASE/rooms/demo/messages ${H} -d limit=20`,
      schema: { params: roomParams, querystring: { type: 'object', properties: { beforeMessage: messageId, limit } } },
      handler: async ({ actor, params, query }) => messages.legacyHistory(callerOf(actor), params.id, query),
    },
    {
      method: 'GET',
      url: '/rooms/:id/messages/:messageId',
      auth: 'either',
      scope: 'messages:read',
      summary: 'A message with up to `before` older and `after` newer messages (default 10 each), oldest first',
      example: `curl -G $BASE/rooms/demo/messages/<message id> ${H} -d before=5 -d after=5`,
      schema: {
        params: { type: 'object', required: ['id', 'messageId'], properties: { id, messageId } },
        querystring: { type: 'object', properties: { before: { type: 'integer', minimum: 0, maximum: MAX_PAGE, default: 10 }, after: { type: 'integer', minimum: 0, maximum: MAX_PAGE, default: 10 } } },
      },
      handler: async ({ actor, params, query }) => messages.around(callerOf(actor), params.id, params.messageId, query.before, query.after),
    },
    {
      method: 'DELETE',
      url: '/rooms/:id/messages/:messageId',
      auth: 'either',
      scope: 'messages:write',
      summary: 'Delete one message, or every message with `_all` (owner, managers, platform)',
      example: `curl -X DELETE $BASE/rooms/demo/messages/_all -H "IM-API-KEY: $API_KEY"`,
      schema: { params: { type: 'object', required: ['id', 'messageId'], properties: { id, messageId: { type: 'string', pattern: '^([0-9a-f]{24}|_all)$' } } } },
      handler: async ({ actor, params }) =>
        new Described(
          params.messageId === '_all' ? 'All messages deleted successfully' : 'Message deleted successfully',
          await messages.delete(callerOf(actor), params.id, params.messageId),
        ),
    },
    {
      method: 'POST',
      url: '/messages/:id/pin',
      auth: 'either',
      scope: 'users:write',
      summary: 'Pin a message (owner, managers, platform); the room’s previously pinned message is unpinned',
      example: `curl -X POST $BASE/messages/<message id>/pin ${H}`,
      schema: { params: { type: 'object', required: ['id'], properties: { id: messageId } } },
      handler: async ({ actor, params }) => messages.pin(callerOf(actor), params.id, true),
    },
    {
      method: 'DELETE',
      url: '/messages/:id/pin',
      auth: 'either',
      scope: 'users:write',
      summary: 'Unpin a message (owner, managers, platform)',
      example: `curl -X DELETE $BASE/messages/<message id>/pin ${H}`,
      schema: { params: { type: 'object', required: ['id'], properties: { id: messageId } } },
      handler: async ({ actor, params }) => messages.pin(callerOf(actor), params.id, false),
    },
  ]);
}
