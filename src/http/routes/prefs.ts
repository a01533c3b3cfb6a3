import { callerOf } from '../../chat/policy.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const id = { type: 'string', minLength: 1, maxLength: 128 };
const roomParams = { type: 'object', required: ['id'], properties: { id } };
const muteParams = { type: 'object', required: ['room'], properties: { room: id } };
const keyParams = { type: 'object', required: ['key'], properties: { key: { type: 'string', minLength: 1, maxLength: 256 } } };
const noBody = { type: ['object', 'null'] };
// Types only: the service checks lengths and colors and names the field it refuses.
const roomPrefBody = {
  type: 'object',
  properties: {
    tags: { type: 'array', items: { type: 'string' } },
    tagColors: { type: 'object', additionalProperties: { type: 'string' } },
    folder: { type: ['string', 'null'] },
    hidden: { type: 'boolean' },
    sticky: { type: 'boolean' },
    muted: { type: 'boolean' },
    translation: {},
  },
};
const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const J = `-H 'Content-Type: application/json'`;

/** Mute, room and user preferences, typing and badges (spec §3.5, §3.7 and the SDK routes of realtime §5). */
export function prefRoutes({ prefs }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/me/mute/:room',
      auth: 'user',
      scope: 'users:write',
      summary: "Mute a room's notifications for the caller (members only); returns the caller's Client with `mute`",
      example: `curl -X POST $BASE/me/mute/demo ${H}`,
      schema: { params: muteParams, body: noBody },
      handler: async ({ actor, params }) => prefs.mute(callerOf(actor), params.room, true),
    },
    {
      method: 'DELETE',
      url: '/me/mute/:room',
      auth: 'user',
      scope: 'users:write',
      summary: "Unmute a room for the caller; returns the caller's Client with `mute`",
      example: `curl -X DELETE $BASE/me/mute/demo ${H}`,
      schema: { params: muteParams, body: noBody },
      handler: async ({ actor, params }) => prefs.mute(callerOf(actor), params.room, false),
    },
    {
      method: 'POST',
      url: '/roomPrefs/:id',
      auth: 'user',
      scope: 'users:write',
      summary: "Set the caller's preference for a room (tags, tagColors, folder, hidden, sticky, muted, translation; merged); returns {room, ...pref}",
      example: `curl -X POST $BASE/roomPrefs/demo ${H} ${J} -d '{"tags":["work"],"tagColors":{"work":"#ff8800"},"sticky":true}'`,
      schema: { params: roomParams, body: roomPrefBody },
      handler: async ({ actor, params, body }) => prefs.setRoomPref(callerOf(actor), params.id, '', body),
    },
    {
      method: 'POST',
      url: '/roomPrefs/:id/group/:tag',
      auth: 'user',
      scope: 'users:write',
      summary: "Set the caller's preference for a room within a room-tag scope (same fields); returns {room, roomTag, ...pref}",
      example: `curl -X POST $BASE/roomPrefs/demo/group/support ${H} ${J} -d '{"folder":"urgent"}'`,
      schema: { params: { type: 'object', required: ['id', 'tag'], properties: { id, tag: id } }, body: roomPrefBody },
      handler: async ({ actor, params, body }) => prefs.setRoomPref(callerOf(actor), params.id, params.tag, body),
    },
    {
      method: 'GET',
      url: '/me/pref',
      auth: 'user',
      scope: 'users:read',
      summary: "The caller's preferences as [{key, data}]",
      example: `curl $BASE/me/pref ${H}`,
      handler: async ({ actor }) => prefs.userPrefs(callerOf(actor)),
    },
    {
      method: 'POST',
      url: '/me/pref/:key',
      auth: 'user',
      scope: 'users:write',
      summary: 'Store a preference: the body (any JSON, at most 64 KB) becomes its data; returns {key, data}',
      example: `curl -X POST $BASE/me/pref/folders-meta ${H} ${J} -d '[{"key":"f1","name":"Work"}]'`,
      schema: { params: keyParams },
      handler: async ({ actor, params, body }) => prefs.setUserPref(callerOf(actor), params.key, body),
    },
    {
      method: 'DELETE',
      url: '/me/pref/:key',
      auth: 'user',
      scope: 'users:write',
      summary: 'Delete a preference (404 PREF_NOT_FOUND when absent)',
      example: `curl -X DELETE $BASE/me/pref/folders-meta ${H}`,
      schema: { params: keyParams, body: noBody },
      handler: async ({ actor, params }) => prefs.deleteUserPref(callerOf(actor), params.key),
    },
    {
      method: 'POST',
      url: '/rooms/:id/typing',
      auth: 'user',
      scope: 'messages:write',
      summary: 'Tell the other members the caller is typing (members only, not stored); returns {message, room, sender}',
      example: `curl -X POST $BASE/rooms/demo/typing ${H} ${J} -d '{"message":"typing..."}'`,
      schema: { params: roomParams, body: { type: ['object', 'null'], properties: { message: { type: ['string', 'null'], maxLength: 4096 } } } },
      handler: async ({ actor, params, body }) => prefs.typing(callerOf(actor), params.id, body?.message ?? undefined),
    },
    {
      method: 'GET',
      url: '/me/badge',
      auth: 'user',
      scope: 'rooms:read',
      summary: "The caller's unread count over active rooms; repeated roomTags keep rooms having all of them",
      example: `curl -G $BASE/me/badge ${H} -d roomTags=work -d roomTags=team-a`,
      schema: { querystring: { type: 'object', properties: { roomTags: { type: 'array', items: { type: 'string' } } } } },
      handler: async ({ actor, query }) => prefs.badge(callerOf(actor), query.roomTags ?? []),
    },
    {
      method: 'POST',
      url: '/badges/byRoomTags',
      auth: 'user',
      scope: 'rooms:read',
      summary: "The caller's unread per room tag (omitted or [] tags = every tag of their rooms) and totalBadge over all their rooms",
      example: `curl -X POST $BASE/badges/byRoomTags ${H} ${J} -d '{"tags":["work","sample"]}'`,
      // tags are checked by the service, which answers INVALID_TAGS as the spec documents.
      schema: { body: { type: ['object', 'null'], properties: { tags: {} } } },
      handler: async ({ actor, body }) => prefs.badgesByTags(callerOf(actor), body?.tags),
    },
  ]);
}
