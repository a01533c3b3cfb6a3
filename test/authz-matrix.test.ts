import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_STATUS } from '../src/errors.js';
import {
  AUTH_LEVEL,
  type CaseSpec,
  expectedAnswer,
  type Expect,
  FOREIGN_KINDS,
  HTTP_MATRIX,
  type Kind,
  KINDS,
  SOCKET_DELIVERY,
  SOCKET_KINDS,
  SOCKET_MATRIX,
  type SocketExpect,
  type SocketKind,
} from './authz-matrix-table.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';
import { Receiver } from './webhook-receiver.js';
import { SCOPES } from '../src/auth/scopes.js';

/**
 * The object-level authorization matrix of issue #15: every route of the route table and every client event the
 * gateway registers, called with every credential kind on objects of the caller's application (A) and of another
 * one (B), each answer compared with test/authz-matrix-table.ts. Besides the status and error code, a cross-tenant
 * answer must carry none of the other tenant's text, and a denied answer (or any answer to the banned member or,
 * on routes over the caller's own rooms, to the outsider) none of R's message text.
 */

// Markers in the fixtures' texts: their presence in an answer means the other tenant's or the room's data leaked.
// Every message the matrix puts into R carries R_TEXT, so R's last message always does.
const A_TAG = 'atag7q';
const B_TAG = 'btag9z';
const R_TEXT = `r-secret ${A_TAG}`;
/** The text of the copies of R made for calls that change them (the outsider may join those, never R). */
const FRESH_TEXT = `f-secret ${A_TAG}`;

/** A call; `unchanged` says what a refused call must have left as it was (undefined when it did). */
/** The operator's /metrics token of the matrix's server: no application credential stands in for it. */
const METRICS_TOKEN = 'matrix-metrics-token-0123456789';

type Req = { url: string; body?: unknown; payload?: string; headers?: Record<string, string>; unchanged?: () => Promise<string | undefined> };
type Target = 'own' | 'foreign';

interface Fx {
  t: TestServer;
  b: { apiKey: string; clientKey: string; appId: string; token: string };
  tok: Record<string, string>;
  m1: string;
  mB: string;
  batchA: string;
  batchB: string;
  /** Webhook endpoints of A and B, and a delivery of each (kept pending: the dispatcher is stopped). */
  epA: string;
  epB: string;
  delA: string;
  delB: string;
  /** The fingerprint of B's API key. */
  keyB: string;
  /** A file of R (uploaded by its owner) and one of B's room. */
  fileA: string;
  fileB: string;
  rx: Receiver;
  seq: number;
}

/**
 * The user a kind acts as (the API key names `extra`, a plain member of R, when it acts as a user). `spare`, another
 * plain member, is the one others remove, ban or change the role of.
 */
function userOf(kind: Kind): string {
  switch (kind) {
    case 'outsider':
    case 'banned':
    case 'member':
    case 'manager':
    case 'owner':
      return kind;
    case 'apiKey':
    case 'apiKeyAs':
      return 'extra';
    case 'apiKeyAsBanned':
      return 'banned';
    default:
      return 'member';
  }
}

function headersOf(fx: Fx, kind: Kind, auth: string): Record<string, string> {
  const A = fx.t;
  switch (kind) {
    case 'none':
      return {};
    case 'otherApp':
      return auth === 'user' ? { 'IM-API-KEY': fx.b.apiKey, 'IM-CLIENT-ID': 'member' } : { 'IM-API-KEY': fx.b.apiKey };
    case 'noToken':
      return { 'IM-CLIENT-KEY': A.clientKey };
    case 'apiKey':
      return { 'IM-API-KEY': A.apiKey };
    case 'apiKeyAs':
      return { 'IM-API-KEY': A.apiKey, 'IM-CLIENT-ID': 'extra' };
    case 'apiKeyAsBanned':
      return { 'IM-API-KEY': A.apiKey, 'IM-CLIENT-ID': 'banned' };
    default:
      return userHeaders(A.clientKey, fx.tok[kind]!);
  }
}

const admin = (fx: Fx) => ({ 'IM-API-KEY': fx.t.apiKey });

async function must(fx: Fx, method: string, url: string, body?: unknown, headers: Record<string, string> = admin(fx)): Promise<any> {
  const res = await fx.t.request({ method, url, headers, body });
  if (res.status !== 200) throw new Error(`fixture ${method} ${url}: ${res.status} ${res.raw}`);
  return res.body.result;
}

/**
 * A copy of R for a call that changes membership, bans or the room itself: same members and roles, `banned`
 * banned, one message with R's text, and (optionally) a pending invitation made by the platform.
 */
async function freshRoom(fx: Fx, invite?: string): Promise<string> {
  const id = `fresh-${++fx.seq}`;
  await must(fx, 'POST', '/rooms', { _id: id, name: `fresh ${A_TAG}`, roomType: 'group', members: ['owner', 'manager', 'member', 'banned', 'extra', 'spare'], owner: 'owner', managers: ['manager'] });
  await must(fx, 'POST', `/blockStatus/room/${id}/banned`);
  await must(fx, 'POST', '/messages', { room: id, sender: 'owner', messageType: 'text', message: FRESH_TEXT });
  if (invite) await must(fx, 'POST', `/rooms/${id}/members`, { invitees: [invite], invitationRequired: true });
  return id;
}

async function freshMessage(fx: Fx): Promise<string> {
  return (await must(fx, 'POST', '/messages', { room: 'r-a', sender: 'owner', messageType: 'text', message: R_TEXT }))._id;
}

/** A multipart upload body: `extra` naming `room` (when given), then a small text file. */
function upload(room?: string): { payload: string; headers: Record<string, string> } {
  const b = 'matrix-boundary';
  const extra = room ? `--${b}\r\nContent-Disposition: form-data; name="extra"\r\n\r\n${JSON.stringify({ roomId: room })}\r\n` : '';
  const file = `--${b}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\nContent-Type: text/plain\r\n\r\n${R_TEXT}\r\n--${b}--\r\n`;
  return { payload: extra + file, headers: { 'content-type': `multipart/form-data; boundary=${b}` } };
}

async function uploadAs(fx: Fx, headers: Record<string, string>, room: string): Promise<string> {
  const { payload, headers: h } = upload(room);
  const res = await fx.t.request({ method: 'POST', url: '/files/chatserver-upload', headers: { ...headers, ...h }, payload });
  if (res.status !== 200) throw new Error(`fixture upload: ${res.status} ${res.raw}`);
  return res.body.result._id as string;
}

async function freshVictim(fx: Fx): Promise<string> {
  const id = `victim-${++fx.seq}`;
  await must(fx, 'POST', '/admin/clients', { _id: id, nickname: `${id} ${A_TAG}`, issueAccessToken: true });
  return id;
}

/** The state checks of refused calls: each answers a problem, or undefined when the object is as it was. */
const still = {
  room: (fx: Fx, id: string) => async () => ((await fx.t.request({ method: 'GET', url: `/rooms/${id}`, headers: admin(fx) })).status === 200 ? undefined : `room ${id} is gone`),
  user: (fx: Fx, id: string) => async () => ((await fx.t.request({ method: 'GET', url: '/me', headers: { ...admin(fx), 'IM-CLIENT-ID': id } })).status === 200 ? undefined : `user ${id} is gone`),
  member: (fx: Fx, roomId: string, userId: string) => async () => {
    const r = await fx.t.request({ method: 'GET', url: `/rooms/${roomId}`, headers: admin(fx) });
    return r.body?.result?.members?.some((m: any) => m._id === userId) ? undefined : `${userId} is no longer a member of ${roomId}`;
  },
  notMember: (fx: Fx, roomId: string, userId: string) => async () => {
    const r = await fx.t.request({ method: 'GET', url: `/rooms/${roomId}`, headers: admin(fx) });
    return r.body?.result?.members?.some((m: any) => m._id === userId) ? `${userId} was added to ${roomId}` : undefined;
  },
  field: (fx: Fx, roomId: string, field: string, value: string) => async () => {
    const r = await fx.t.request({ method: 'GET', url: `/rooms/${roomId}`, headers: admin(fx) });
    return r.body?.result?.[field] === value ? `${roomId}'s ${field} was set to ${value}` : undefined;
  },
  invited: (fx: Fx, roomId: string, userId: string) => async () => {
    const r = await fx.t.request({ method: 'GET', url: `/rooms/${roomId}/invitations`, headers: admin(fx) });
    return r.body?.result?.data?.some((i: any) => i.invitee?._id === userId) ? undefined : `${userId}'s invitation to ${roomId} is gone`;
  },
  noProperty: (fx: Fx, roomId: string, userId: string) => async () => {
    const r = await fx.t.request({ method: 'GET', url: `/rooms/${roomId}`, headers: admin(fx) });
    const p = r.body?.result?.memberProperties?.find((m: any) => m.client === userId);
    return p && 'note' in p ? `${userId}'s member property was written` : undefined;
  },
  message: (fx: Fx, roomId: string, messageId: string) => async () =>
    (await fx.t.request({ method: 'GET', url: `/rooms/${roomId}/messages/${messageId}?before=0&after=0`, headers: admin(fx) })).status === 200 ? undefined : `message ${messageId} is gone`,
  keyWorks: (fx: Fx, key: string) => async () => ((await fx.t.request({ method: 'GET', url: '/admin/stats', headers: { 'IM-API-KEY': key } })).status === 200 ? undefined : 'the key was revoked'),
  endpoint: (fx: Fx, id: string) => async () =>
    (await fx.t.request({ method: 'GET', url: '/admin/webhooks', headers: admin(fx) })).body?.result?.data?.some((e: any) => e.id === id) ? undefined : `endpoint ${id} is gone`,
  bans: (fx: Fx, roomId: string, userId: string, banned: boolean) => async () => {
    const r = await fx.t.request({ method: 'GET', url: `/blockStatus/room/${roomId}`, headers: admin(fx) });
    const is = r.body?.result?.data?.some((b: any) => (b.blockee?._id ?? b.blockee) === userId) === true;
    return is === banned ? undefined : `${userId} is ${is ? 'now' : 'no longer'} banned from ${roomId}`;
  },
};

/** Runs a service-level setup for the user a kind acts as, ignoring "already so" answers. */
async function quietly(p: Promise<unknown>): Promise<void> {
  await p.catch(() => undefined);
}

type Builder = (fx: Fx, kind: Kind, target: Target, live: boolean) => Req | Promise<Req>;

const room = (target: Target) => (target === 'own' ? 'r-a' : 'r-b');
const msg = (fx: Fx, target: Target) => (target === 'own' ? fx.m1 : fx.mB);
/** A fresh copy of R when the call reaches the service (`live`); otherwise an id no call may find anyway. */
const fresh = async (fx: Fx, target: Target, live: boolean, invite?: string) => (target === 'foreign' ? 'r-b' : live ? freshRoom(fx, invite) : 'r-none');
const callerOf = (fx: Fx, kind: Kind) => ({ appId: fx.t.appId, userId: userOf(kind), platform: false });

/** How each route (and case) is called: a minimal valid request, so that a refusal is a policy decision. */
const REQUESTS: Record<string, Record<string, Builder>> = {
  'GET /healthz': { default: () => ({ url: '/healthz' }) },
  'GET /openapi.json': { default: () => ({ url: '/openapi.json' }) },
  'GET /docs': { default: () => ({ url: '/docs' }) },

  'POST /admin/clients': { default: (fx) => ({ url: '/admin/clients', body: { _id: `made-${++fx.seq}`, nickname: 'made' } }) },
  'POST /admin/clients/list': { default: (fx) => ({ url: '/admin/clients/list', body: { data: [{ _id: `listed-${++fx.seq}`, nickname: 'listed' }] } }) },
  'GET /admin/clients': { default: () => ({ url: '/admin/clients?limit=100' }) },
  'DELETE /admin/clients/:id': {
    default: async (fx, _k, target, live) => {
      const id = target === 'foreign' ? 'b-owner' : live ? await freshVictim(fx) : 'nobody';
      return { url: `/admin/clients/${id}`, unchanged: live && target === 'own' ? still.user(fx, id) : undefined };
    },
  },
  'PUT /admin/clients/:id/token': {
    default: async (fx, _k, target, live) => ({
      url: `/admin/clients/${target === 'foreign' ? 'b-owner' : live ? await freshVictim(fx) : 'nobody'}/token`,
      body: { token: `custom-token-${++fx.seq}-0123456789abcdef`, expirationDate: '2030-01-01T00:00:00Z' },
    }),
  },
  'DELETE /admin/clients/:id/token': { default: async (fx, _k, target, live) => ({ url: `/admin/clients/${target === 'foreign' ? 'b-owner' : live ? await freshVictim(fx) : 'nobody'}/token` }) },
  'GET /me': { default: () => ({ url: '/me' }) },
  'POST /me': { default: () => ({ url: '/me', body: { description: 'about me' } }) },

  'POST /rooms': { default: () => ({ url: '/rooms', body: { name: 'new room', roomType: 'group' } }) },
  'POST /rooms/createAndJoin': {
    default: async (fx, _k, target, live) => ({ url: '/rooms/createAndJoin', body: { _id: target === 'foreign' ? 'r-b-cj' : live ? await freshRoom(fx) : 'r-none', roomType: 'group' } }),
  },
  'GET /rooms': { default: () => ({ url: '/rooms' }) },
  'GET /rooms/ids': { default: () => ({ url: '/rooms/ids' }) },
  'GET /rooms/:id': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}` }) },
  'PUT /rooms/:id': {
    default: (fx, kind, target) => ({ url: `/rooms/${room(target)}`, body: { description: `by ${kind}` }, unchanged: target === 'own' ? still.field(fx, 'r-a', 'description', `by ${kind}`) : undefined }),
  },
  'DELETE /rooms/:id': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/rooms/${id}`, unchanged: live && target === 'own' ? still.room(fx, id) : undefined };
    },
  },
  'POST /rooms/:id/join': { default: async (fx, _k, target, live) => ({ url: `/rooms/${await fresh(fx, target, live)}/join` }) },
  'PUT /rooms/:id/bot': {
    default: (fx, kind, target) => ({ url: `/rooms/${room(target)}/bot`, body: { botState: `CONTACT ${kind}` }, unchanged: target === 'own' ? still.field(fx, 'r-a', 'botState', `CONTACT ${kind}`) : undefined }),
  },
  'GET /rooms/:id/count': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}/count?timeInMS=0` }) },
  'POST /rooms/:id/members': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/rooms/${id}/members`, body: { invitees: ['outsider'] }, unchanged: live && target === 'own' ? still.notMember(fx, id, 'outsider') : undefined };
    },
  },
  'POST /rooms/:id/members/:uid': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/rooms/${id}/members/outsider`, unchanged: live && target === 'own' ? still.notMember(fx, id, 'outsider') : undefined };
    },
  },
  'POST /rooms/:id/delete/members': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/rooms/${id}/delete/members`, body: { members: [target === 'own' ? 'spare' : 'b-owner'] }, unchanged: live && target === 'own' ? still.member(fx, id, 'spare') : undefined };
    },
  },
  'DELETE /rooms/:id/members/:uid': {
    'remove another member': async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/rooms/${id}/members/${target === 'own' ? 'spare' : 'b-owner'}`, unchanged: live && target === 'own' ? still.member(fx, id, 'spare') : undefined };
    },
    'leave (own id)': async (fx, kind, target, live) => ({ url: `/rooms/${await fresh(fx, target, live)}/members/${userOf(kind)}` }),
  },
  'PUT /rooms/:id/member/:client': {
    'role of another member': (_fx, _k, target) => ({ url: `/rooms/${room(target)}/member/${target === 'own' ? 'spare' : 'b-owner'}`, body: { property: 'role', value: 'member' } }),
    'own custom property': (fx, kind, target) => ({
      url: `/rooms/${room(target)}/member/${target === 'own' ? userOf(kind) : 'b-owner'}`,
      body: { property: 'note', value: 'hi' },
      unchanged: target === 'own' ? still.noProperty(fx, 'r-a', userOf(kind)) : undefined,
    }),
  },
  'PUT /rooms/:id/lastRead': { default: (fx, _k, target) => ({ url: `/rooms/${room(target)}/lastRead`, body: { message: msg(fx, target) } }) },

  'GET /me/invitations': { default: () => ({ url: '/me/invitations' }) },
  'GET /rooms/:id/invitations': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}/invitations` }) },
  'POST /rooms/:id/invitations/accept': {
    default: async (fx, kind, target, live) => ({ url: `/rooms/${await fresh(fx, target, live, kind === 'outsider' ? 'outsider' : 'invitee')}/invitations/accept` }),
  },
  'POST /rooms/:id/invitations/decline': {
    default: async (fx, kind, target, live) => ({ url: `/rooms/${await fresh(fx, target, live, kind === 'outsider' ? 'outsider' : 'invitee')}/invitations/decline` }),
  },
  'DELETE /rooms/:id/invitations/:uid': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live, 'invitee');
      return { url: `/rooms/${id}/invitations/invitee`, unchanged: live && target === 'own' ? still.invited(fx, id, 'invitee') : undefined };
    },
  },

  'POST /rooms/:id/message': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}/message`, body: { messageType: 'text', message: R_TEXT } }) },
  'POST /messages': { default: (_fx, _k, target) => ({ url: '/messages', body: { room: room(target), sender: target === 'own' ? 'owner' : 'b-owner', messageType: 'text', message: R_TEXT } }) },
  'GET /rooms/:id/messages/v3': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}/messages/v3?limit=5` }) },
  'GET /rooms/:id/messages': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}/messages?limit=5` }) },
  'GET /rooms/:id/messages/:messageId': {
    "R and R's message": (fx, _k, target) => ({ url: `/rooms/${room(target)}/messages/${msg(fx, target)}` }),
    "R and B's message id": (fx) => ({ url: `/rooms/r-a/messages/${fx.mB}` }),
  },
  'DELETE /rooms/:id/messages/:messageId': {
    default: async (fx, _k, target, live) => {
      const id = target === 'foreign' ? fx.mB : live ? await freshMessage(fx) : fx.m1;
      return { url: `/rooms/${room(target)}/messages/${id}`, unchanged: target === 'own' ? still.message(fx, 'r-a', id) : undefined };
    },
  },
  'POST /messages/:id/pin': { default: (fx, _k, target) => ({ url: `/messages/${msg(fx, target)}/pin` }) },
  'DELETE /messages/:id/pin': { default: (fx, _k, target) => ({ url: `/messages/${msg(fx, target)}/pin` }) },

  'POST /me/mute/:room': { default: (_fx, _k, target) => ({ url: `/me/mute/${room(target)}` }) },
  'DELETE /me/mute/:room': { default: (_fx, _k, target) => ({ url: `/me/mute/${room(target)}` }) },
  'POST /roomPrefs/:id': { default: (_fx, _k, target) => ({ url: `/roomPrefs/${room(target)}`, body: { sticky: true } }) },
  'POST /roomPrefs/:id/group/:tag': { default: (_fx, _k, target) => ({ url: `/roomPrefs/${room(target)}/group/work`, body: { folder: 'f' } }) },
  'GET /me/pref': { default: () => ({ url: '/me/pref' }) },
  'POST /me/pref/:key': { default: () => ({ url: '/me/pref/matrix', body: { a: 1 } }) },
  'DELETE /me/pref/:key': {
    default: async (fx, kind, _t, live) => {
      if (live && kind !== 'otherApp') await quietly(fx.t.server.services.prefs.setUserPref(callerOf(fx, kind), 'matrix', { a: 1 }));
      return { url: '/me/pref/matrix' };
    },
  },
  'POST /rooms/:id/typing': { default: (_fx, _k, target) => ({ url: `/rooms/${room(target)}/typing`, body: { message: 'typing' } }) },
  'GET /me/badge': { default: () => ({ url: '/me/badge' }) },
  'POST /badges/byRoomTags': { default: () => ({ url: '/badges/byRoomTags', body: { tags: ['work'] } }) },

  'POST /search': {
    'naming R': (_fx, _k, target) => ({ url: '/search', body: { type: ['messages', 'roomName'], keyword: 'secret', room: room(target) } }),
    "over the caller's rooms": () => ({ url: '/search', body: { type: ['messages', 'roomName', 'roomMember'], keyword: 'secret' } }),
  },
  'POST /messages/search': { default: () => ({ url: '/messages/search', body: { message: 'secret' } }) },
  'GET /messages': {
    'naming R': (_fx, _k, target) => ({ url: `/messages?q=${encodeURIComponent(JSON.stringify({ room: room(target) }))}` }),
    "over the caller's rooms": () => ({ url: `/messages?q=${encodeURIComponent(JSON.stringify({ message: { $regex: 'secret' } }))}` }),
  },
  'POST /messages/:id/reaction': { default: (fx, _k, target) => ({ url: `/messages/${msg(fx, target)}/reaction`, body: { reaction: 'ok' } }) },
  'DELETE /messages/:id/reaction': { default: (fx, _k, target) => ({ url: `/messages/${msg(fx, target)}/reaction?reaction=ok` }) },
  'POST /messages/user-delete': { default: (fx, _k, target) => ({ url: '/messages/user-delete', body: { room: room(target), messages: [msg(fx, target)] } }) },
  'GET /messages/user-delete': { default: (_fx, _k, target) => ({ url: `/messages/user-delete?room=${room(target)}` }) },
  'POST /messages/user-delete/all-in-room': { default: (_fx, _k, target) => ({ url: '/messages/user-delete/all-in-room', body: { room: room(target) } }) },

  'POST /messages/batch': { default: (_fx, _k, target) => ({ url: '/messages/batch', body: { messageType: 'text', message: `${R_TEXT} $name$`, paras: [{ room: room(target), $name$: 'all' }] } }) },
  'GET /messages/batch/:batchID': { default: (fx, _k, target) => ({ url: `/messages/batch/${target === 'own' ? fx.batchA : fx.batchB}` }) },
  'POST /admin/groups': { default: (fx) => ({ url: '/admin/groups', body: { _id: `group-${++fx.seq}`, nickname: 'group', members: ['member'] } }) },
  'GET /admin/groups': { default: () => ({ url: '/admin/groups' }) },

  'POST /blockStatus/my/:blockee': {
    default: async (fx, kind, target, live) => {
      if (live && target === 'own' && kind !== 'otherApp') await quietly(fx.t.server.services.moderation.unblock(callerOf(fx, kind), 'blockee'));
      return { url: `/blockStatus/my/${target === 'own' ? 'blockee' : 'b-owner'}` };
    },
  },
  'GET /blockStatus/my': { default: () => ({ url: '/blockStatus/my' }) },
  'GET /blockStatus/my/:blockee': {
    default: async (fx, kind, target, live) => {
      if (live && target === 'own' && kind !== 'otherApp') await quietly(fx.t.server.services.moderation.block(callerOf(fx, kind), 'blockee'));
      return { url: `/blockStatus/my/${target === 'own' ? 'blockee' : 'b-owner'}` };
    },
  },
  'DELETE /blockStatus/my/:blockee': {
    default: async (fx, kind, target, live) => {
      if (live && target === 'own' && kind !== 'otherApp') await quietly(fx.t.server.services.moderation.block(callerOf(fx, kind), 'blockee'));
      return { url: `/blockStatus/my/${target === 'own' ? 'blockee' : 'b-owner'}` };
    },
  },
  'POST /blockStatus/room/:roomID/:blockee': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/blockStatus/room/${id}/${target === 'own' ? 'spare' : 'b-owner'}`, unchanged: live && target === 'own' ? still.bans(fx, id, 'spare', false) : undefined };
    },
  },
  'GET /blockStatus/room/:roomID': { default: (_fx, _k, target) => ({ url: `/blockStatus/room/${room(target)}` }) },
  'DELETE /blockStatus/room/:roomID/:blockee': {
    default: async (fx, _k, target, live) => {
      const id = await fresh(fx, target, live);
      return { url: `/blockStatus/room/${id}/${target === 'own' ? 'banned' : 'b-owner'}`, unchanged: live && target === 'own' ? still.bans(fx, id, 'banned', true) : undefined };
    },
  },
  'POST /admin/clients/:uid/mute/:room': { default: (_fx, _k, target) => ({ url: target === 'own' ? '/admin/clients/member/mute/r-a' : '/admin/clients/b-owner/mute/r-b' }) },
  'DELETE /admin/clients/:uid/mute/:room': {
    default: async (fx, _k, target, live) => {
      if (live) await quietly(must(fx, 'POST', '/admin/clients/member/mute/r-a'));
      return { url: target === 'own' ? '/admin/clients/member/mute/r-a' : '/admin/clients/b-owner/mute/r-b' };
    },
  },

  'GET /config': { default: () => ({ url: '/config' }) },
  'POST /config': { default: () => ({ url: '/config', body: { matrix: 1 } }) },
  'DELETE /config/:key': {
    default: async (fx, kind, _t, live) => {
      // A key only A has: B deleting it must find nothing (and A keeps it).
      if (live && kind !== 'otherApp') await must(fx, 'POST', '/config', { onlyInA: 1 });
      return { url: '/config/onlyInA' };
    },
  },
  'GET /admin/connection-count': { default: () => ({ url: '/admin/connection-count' }) },
  'GET /admin/stats': { default: () => ({ url: '/admin/stats' }) },
  'GET /admin/usage': { default: () => ({ url: '/admin/usage' }) },
  'GET /admin/audit': { default: () => ({ url: '/admin/audit?limit=500' }) },
  'POST /admin/webhooks': { default: (fx) => ({ url: '/admin/webhooks', body: { url: fx.rx.url(`/made-${++fx.seq}`), events: ['user.deleted'] } }) },
  'GET /admin/webhooks': { default: () => ({ url: '/admin/webhooks' }) },
  'POST /me/subscribe': { default: () => ({ url: '/me/subscribe', body: { type: 'fcm', token: 'fcm-token-matrix-0123456789', deviceId: 'matrix' } }) },
  'POST /me/unsubscribe': { default: () => ({ url: '/me/unsubscribe', body: { type: 'fcm', deviceId: 'matrix' } }) },
  'POST /push/push2clients': { default: () => ({ url: '/push/push2clients', body: { clients: ['m'], payload: { body: 'matrix' } } }) },
  'POST /push/push2tokens': { default: () => ({ url: '/push/push2tokens', body: { type: 'fcm', tokens: ['fcm-token-matrix-0123456789'], payload: { body: 'matrix' } } }) },
  'PUT /admin/push/credentials/:provider': { default: (fx) => ({ url: '/admin/push/credentials/hook', body: { url: fx.rx.url('/push-hook') } }) },
  'GET /admin/push/credentials': { default: () => ({ url: '/admin/push/credentials' }) },
  'DELETE /admin/push/credentials/:provider': {
    // web, never set by the PUT row (hook): B's key finds none of its own to delete.
    default: async (fx, kind, _target, live) => {
      if (live && kind !== 'otherApp') await must(fx, 'PUT', '/admin/push/credentials/web', { subject: 'mailto:ops@example.com' });
      return { url: '/admin/push/credentials/web' };
    },
  },
  'DELETE /admin/webhooks/:id': {
    default: async (fx, kind, target, live) => {
      const id = target === 'foreign' ? fx.epB : live && kind !== 'otherApp' ? (await must(fx, 'POST', '/admin/webhooks', { url: fx.rx.url('/gone'), events: ['*'] })).id : fx.epA;
      return { url: `/admin/webhooks/${id}`, unchanged: target === 'own' ? still.endpoint(fx, id) : undefined };
    },
  },
  'POST /admin/webhooks/:id/rotate-secret': {
    default: (fx, _k, target) => ({ url: `/admin/webhooks/${target === 'foreign' ? fx.epB : fx.epA}/rotate-secret`, body: { expiresIn: '1h' } }),
  },
  'GET /admin/webhooks/deliveries': { default: () => ({ url: '/admin/webhooks/deliveries?limit=100' }) },
  'POST /admin/api-keys': { default: (fx) => ({ url: '/admin/api-keys', body: { name: `made ${++fx.seq}`, scopes: ['rooms:read'] } }) },
  'GET /admin/api-keys': { default: () => ({ url: '/admin/api-keys' }) },
  'DELETE /admin/api-keys/:key': {
    default: async (fx, kind, target, live) => {
      if (target === 'foreign') return { url: `/admin/api-keys/${fx.keyB}` };
      // A fresh key of A each time the call gets that far: the one the matrix's calls use is never revoked.
      const made = live ? await fx.t.server.services.apps.createApiKey(await fx.t.server.services.apps.resolve(fx.t.appId), { name: `victim ${++fx.seq}` }) : undefined;
      const fp = (made?.fingerprint as string | undefined) ?? '0000000000';
      return { url: `/admin/api-keys/${fp}`, unchanged: made ? still.keyWorks(fx, made.apiKey as string) : undefined };
    },
  },
  'GET /admin/alerts': { default: () => ({ url: '/admin/alerts?limit=500' }) },
  'POST /admin/alerts/:id/acknowledge': {
    default: async (fx, _k, target) => ({ url: `/admin/alerts/${await alertOf(fx, target === 'foreign' ? fx.b.appId : fx.t.appId)}/acknowledge` }),
  },
  'POST /admin/api-keys/:key/rotate': {
    default: async (fx, _kind, target, live) => {
      if (target === 'foreign') return { url: `/admin/api-keys/${fx.keyB}/rotate`, body: { expireOldIn: '0' } };
      // A fresh key of A each time the call gets that far, revoked by an allowed call (expireOldIn 0).
      const made = live ? await fx.t.server.services.apps.createApiKey(await fx.t.server.services.apps.resolve(fx.t.appId), { name: `rotated ${++fx.seq}` }) : undefined;
      const fp = (made?.fingerprint as string | undefined) ?? '0000000000';
      return { url: `/admin/api-keys/${fp}/rotate`, body: { expireOldIn: '0' }, unchanged: made ? still.keyWorks(fx, made.apiKey as string) : undefined };
    },
  },
  'POST /admin/webhooks/deliveries/:id/retry': { default: (fx, _k, target) => ({ url: `/admin/webhooks/deliveries/${target === 'foreign' ? fx.delB : fx.delA}/retry` }) },
  'POST /files/:bucket': { default: (_fx, _k, target) => ({ url: '/files/chatserver-upload', ...upload(room(target)) }) },
  'GET /files/:bucket/:id': { default: (fx, _k, target) => ({ url: `/files/chatserver-upload/${target === 'foreign' ? fx.fileB : fx.fileA}` }) },
  'GET /files/:bucket/:id/metadata': { default: (fx, _k, target) => ({ url: `/files/chatserver-upload/${target === 'foreign' ? fx.fileB : fx.fileA}/metadata` }) },
  'DELETE /files/:bucket/:id': {
    default: async (fx, _k, target, live) => {
      if (target === 'foreign') return { url: `/files/chatserver-upload/${fx.fileB}` };
      const id = live ? await uploadAs(fx, { ...admin(fx), 'IM-CLIENT-ID': 'owner' }, 'r-a') : '000000000000000000000000';
      const unchanged = async () => ((await fx.t.request({ method: 'GET', url: `/files/chatserver-upload/${id}/metadata`, headers: admin(fx) })).status === 200 ? undefined : `file ${id} is gone`);
      return { url: `/files/chatserver-upload/${id}`, unchanged: live ? unchanged : undefined };
    },
  },
  'POST /files/video-info': { default: () => ({ url: '/files/video-info', ...upload() }) },
  'GET /metrics': {
    'without the metrics token': () => ({ url: '/metrics' }),
    'with the metrics token': () => ({ url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } }),
  },
};

/** A fresh open alert of the application (a made-up key of it seen from two addresses). */
async function alertOf(fx: Fx, appId: string): Promise<string> {
  const ref = { appId, keyId: `ak_matrix${++fx.seq}`, fingerprint: null, last4: 'xxxx' };
  fx.t.server.alerts.used(ref, '192.0.2.1');
  await fx.t.server.alerts.flush();
  fx.t.server.alerts.used(ref, '192.0.2.2');
  const { data } = await fx.t.server.alerts.list(appId, { open: true });
  return data.find((a) => (a.key as { id: string }).id === ref.keyId)!._id as string;
}

function describeAnswer(status: number, body: any): string {
  return status >= 200 && status < 300 ? `${status}` : `${status} ${body?.error ?? ''}`.trim();
}

describe.each(DIALECTS)('authorization matrix (%s)', (dialect) => {
  const fx = { seq: 0, tok: {} } as Fx;
  const failures: string[] = [];

  beforeAll(async () => {
    // The matrix makes hundreds of calls, many with bad credentials on purpose: no lockout or rate limit here.
    const t = await startTestServer(dialect, {
      authFailuresPerMinute: 1_000_000, rateLimitPerMinute: 1_000_000, userRateLimitPerMinute: 1_000_000, socketEventsPer10s: 100_000, metricsToken: METRICS_TOKEN,
      webhookAllowPrivateNetworks: true,
    });
    fx.t = t;
    // A receiver that always fails: each application's first delivery stays pending for its next attempt.
    fx.rx = await new Receiver().start();
    fx.rx.answer = () => ({ status: 500 });
    for (const u of ['owner', 'manager', 'member', 'banned', 'outsider', 'extra', 'spare', 'invitee', 'blockee']) fx.tok[u] = await createUser(t, u, t.apiKey, { nickname: `${u} ${A_TAG}` });
    await must(fx, 'POST', '/rooms', { _id: 'r-a', name: `room ${A_TAG}`, roomType: 'group', members: ['owner', 'manager', 'member', 'banned', 'extra', 'spare'], owner: 'owner', managers: ['manager'] });
    fx.m1 = (await must(fx, 'POST', '/messages', { room: 'r-a', sender: 'owner', messageType: 'text', message: R_TEXT }))._id;
    await must(fx, 'POST', '/messages', { room: 'r-a', sender: 'member', messageType: 'text', message: R_TEXT });
    await must(fx, 'POST', '/blockStatus/room/r-a/banned');
    await must(fx, 'POST', '/rooms/r-a/members', { invitees: ['invitee'], invitationRequired: true });
    await must(fx, 'POST', '/rooms/createAndJoin', { roomType: 'direct', invitee: 'outsider' }, userHeaders(t.clientKey, fx.tok.member!));
    await must(fx, 'POST', '/config', { announcement: { text: `hello ${A_TAG}` }, onlyInA: 1 });
    fx.batchA = (await must(fx, 'POST', '/messages/batch', { messageType: 'text', message: R_TEXT, sender: 'owner', paras: [{ room: 'r-a' }] })).batchID;

    const other = await t.server.services.apps.create({ name: 'Other' });
    const bAdmin = { 'IM-API-KEY': other.apiKey };
    const bToken = await createUser(t, 'b-owner', other.apiKey, { nickname: `b-owner ${B_TAG}` });
    fx.b = { apiKey: other.apiKey, clientKey: other.clientKey, appId: other.id, token: bToken };
    for (const id of ['r-b', 'r-b-cj']) await must(fx, 'POST', '/rooms', { _id: id, name: `room ${B_TAG}`, roomType: 'group', members: ['b-owner'], owner: 'b-owner' }, bAdmin);
    fx.mB = (await must(fx, 'POST', '/messages', { room: 'r-b', sender: 'b-owner', messageType: 'text', message: `b-secret ${B_TAG}` }, bAdmin))._id;
    await must(fx, 'POST', '/config', { announcement: { text: `hello ${B_TAG}` } }, bAdmin);
    fx.batchB = (await must(fx, 'POST', '/messages/batch', { messageType: 'text', message: `b-secret ${B_TAG}`, sender: 'b-owner', paras: [{ room: 'r-b' }] }, bAdmin)).batchID;

    fx.epA = (await must(fx, 'POST', '/admin/webhooks', { url: fx.rx.url('/a'), events: ['user.created'], description: `endpoint ${A_TAG}` })).id;
    fx.epB = (await must(fx, 'POST', '/admin/webhooks', { url: fx.rx.url('/b'), events: ['user.created'], description: `endpoint ${B_TAG}` }, bAdmin)).id;
    await createUser(t, 'hooked', t.apiKey);
    await createUser(t, 'b-hooked', other.apiKey);
    await fx.rx.waitFor((r) => r.length === 2);
    // After the first attempt (retried in 5 s of the test's clock, which does not move): nothing is sent any more,
    // so a retry by hand leaves the delivery pending and can be repeated.
    await fx.t.server.dispatcher.stop();
    const pending = async (headers: Record<string, string>) => {
      for (let i = 0; i < 200; i++) {
        const [d] = (await must(fx, 'GET', '/admin/webhooks/deliveries?status=pending', undefined, headers)).data;
        if (d) return d.id as string;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('no pending delivery');
    };
    fx.keyB = (await must(fx, 'GET', '/admin/api-keys', undefined, bAdmin)).data[0].fingerprint;
    fx.fileA = await uploadAs(fx, { ...admin(fx), 'IM-CLIENT-ID': 'owner' }, 'r-a');
    fx.fileB = await uploadAs(fx, { ...bAdmin, 'IM-CLIENT-ID': 'b-owner' }, 'r-b');
    fx.delA = await pending(admin(fx));
    fx.delB = await pending(bAdmin);
  });
  afterAll(async () => {
    if (failures.length) console.log(`authorization matrix (${dialect}): ${failures.length} rows differ\n${failures.join('\n')}`);
    await fx.t?.close();
    await fx.rx?.close();
  });


  it('every route of the route table has an entry in the matrix, and every entry is a route', () => {
    const served = fx.t.server.routes.map((r) => `${r.method} ${r.url}`).sort();
    const listed = Object.keys(HTTP_MATRIX).sort();
    expect({ missingFromMatrix: served.filter((r) => !listed.includes(r)), noLongerServed: listed.filter((r) => !served.includes(r)) }).toEqual({ missingFromMatrix: [], noLongerServed: [] });
    for (const key of listed) expect(Object.keys(REQUESTS[key] ?? {}).sort(), key).toEqual(HTTP_MATRIX[key]!.map((c) => c.name).sort());
  });

  for (const [key, cases] of Object.entries(HTTP_MATRIX)) {
    it(`${key}`, async () => {
      const route = fx.t.server.routes.find((r) => `${r.method} ${r.url}` === key);
      if (!route) throw new Error(`${key} is not served (see the coverage test)`);
      const rows: string[] = [];
      for (const spec of cases) {
        for (const target of ['own', 'foreign'] as const) {
          for (const kind of target === 'own' ? KINDS : FOREIGN_KINDS) {
            const want = expectedAnswer(route.auth, spec, kind, target);
            if (want === 'skip') continue;
            const row = await callOne(fx, key, route.method, route.auth, spec, kind, target, want);
            if (row) rows.push(row);
          }
        }
      }
      failures.push(...rows);
      expect(rows).toEqual([]);
    });
  }

  it('socket events: every client event the gateway registers has an entry, and every entry is registered', async () => {
    // Logged in, so that handlers registered only after a login are listed too.
    const c = await TestClient.connect(await base(fx), 'bundle');
    try {
      expect((await c.login(fx.tok.member!, fx.t.clientKey)).RC).toBe(0);
      const names = await serverEventNames(fx, c);
      expect({ missing: names.filter((n) => !(n in SOCKET_MATRIX)), stale: Object.keys(SOCKET_MATRIX).filter((n) => !names.includes(n)) }).toEqual({ missing: [], stale: [] });
    } finally {
      c.close();
    }
  });

  it('socket events: each kind of socket on R and on B’s room, and what other members receive', async () => {
    const rows: string[] = [];
    const url = await base(fx);
    const t = fx.t;
    const sockets: TestClient[] = [];
    const open = async () => {
      const c = await TestClient.connect(url, 'bundle');
      sockets.push(c);
      return c;
    };
    const decodeAck = (c: TestClient, ack: unknown[]) => c.decode(ack[0]);
    const check = (row: string, want: SocketExpect, got: any) => {
      const ok = want.rc === 0 ? got?.RC === 0 : got?.RC === want.rc && got?.error === (want as { error: string }).error;
      if (!ok) rows.push(`${row}: expected ${want.rc === 0 ? 'RC 0' : `RC ${want.rc} ${(want as { error: string }).error}`}, got RC ${got?.RC} ${got?.error ?? ''}`.trim());
    };
    try {
      const auth2Args = (kind: SocketKind): unknown[] => {
        if (kind === 'none') return [];
        if (kind === 'otherApp') return [fx.tok.member, { CLIENT_KEY: fx.b.clientKey, Authorization: fx.tok.member }];
        if (kind === 'noToken') return [undefined, { CLIENT_KEY: t.clientKey }];
        return [fx.tok[kind], { CLIENT_KEY: t.clientKey, Authorization: fx.tok[kind] }];
      };
      const legacyToken = (kind: SocketKind): string => (kind === 'none' || kind === 'noToken' ? '' : kind === 'otherApp' ? fx.b.token : fx.tok[kind]!);

      // Watchers: extra (a plain member of R) and B's owner, logged in before anything is emitted.
      const watcher = await open();
      expect(decodeAck(watcher, await watcher.emitAck('conf', { encoding: 'base64' })).RC).toBe(0);
      expect(decodeAck(watcher, await watcher.emitAck('auth2', fx.tok.extra, { CLIENT_KEY: t.clientKey, Authorization: fx.tok.extra })).RC).toBe(0);
      const bWatcher = await open();
      expect((await bWatcher.login(fx.b.token, fx.b.clientKey)).RC).toBe(0);

      const byKind = new Map<SocketKind, TestClient>();
      for (const kind of SOCKET_KINDS) {
        const c = await open();
        byKind.set(kind, c);
        check(`conf ${kind}`, SOCKET_MATRIX.conf!.onR[kind], decodeAck(c, await c.emitAck('conf', { encoding: 'base64' })));
        check(`auth2 ${kind}`, SOCKET_MATRIX.auth2!.onR[kind], decodeAck(c, await c.emitAck('auth2', ...auth2Args(kind))));
        if (kind === 'otherApp') expect(decodeAck(c, await c.emitAck('auth2', fx.b.token, { CLIENT_KEY: fx.b.clientKey, Authorization: fx.b.token })).RC).toBe(0);
        const legacy = await open();
        await legacy.emitAck('conf', { encoding: 'base64' });
        check(`auth ${kind}`, SOCKET_MATRIX.auth!.onR[kind], decodeAck(legacy, await legacy.emitAck('auth', legacyToken(kind))));
        legacy.close();
      }

      // chat message on R and on B's room; typing on R and on B's room.
      for (const kind of SOCKET_KINDS) {
        const c = byKind.get(kind)!;
        const ack = await c.emitAck('chat message', { room: 'r-a', messageType: 'text', message: `${R_TEXT} from ${kind}` });
        check(`chat message ${kind} on R`, SOCKET_MATRIX['chat message']!.onR[kind], ack[0]);
        c.socket.emit('typing', 'r-a', Buffer.from(`typing ${kind}`).toString('base64'));
      }
      const member = byKind.get('member')!;
      check('chat message member on B’s room', SOCKET_MATRIX['chat message']!.onB!, (await member.emitAck('chat message', { room: 'r-b', messageType: 'text', message: 'cross' }))[0]);
      member.socket.emit('typing', 'r-b', Buffer.from('cross typing').toString('base64'));

      // What the watcher (a member of R) received from each kind: exactly the accepted ones.
      await new Promise((r) => setTimeout(r, 400));
      const senderOf = (p: any) => (typeof p?.sender === 'object' ? p.sender?._id : p?.sender);
      const userOfSocket = (kind: SocketKind): string => (kind === 'otherApp' ? 'b-owner' : kind);
      for (const [event, spec] of [['chat message', SOCKET_MATRIX['chat message']!], ['typing', SOCKET_MATRIX.typing!]] as const) {
        const got = new Set(watcher.events.filter((e) => e.event === event).map((e) => String(senderOf(e.payload))));
        const want = new Set(SOCKET_KINDS.filter((k) => spec.onR[k].rc === 0).map(userOfSocket));
        for (const kind of SOCKET_KINDS) {
          const u = userOfSocket(kind);
          if (got.has(u) !== want.has(u)) rows.push(`${event} ${kind} on R: a member ${want.has(u) ? 'did not receive' : 'received'} it`);
        }
        const strangers = [...got].filter((u) => !SOCKET_KINDS.map(userOfSocket).includes(u));
        if (strangers.length) rows.push(`${event} on R: a member received it from ${strangers.join(', ')}`);
      }
      const crossed = bWatcher.events.filter((e) => e.event === 'chat message' || e.event === 'typing');
      if (crossed.length) rows.push(`A's member reached B's room: B's socket got ${JSON.stringify(crossed.map((e) => e.event))}`);

      // R's events must not reach the banned member's or the outsider's socket; a member's socket gets each.
      for (const c of byKind.values()) c.events.length = 0;
      await must(fx, 'POST', '/rooms/r-a/message', { messageType: 'text', message: `${R_TEXT} for members` }, userHeaders(t.clientKey, fx.tok.owner!)); // chat message
      await must(fx, 'PUT', '/rooms/r-a', { description: 'room event' }); // room (its lastMessage is the one above)
      await must(fx, 'POST', '/rooms/r-a/typing', { message: 'typing' }, userHeaders(t.clientKey, fx.tok.owner!)); // typing
      await must(fx, 'PUT', '/rooms/r-a/lastRead', { message: fx.m1 }, userHeaders(t.clientKey, fx.tok.manager!)); // lastRead
      for (const event of SOCKET_DELIVERY) await member.next(event).catch(() => rows.push(`delivery control: the member's socket got no "${event}" of R`));
      await new Promise((r) => setTimeout(r, 300));
      for (const kind of ['banned', 'outsider'] as const) {
        const got = byKind.get(kind)!.events.filter((e) => (SOCKET_DELIVERY as readonly string[]).includes(e.event)).map((e) => e.event);
        if (got.length) rows.push(`delivery to ${kind}: received R's ${[...new Set(got)].join(', ')}`);
        const leak = byKind.get(kind)!.events.find((e) => JSON.stringify(e.payload).includes(R_TEXT));
        if (leak) rows.push(`delivery to ${kind}: received R's message text in "${leak.event}"`);
      }
    } finally {
      for (const c of sockets) c.close();
    }
    failures.push(...rows);
    expect(rows).toEqual([]);
  });

  /**
   * Scoped API keys (issue #20): a key holding one scope passes exactly the routes that declare that scope, and
   * gets there what the unscoped key gets; every other route answers 403 INSUFFICIENT_PERMISSIONS before
   * anything is looked up. Every non-public route declares a known scope, but key management, which needs a key
   * without scopes. It runs last: its calls with the right scope change R and the objects around it.
   */
  it('each scope allows exactly the routes that declare it', async () => {
    const app = await fx.t.server.services.apps.resolve(fx.t.appId);
    const keys = new Map<string, string>();
    for (const s of SCOPES) keys.set(s, (await fx.t.server.services.apps.createApiKey(app, { scopes: [s], name: `only ${s}` })).apiKey as string);
    const rows: string[] = [];
    const allowedPerScope = new Map<string, number>();
    for (const route of fx.t.server.routes) {
      const key = `${route.method} ${route.url}`;
      if (route.auth === 'public') {
        if (route.scope !== undefined) rows.push(`${key}: a public route declares a scope`);
        continue;
      }
      // Only key management and acknowledging key alerts declare no scope: no scoped key may call them.
      if (route.scope === undefined ? !route.url.startsWith('/admin/api-keys') && route.url !== '/admin/alerts/:id/acknowledge' : !(SCOPES as readonly string[]).includes(route.scope)) {
        rows.push(`${key}: declares no known scope (${String(route.scope)})`);
        continue;
      }
      const spec = HTTP_MATRIX[key]![0]!;
      const kind: Kind = route.auth === 'user' ? 'apiKeyAs' : 'apiKey';
      const build = REQUESTS[key]![spec.name]!;
      for (const s of SCOPES) {
        const mine = s === route.scope;
        const req = await build(fx, kind, 'own', mine);
        const headers = { 'IM-API-KEY': keys.get(s)!, ...(route.auth === 'user' ? { 'IM-CLIENT-ID': 'extra' } : {}), ...req.headers };
        const res = await fx.t.request({ method: route.method, url: req.url, headers, body: req.body, payload: req.payload });
        if (!mine) {
          if (res.status !== 403 || res.body?.error !== 'INSUFFICIENT_PERMISSIONS' || res.body?.message !== 'API key does not have permission for this operation') {
            rows.push(`${key} with only ${s}: expected 403 INSUFFICIENT_PERMISSIONS, got ${describeAnswer(res.status, res.body)}`);
          }
          continue;
        }
        allowedPerScope.set(s, (allowedPerScope.get(s) ?? 0) + 1);
        const want = expectedAnswer(route.auth as 'admin', spec, kind, 'own');
        const ok = want === 'allow' ? res.status >= 200 && res.status < 300 : want !== 'skip' && res.body?.error === want;
        if (!ok) rows.push(`${key} with its scope ${s}: expected ${want}, got ${describeAnswer(res.status, res.body)}`);
      }
    }
    expect(rows).toEqual([]);
    // Every scope opens at least one route.
    expect(SCOPES.filter((s) => !allowedPerScope.has(s)).sort()).toEqual([]);
  });
});

const listening = new WeakMap<TestServer, Promise<string>>();
function base(fx: Fx): Promise<string> {
  let p = listening.get(fx.t);
  if (!p) listening.set(fx.t, (p = fx.t.server.listen()));
  return p;
}

/** The client events the server side of a connected socket listens to (reserved Socket.IO events left out). */
async function serverEventNames(fx: Fx, c: TestClient): Promise<string[]> {
  const server = fx.t.server.realtime.io.sockets.sockets.get(c.socket.id!);
  if (!server) throw new Error('the server side of the socket was not found');
  const reserved = new Set(['disconnect', 'disconnecting', 'error', 'newListener', 'removeListener']);
  return server.eventNames().map(String).filter((n) => !reserved.has(n));
}

async function callOne(fx: Fx, key: string, method: string, auth: 'admin' | 'user' | 'either' | 'public', spec: CaseSpec, kind: Kind, target: Target, want: Expect): Promise<string | undefined> {
  // Fresh objects only for calls that get past authentication: the others are refused before any lookup.
  const live = auth === 'public' || AUTH_LEVEL[auth][kind] === 'route';
  const build = REQUESTS[key]![spec.name]!;
  const req = await build(fx, kind, target, live);
  const res = await fx.t.request({ method, url: req.url, headers: { ...headersOf(fx, kind, auth), ...req.headers }, body: req.body, payload: req.payload });
  const label = `${key}${spec.name === 'default' ? '' : ` [${spec.name}]`} as ${kind}${target === 'foreign' ? " on B's ids" : ''}`;
  const problems: string[] = [];
  const allowed = res.status >= 200 && res.status < 300;
  if (want === 'allow') {
    if (!allowed) problems.push(`expected allow, got ${describeAnswer(res.status, res.body)}`);
  } else if (res.status !== ERROR_STATUS[want] || res.body?.error !== want) {
    problems.push(`expected ${ERROR_STATUS[want]} ${want}, got ${describeAnswer(res.status, res.body)}`);
  }
  if (!allowed && req.unchanged) {
    const changed = await req.unchanged();
    if (changed) problems.push(`refused, but ${changed}`);
  }
  if (kind === 'otherApp' && res.raw.includes(A_TAG)) problems.push("answer carries A's data");
  if (target === 'foreign' && res.raw.includes(B_TAG)) problems.push("answer carries B's data");
  // A refusal carries no content; the banned member sees no message of the rooms they are banned from (R and its
  // copies), however asked; the outsider finds none of R's messages over their own rooms.
  if ((want !== 'allow' || kind === 'banned') && (res.raw.includes(R_TEXT) || res.raw.includes(FRESH_TEXT))) problems.push("answer carries R's message text");
  else if (kind === 'outsider' && spec.need === 'anyone' && res.raw.includes(R_TEXT)) problems.push("answer carries R's message text");
  return problems.length ? `${label}: ${problems.join('; ')}` : undefined;
}
