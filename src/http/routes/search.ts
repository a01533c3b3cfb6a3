import { callerOf } from '../../chat/policy.js';
import { MAX_REACTION } from '../../chat/reactions-service.js';
import { MAX_KEYWORD, MAX_SEARCH_LIMIT } from '../../chat/search-service.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const id = { type: 'string', minLength: 1, maxLength: 128 };
const messageId = { type: 'string', pattern: '^[0-9a-f]{24}$' };
const messageParams = { type: 'object', required: ['id'], properties: { id: messageId } };
const keyword = { type: 'string', minLength: 1, maxLength: MAX_KEYWORD };
const limit = { type: 'integer', minimum: 1, maximum: MAX_SEARCH_LIMIT };
const reaction = { type: 'string', minLength: 1, maxLength: MAX_REACTION };
const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const J = `-H 'Content-Type: application/json'`;

/**
 * Search, message queries, reactions and messages hidden for oneself (spec S8 and the SDK routes of realtime §5).
 * Reading routes accept the API key alone (every room of the application); with a user they only reach that
 * user's rooms.
 */
export function searchRoutes({ search, reactions, hiddenMessages }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/search',
      auth: 'either',
      scope: 'messages:read',
      summary:
        'Search the caller’s rooms: `type` (one or more of messages, roomName, roomMember, roomTags, roomPrefTags, roomPrefFolder, files: names of files shared in the rooms), `keyword` (case-insensitive), optional `room`, `roomTags` (all of them) and `limit` (default 50, max 200); one result list per type',
      example: `curl -X POST $BASE/search ${H} ${J} -d '{"type":["messages","roomName"],"keyword":"hello"}'`,
      schema: {
        body: {
          type: 'object',
          // `type` is checked by the service, which answers INVALID_SEARCH_TYPE for a missing or unknown one.
          required: ['keyword'],
          properties: {
            type: { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 16 }] },
            keyword,
            room: id,
            roomTags: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 256 }, maxItems: 100 },
            limit,
          },
        },
      },
      handler: async ({ actor, body }) => search.search(callerOf(actor), body),
    },
    {
      method: 'POST',
      url: '/messages/search',
      auth: 'either',
      scope: 'users:write',
      summary: 'Messages of the caller’s rooms whose text contains `message` (case-insensitive), newest first; `limit` default 50, max 200',
      example: `curl -X POST $BASE/messages/search ${H} ${J} -d '{"message":"hello"}'`,
      schema: { body: { type: 'object', required: ['message'], properties: { message: keyword, limit } } },
      handler: async ({ actor, body }) => search.searchMessages(callerOf(actor), body.message, body.limit),
    },
    {
      method: 'GET',
      url: '/messages',
      auth: 'either',
      scope: 'users:read',
      summary:
        'Query messages of the caller’s rooms, newest first: `q` is JSON with `room`, `sender`, `messageType` (a string, {"$eq"} or {"$in"}) and `message` (a string or {"$regex","$options"} of literal text, ^, $, . and .*); `limit` default 50, max 200',
      example: `curl -G $BASE/messages ${H} --data-urlencode 'q={"room":"demo","message":{"$regex":"hello","$options":"i"}}' -d limit=20`,
      schema: { querystring: { type: 'object', properties: { q: { type: 'string', maxLength: 16_384 }, limit } } },
      handler: async ({ actor, query }) => search.queryMessages(callerOf(actor), query.q, query.limit),
    },
    {
      method: 'POST',
      url: '/messages/:id/reaction',
      auth: 'user',
      scope: 'users:write',
      summary: 'Add the caller’s `reaction` (1-64 characters) to a message of one of their rooms; adding it again changes nothing. Returns the message',
      example: `curl -X POST $BASE/messages/<message id>/reaction ${H} ${J} -d '{"reaction":"👍"}'`,
      schema: { params: messageParams, body: { type: 'object', required: ['reaction'], properties: { reaction } } },
      handler: async ({ actor, params, body }) => reactions.react(callerOf(actor), params.id, body.reaction),
    },
    {
      method: 'DELETE',
      url: '/messages/:id/reaction',
      auth: 'user',
      scope: 'users:write',
      summary: 'Remove the caller’s `reaction` (query or body) from a message, or all of their reactions on it when none is given. Returns the message',
      example: `curl -X DELETE "$BASE/messages/<message id>/reaction?reaction=%F0%9F%91%8D" ${H}`,
      schema: {
        params: messageParams,
        querystring: { type: 'object', properties: { reaction } },
        body: { type: ['object', 'null'], properties: { reaction } },
      },
      handler: async ({ actor, params, query, body }) => reactions.unreact(callerOf(actor), params.id, query.reaction ?? body?.reaction),
    },
    {
      method: 'POST',
      url: '/messages/user-delete',
      auth: 'user',
      scope: 'users:write',
      summary: 'Hide messages of a room for the caller only (`room`, `messages`: ids of that room); returns the caller’s hidden ids in the room',
      example: `curl -X POST $BASE/messages/user-delete ${H} ${J} -d '{"room":"demo","messages":["<message id>"]}'`,
      schema: {
        body: { type: 'object', required: ['room', 'messages'], properties: { room: id, messages: { type: 'array', items: messageId, minItems: 1, maxItems: 1000 } } },
      },
      handler: async ({ actor, body }) => hiddenMessages.hide(callerOf(actor), body.room, body.messages),
    },
    {
      method: 'GET',
      url: '/messages/user-delete',
      auth: 'user',
      scope: 'users:read',
      summary: 'Ids of the messages the caller hid for themself, in one `room` or in all',
      example: `curl -G $BASE/messages/user-delete ${H} -d room=demo`,
      schema: { querystring: { type: 'object', properties: { room: id } } },
      handler: async ({ actor, query }) => hiddenMessages.hidden(callerOf(actor), query.room),
    },
    {
      method: 'POST',
      url: '/messages/user-delete/all-in-room',
      auth: 'user',
      scope: 'users:write',
      summary: 'Hide every message the `room` holds now, for the caller only; returns the caller’s hidden ids in the room',
      example: `curl -X POST $BASE/messages/user-delete/all-in-room ${H} ${J} -d '{"room":"demo"}'`,
      schema: { body: { type: 'object', required: ['room'], properties: { room: id } } },
      handler: async ({ actor, body }) => hiddenMessages.hideAll(callerOf(actor), body.room),
    },
  ]);
}
