import { callerOf } from '../../chat/policy.js';
import { MAX_ROOM_IDS_PAGE, MAX_ROOMS_PAGE, type RoomInput } from '../../chat/rooms-service.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const id = { type: 'string', minLength: 1, maxLength: 128 };
const ids = { type: 'array', items: id, maxItems: 10_000 };
const str = (max = 4096) => ({ type: 'string', maxLength: max });
const roomParams = { type: 'object', required: ['id'], properties: { id } };
const roomFields = {
  _id: id,
  name: str(256),
  cover: str(),
  description: str(16_384),
  roomType: { type: 'string', enum: ['direct', 'group'] },
  roomTags: { type: 'array', items: str(256), maxItems: 100 },
  webhook: str(),
  botMode: { type: 'boolean' },
  botState: str(256),
  extParams: str(16_384),
  encrypted: { type: 'boolean' },
  opening: { type: 'integer', enum: [0, 1] },
  owner: id,
  managers: ids,
  systemMessage: { type: 'boolean' },
  invitationRequired: { type: 'boolean' },
  members: ids,
  invitee: { anyOf: [id, ids] },
  invitees: ids,
};
const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const J = `-H 'Content-Type: application/json'`;

function roomInput(body: Record<string, unknown>): RoomInput {
  const invitee = body.invitee;
  const members = [
    ...((body.members as string[] | undefined) ?? []),
    ...((body.invitees as string[] | undefined) ?? []),
    ...(typeof invitee === 'string' ? [invitee] : ((invitee as string[] | undefined) ?? [])),
  ];
  return { ...(body as RoomInput), members };
}

/** Rooms and members (spec §3.3, §3.4 and the SDK routes of realtime §5). */
export function roomRoutes({ rooms }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/rooms',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Create a room. With the API key alone the caller does not join (members from `members`); a user creates it, joins and owns a group room',
      example: `curl -X POST $BASE/rooms -H "IM-API-KEY: $API_KEY" ${J} -d '{"_id":"demo","name":"Demo","roomType":"group","members":["u1","u2"]}'`,
      schema: { body: { type: 'object', properties: roomFields } },
      handler: async ({ actor, body }) => rooms.create(callerOf(actor), roomInput(body), 'create'),
    },
    {
      method: 'POST',
      url: '/rooms/createAndJoin',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Create a room (or join it if it exists) with the caller and `invitee`; a direct room without _id gets the md5 id of its two members',
      example: `curl -X POST $BASE/rooms/createAndJoin ${H} ${J} -d '{"roomType":"direct","invitee":"u2"}'`,
      schema: { body: { type: 'object', properties: roomFields } },
      handler: async ({ actor, body }) => rooms.create(callerOf(actor), roomInput(body), 'createAndJoin'),
    },
    {
      method: 'GET',
      url: '/rooms',
      auth: 'user',
      scope: 'rooms:read',
      summary: `The caller's active rooms with their own unread, muted and pref (sort, skip, limit (0, the default, = a full page of ${MAX_ROOMS_PAGE}; totalCount counts all), updatedAfter, q, pref, sortUnreadFirst)`,
      example: `curl -G $BASE/rooms ${H} -d sort=-lastMessage -d limit=20`,
      schema: {
        querystring: {
          type: 'object',
          properties: {
            sort: str(200),
            skip: { type: 'integer', minimum: 0 },
            limit: { type: 'integer', minimum: 0, maximum: MAX_ROOMS_PAGE },
            updatedAfter: str(64),
            q: str(2048),
            pref: str(2048),
            sortUnreadFirst: { type: 'integer' },
          },
        },
      },
      handler: async ({ actor, query }) => rooms.list(callerOf(actor), query),
    },
    {
      method: 'GET',
      url: '/rooms/ids',
      auth: 'user',
      scope: 'rooms:read',
      summary: `Ids of the caller's active rooms (same filters as GET /rooms; limit 0, the default, = a full page of ${MAX_ROOM_IDS_PAGE})`,
      example: `curl -G $BASE/rooms/ids ${H} -d limit=500`,
      schema: { querystring: { type: 'object', properties: { skip: { type: 'integer', minimum: 0 }, limit: { type: 'integer', minimum: 0, maximum: MAX_ROOM_IDS_PAGE }, sort: str(200), updatedAfter: str(64) } } },
      handler: async ({ actor, query }) => rooms.listIds(callerOf(actor), query),
    },
    {
      method: 'GET',
      url: '/rooms/:id',
      auth: 'either',
      scope: 'rooms:read',
      summary: 'A room with members, memberProperties and the caller’s unread and isSuperuser (members only)',
      example: `curl $BASE/rooms/demo ${H}`,
      schema: { params: roomParams },
      handler: async ({ actor, params }) => rooms.get(callerOf(actor), params.id),
    },
    {
      method: 'PUT',
      url: '/rooms/:id',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Update a room (owner, managers, platform); `status: 0` freezes it, `1` unfreezes; owner/managers need the owner or platform',
      example: `curl -X PUT $BASE/rooms/demo ${H} ${J} -d '{"name":"New name"}'`,
      schema: { params: roomParams, body: { type: 'object', properties: { ...roomFields, status: { type: 'integer', enum: [0, 1] } } } },
      handler: async ({ actor, params, body }) => rooms.update(callerOf(actor), params.id, body),
    },
    {
      method: 'DELETE',
      url: '/rooms/:id',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Delete a room and all of its messages (owner or platform)',
      example: `curl -X DELETE $BASE/rooms/demo -H "IM-API-KEY: $API_KEY"`,
      schema: { params: roomParams },
      handler: async ({ actor, params }) => rooms.delete(callerOf(actor), params.id),
    },
    {
      method: 'POST',
      url: '/rooms/:id/join',
      auth: 'user',
      scope: 'rooms:write',
      summary: 'Join an open group room, or one the caller was invited to (`systemMessage` posts joinRoom)',
      example: `curl -X POST $BASE/rooms/demo/join ${H} ${J} -d '{"systemMessage":true}'`,
      schema: { params: roomParams, body: { type: ['object', 'null'], properties: { systemMessage: { type: 'boolean' } } } },
      handler: async ({ actor, params, body }) => rooms.join(callerOf(actor), params.id, body?.systemMessage === true),
    },
    {
      method: 'PUT',
      url: '/rooms/:id/bot',
      auth: 'either',
      scope: 'rooms:write',
      summary: "Set the room's botState",
      example: `curl -X PUT $BASE/rooms/demo/bot ${H} ${J} -d '{"botState":"CONTACT"}'`,
      schema: { params: roomParams, body: { type: 'object', required: ['botState'], properties: { botState: str(256) } } },
      handler: async ({ actor, params, body }) => rooms.setBotState(callerOf(actor), params.id, body.botState),
    },
    {
      method: 'GET',
      url: '/rooms/:id/count',
      auth: 'either',
      scope: 'rooms:read',
      summary: 'How many messages were sent to the room after timeInMS',
      example: `curl -G $BASE/rooms/demo/count ${H} -d timeInMS=0`,
      schema: { params: roomParams, querystring: { type: 'object', properties: { timeInMS: { type: 'integer', minimum: 0 } } } },
      handler: async ({ actor, params, query }) => rooms.count(callerOf(actor), params.id, query.timeInMS),
    },
    {
      method: 'POST',
      url: '/rooms/:id/members',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Add members (`invitees` or `members`); with `invitationRequired` (group rooms) invite them instead; `systemMessage` posts addMember(s)',
      example: `curl -X POST $BASE/rooms/demo/members ${H} ${J} -d '{"invitees":["u3"],"systemMessage":true}'`,
      schema: { params: roomParams, body: { type: 'object', properties: { invitees: ids, members: ids, systemMessage: { type: 'boolean' }, invitationRequired: { type: 'boolean' } } } },
      handler: async ({ actor, params, body }) =>
        rooms.addMembers(callerOf(actor), params.id, [...(body.invitees ?? []), ...(body.members ?? [])], {
          systemMessage: body.systemMessage === true,
          invitationRequired: body.invitationRequired === true,
        }),
    },
    {
      method: 'POST',
      url: '/rooms/:id/members/:uid',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Add one member (posts addMember unless systemMessage is false)',
      example: `curl -X POST $BASE/rooms/demo/members/u3 ${H}`,
      schema: {
        params: { type: 'object', required: ['id', 'uid'], properties: { id, uid: id } },
        body: { type: ['object', 'null'], properties: { systemMessage: { type: 'boolean' }, invitationRequired: { type: 'boolean' } } },
      },
      handler: async ({ actor, params, body }) =>
        rooms.addMembers(callerOf(actor), params.id, [params.uid], { systemMessage: body?.systemMessage !== false, invitationRequired: body?.invitationRequired === true }),
    },
    {
      method: 'POST',
      url: '/rooms/:id/delete/members',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Remove members; your own id leaves (owner, managers or platform remove others); `systemMessage` posts leaveRoom/deleteMember',
      example: `curl -X POST $BASE/rooms/demo/delete/members ${H} ${J} -d '{"members":["u3"],"systemMessage":true}'`,
      schema: { params: roomParams, body: { type: 'object', required: ['members'], properties: { members: ids, systemMessage: { type: 'boolean' } } } },
      handler: async ({ actor, params, body }) => rooms.removeMembers(callerOf(actor), params.id, body.members, body.systemMessage === true),
    },
    {
      method: 'DELETE',
      url: '/rooms/:id/members/:uid',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Remove one member, or leave (posts leaveRoom/deleteMember unless systemMessage is false)',
      example: `curl -X DELETE $BASE/rooms/demo/members/u3 ${H}`,
      schema: {
        params: { type: 'object', required: ['id', 'uid'], properties: { id, uid: id } },
        body: { type: ['object', 'null'], properties: { systemMessage: { type: 'boolean' } } },
      },
      handler: async ({ actor, params, body }) => rooms.removeMembers(callerOf(actor), params.id, [params.uid], body?.systemMessage !== false),
    },
    {
      method: 'PUT',
      url: '/rooms/:id/member/:client',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Set a member property: `role` ("admin"/"member", owner or platform; assignAdmin with systemMessage) or a custom one',
      example: `curl -X PUT $BASE/rooms/demo/member/u2 ${H} ${J} -d '{"property":"role","value":"admin"}'`,
      schema: {
        params: { type: 'object', required: ['id', 'client'], properties: { id, client: id } },
        body: { type: 'object', required: ['property', 'value'], properties: { property: str(64), value: {}, systemMessage: { type: 'boolean' } } },
      },
      handler: async ({ actor, params, body }) => rooms.setMemberProperty(callerOf(actor), params.id, params.client, body.property, body.value, body.systemMessage === true),
    },
    {
      method: 'PUT',
      url: '/rooms/:id/lastRead',
      auth: 'user',
      scope: 'messages:write',
      summary: 'Mark the room read up to a message; returns {client, lastRead, badge}',
      example: `curl -X PUT $BASE/rooms/demo/lastRead ${H} ${J} -d '{"message":"<message id>"}'`,
      schema: { params: roomParams, body: { type: 'object', required: ['message'], properties: { message: { type: 'string', pattern: '^[0-9a-f]{24}$' } } } },
      handler: async ({ actor, params, body }) => rooms.markRead(callerOf(actor), params.id, body.message),
    },
    {
      method: 'GET',
      url: '/me/invitations',
      auth: 'user',
      scope: 'rooms:read',
      summary: "The caller's pending room invitations ({room, inviter, createdTimeMS})",
      example: `curl $BASE/me/invitations ${H}`,
      handler: async ({ actor }) => rooms.myInvitations(callerOf(actor)),
    },
    {
      method: 'GET',
      url: '/rooms/:id/invitations',
      auth: 'either',
      scope: 'rooms:read',
      summary: "A room's pending invitations (members only)",
      example: `curl $BASE/rooms/demo/invitations ${H}`,
      schema: { params: roomParams },
      handler: async ({ actor, params }) => rooms.roomInvitations(callerOf(actor), params.id),
    },
    {
      method: 'POST',
      url: '/rooms/:id/invitations/accept',
      auth: 'user',
      scope: 'rooms:write',
      summary: 'Accept an invitation: join the room (also when it is closed)',
      example: `curl -X POST $BASE/rooms/demo/invitations/accept ${H}`,
      schema: { params: roomParams, body: { type: ['object', 'null'], properties: { systemMessage: { type: 'boolean' } } } },
      handler: async ({ actor, params, body }) => rooms.join(callerOf(actor), params.id, body?.systemMessage === true),
    },
    {
      method: 'POST',
      url: '/rooms/:id/invitations/decline',
      auth: 'user',
      scope: 'rooms:write',
      summary: 'Decline an invitation',
      example: `curl -X POST $BASE/rooms/demo/invitations/decline ${H}`,
      schema: { params: roomParams },
      handler: async ({ actor, params }) => rooms.declineInvitation(callerOf(actor), params.id),
    },
    {
      method: 'DELETE',
      url: '/rooms/:id/invitations/:uid',
      auth: 'either',
      scope: 'rooms:write',
      summary: 'Withdraw an invitation (its inviter, managers, owner, platform); `systemMessage` posts cancelInvitations',
      example: `curl -X DELETE $BASE/rooms/demo/invitations/u4 ${H}`,
      schema: {
        params: { type: 'object', required: ['id', 'uid'], properties: { id, uid: id } },
        body: { type: ['object', 'null'], properties: { systemMessage: { type: 'boolean' } } },
      },
      handler: async ({ actor, params, body }) => rooms.cancelInvitations(callerOf(actor), params.id, [params.uid], body?.systemMessage === true),
    },
  ]);
}
