import { callerOf } from '../../chat/policy.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const id = { type: 'string', minLength: 1, maxLength: 128 };
const blockeeParams = { type: 'object', required: ['blockee'], properties: { blockee: id } };
const roomParams = { type: 'object', required: ['roomID'], properties: { roomID: id } };
const banParams = { type: 'object', required: ['roomID', 'blockee'], properties: { roomID: id, blockee: id } };
const muteParams = { type: 'object', required: ['uid', 'room'], properties: { uid: id, room: id } };
// The mute pages show ?limit=&skip= on these calls: accepted and ignored.
const ignoredPaging = { type: 'object', properties: { limit: { type: 'integer' }, skip: { type: 'integer' } } };
const noBody = { type: ['object', 'null'] };
const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const J = `-H 'Content-Type: application/json'`;

/** Personal blocks, room bans and the platform's mute of a room for a user (spec §3.8). */
export function moderationRoutes({ moderation }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/blockStatus/my/:blockee',
      auth: 'user',
      scope: 'moderation:write',
      summary: 'Block a user: neither of the two can send in their direct room until unblocked (group rooms unaffected); `room` is their direct room id',
      example: `curl -X POST $BASE/blockStatus/my/u2 ${H}`,
      schema: { params: blockeeParams, body: noBody },
      handler: async ({ actor, params }) => moderation.block(callerOf(actor), params.blockee),
    },
    {
      method: 'GET',
      url: '/blockStatus/my',
      auth: 'user',
      scope: 'users:read',
      summary: "The caller's own blocks, newest first: `{data: [{blockee, blocker, room, createdAt, updatedAt}]}`",
      example: `curl $BASE/blockStatus/my ${H}`,
      handler: async ({ actor }) => moderation.listBlocks(callerOf(actor)),
    },
    {
      method: 'GET',
      url: '/blockStatus/my/:blockee',
      auth: 'user',
      scope: 'users:read',
      summary: 'One block of the caller (404 BLOCK_NOT_FOUND when the caller has not blocked that user)',
      example: `curl $BASE/blockStatus/my/u2 ${H}`,
      schema: { params: blockeeParams },
      handler: async ({ actor, params }) => moderation.getBlock(callerOf(actor), params.blockee),
    },
    {
      method: 'DELETE',
      url: '/blockStatus/my/:blockee',
      auth: 'user',
      scope: 'moderation:write',
      summary: 'Unblock a user; returns the removed record (the direct room and its history are kept)',
      example: `curl -X DELETE $BASE/blockStatus/my/u2 ${H}`,
      schema: { params: blockeeParams },
      handler: async ({ actor, params }) => moderation.unblock(callerOf(actor), params.blockee),
    },
    {
      method: 'POST',
      url: '/blockStatus/room/:roomID/:blockee',
      auth: 'either',
      scope: 'moderation:write',
      summary: 'Ban a user from a room (platform, owner, managers; not a user of the same rank or above): no sending, joining or reading it; optional `unblockAt` (ISO or ms) ends the ban',
      example: `curl -X POST $BASE/blockStatus/room/demo/u3 ${H} ${J} -d '{"unblockAt":"2030-01-01T00:00:00Z"}'`,
      schema: { params: banParams, body: { type: ['object', 'null'], properties: { unblockAt: { type: ['string', 'integer'] } } } },
      handler: async ({ actor, params, body }) => moderation.ban(callerOf(actor), params.roomID, params.blockee, body?.unblockAt),
    },
    {
      method: 'GET',
      url: '/blockStatus/room/:roomID',
      auth: 'either',
      scope: 'rooms:read',
      summary: "The room's active bans (platform, owner, managers): `{data: [{blockee, blocker, room, createdAt, updatedAt, unblockAt?}]}`",
      example: `curl $BASE/blockStatus/room/demo ${H}`,
      schema: { params: roomParams },
      handler: async ({ actor, params }) => moderation.listBans(callerOf(actor), params.roomID),
    },
    {
      method: 'DELETE',
      url: '/blockStatus/room/:roomID/:blockee',
      auth: 'either',
      scope: 'moderation:write',
      summary: 'Lift a ban (platform, owner, managers); returns the lifted record, or the current state (`banned: false`) when no ban was in force',
      example: `curl -X DELETE $BASE/blockStatus/room/demo/u3 ${H}`,
      schema: { params: banParams },
      handler: async ({ actor, params }) => moderation.unban(callerOf(actor), params.roomID, params.blockee),
    },
    {
      method: 'POST',
      url: '/admin/clients/:uid/mute/:room',
      auth: 'admin',
      scope: 'moderation:write',
      summary: "Mute a room's notifications for a user (what POST /me/mute/:room does, on their behalf); returns the user's Client with `mute`",
      example: `curl -X POST $BASE/admin/clients/u1/mute/demo -H "IM-API-KEY: $API_KEY"`,
      schema: { params: muteParams, querystring: ignoredPaging, body: noBody },
      handler: async ({ actor, params }) => moderation.adminMute(callerOf(actor), params.uid, params.room, true),
    },
    {
      method: 'DELETE',
      url: '/admin/clients/:uid/mute/:room',
      auth: 'admin',
      scope: 'moderation:write',
      summary: "Unmute a room for a user (idempotent: a room that was not muted changes nothing); returns the user's Client with `mute`",
      example: `curl -X DELETE $BASE/admin/clients/u1/mute/demo -H "IM-API-KEY: $API_KEY"`,
      schema: { params: muteParams, querystring: ignoredPaging },
      handler: async ({ actor, params }) => moderation.adminMute(callerOf(actor), params.uid, params.room, false),
    },
  ]);
}
