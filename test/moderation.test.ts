import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../src/events/bus.js';
import { ConfigRepo } from '../src/store/config-repo.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

type Body = Record<string, unknown>;
/** What every message path answers, in one shape: HTTP status (or socket ack RC), error code, result. */
interface Outcome {
  status: number;
  error?: string;
  result?: any;
}

describe.each(DIALECTS)('moderation and runtime config (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const sockets = new Map<string, TestClient>();
  const events: DomainEvent[] = [];
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  const outcome = (status: number, body: any): Outcome => (status === 200 ? { status, result: body.result } : { status, error: body?.error });

  // ---- the four message paths
  const rest = async (u: string, room: string, body: Body): Promise<Outcome> => {
    const res = await t.request({ method: 'POST', url: `/rooms/${room}/message`, headers: as(u), body });
    return outcome(res.status, res.body);
  };
  const adminSend = async (sender: string, room: string, body: Body): Promise<Outcome> => {
    const res = await t.request({ method: 'POST', url: '/messages', headers: admin, body: { room, sender, messageType: 'text', ...body } });
    return outcome(res.status, res.body);
  };
  const socketOf = async (u: string): Promise<TestClient> => {
    let c = sockets.get(u);
    if (!c) {
      c = await TestClient.connect(base, 'flutter');
      expect((await c.login(tok[u]!, t.clientKey)).RC).toBe(0);
      sockets.set(u, c);
    }
    return c;
  };
  const socket = async (u: string, room: string, body: Body): Promise<Outcome> => {
    const [ack] = (await (await socketOf(u)).emitAck('chat message', { room, ...body })) as any[];
    return ack.RC === 0 ? { status: 200, result: ack.result } : { status: ack.RC, error: ack.error };
  };
  const edit = (u: string, room: string, id: string, message: unknown) => rest(u, room, { _id: id, message });
  const text = (message: unknown) => ({ messageType: 'text', message });
  const PATHS = {
    rest: (u: string, room: string, message: unknown) => rest(u, room, text(message)),
    socket: (u: string, room: string, message: unknown) => socket(u, room, text(message)),
    admin: (u: string, room: string, message: unknown) => adminSend(u, room, { message }),
  };
  /** Sends through every path (and edits a fresh message of `u` created by the platform-free REST path when `editable`). */
  const everyPath = async (u: string, room: string, message: unknown, editId?: string): Promise<Record<string, Outcome>> => {
    const out: Record<string, Outcome> = {};
    for (const [name, send] of Object.entries(PATHS)) out[name] = await send(u, room, message);
    if (editId) out.edit = await edit(u, room, editId, message);
    return out;
  };
  const count = async (room: string) => (await t.request({ method: 'GET', url: `/rooms/${room}/messages/v3?limit=1`, headers: admin })).body.result.totalCount as number;
  const setConfig = (body: unknown) => t.request({ method: 'POST', url: '/config', headers: admin, body });

  beforeAll(async () => {
    t = await startTestServer(dialect);
    base = await t.server.listen();
    admin = { 'IM-API-KEY': t.apiKey };
    t.server.services.bus.on((e) => events.push(e));
    for (const u of ['own', 'mgr', 'mem', 'bad', 'two', 'out', 'pa', 'pb']) tok[u] = await createUser(t, u);
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'club', members: ['own', 'mgr', 'mem', 'bad', 'two'], owner: 'own', managers: ['mgr'] } });
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'pairs', members: ['pa', 'pb'] } });
  });
  afterAll(async () => {
    for (const c of sockets.values()) c.close();
    await t?.close();
  });

  // ---------------------------------------------------------------- runtime config

  describe('runtime config', () => {
    it('GET /config is empty at first, for users and the platform', async () => {
      for (const headers of [as('mem'), admin]) {
        const res = await t.request({ method: 'GET', url: '/config', headers });
        expect([res.status, res.body.result]).toEqual([200, {}]);
      }
    });

    it('POST /config replaces each key sent, keeps the others, returns the whole config, and announces the change', async () => {
      events.length = 0;
      const first = await setConfig({ announcement: { text: 'Hello', pin: true }, featureFlags: { enableVoiceMessage: true, maxFileSize: 10 }, custom: [1, { a: 'b' }] });
      expect(first.status).toBe(200);
      const second = await setConfig({ featureFlags: { enableFileSharing: false } });
      expect(second.body.result).toEqual({ announcement: { text: 'Hello', pin: true }, featureFlags: { enableFileSharing: false }, custom: [1, { a: 'b' }] });
      const read = await t.request({ method: 'GET', url: '/config', headers: as('mem') });
      expect(read.body.result).toEqual(second.body.result);
      expect(events.filter((e) => e.type === 'config.changed')).toEqual([
        { type: 'config.changed', appId: t.appId, keys: ['announcement', 'featureFlags', 'custom'], deleted: false },
        { type: 'config.changed', appId: t.appId, keys: ['featureFlags'], deleted: false },
      ]);
    });

    it.each([
      [{ censorship: { keywords: 'spam' } }, 'censorship.keywords'],
      [{ censorship: { keywords: ['ok', 3] } }, 'censorship.keywords'],
      [{ censorship: { keywords: [''] } }, 'censorship.keywords'],
      [{ censorship: { keywords: ['x'], mode: 'drop' } }, 'censorship.mode'],
      [{ censorship: { keyword: ['x'] } }, 'censorship.keyword'],
      [{ censorship: ['x'] }, 'censorship'],
      [{ announcement: 'text' }, 'announcement'],
      [{ announcement: { text: 1 } }, 'announcement.text'],
      [{ announcement: { text: 'a', pin: 'yes' } }, 'announcement.pin'],
      [{ featureFlags: { nested: { a: 1 } } }, 'featureFlags.nested'],
    ])('a malformed known key is refused with 400 INVALID_CONFIG_FORMAT and nothing is stored: %j', async (body, names) => {
      const before = (await t.request({ method: 'GET', url: '/config', headers: admin })).body.result;
      const res = await setConfig({ ...body, other: 'not stored either' });
      expect([res.status, res.body.error]).toEqual([400, 'INVALID_CONFIG_FORMAT']);
      expect(res.body.message).toContain(names);
      expect((await t.request({ method: 'GET', url: '/config', headers: admin })).body.result).toEqual(before);
    });

    it('a body that is not a JSON object is 400 INVALID_BODY; users cannot write config', async () => {
      const arr = await setConfig([1, 2]);
      expect([arr.status, arr.body.error]).toEqual([400, 'INVALID_BODY']);
      const byUser = await t.request({ method: 'POST', url: '/config', headers: as('own'), body: { x: 1 } });
      expect([byUser.status, byUser.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
      const delByUser = await t.request({ method: 'DELETE', url: '/config/custom', headers: as('own') });
      expect([delByUser.status, delByUser.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
      expect((await t.request({ method: 'GET', url: '/config', headers: admin })).body.result.x).toBeUndefined();
    });

    it('DELETE /config/:key removes one key ({} result); an absent key is 404 CONFIG_NOT_FOUND', async () => {
      const del = await t.request({ method: 'DELETE', url: '/config/custom', headers: admin });
      expect([del.status, del.body.result]).toEqual([200, {}]);
      expect((await t.request({ method: 'GET', url: '/config', headers: admin })).body.result.custom).toBeUndefined();
      const again = await t.request({ method: 'DELETE', url: '/config/custom', headers: admin });
      expect([again.status, again.body.error]).toEqual([404, 'CONFIG_NOT_FOUND']);
    });
  });

  // ---------------------------------------------------------------- censorship

  describe('censorship', () => {
    afterAll(async () => {
      await t.request({ method: 'DELETE', url: '/config/censorship', headers: admin });
    });

    it('mask (the default): keywords become * of the same length on every path, case-insensitively; history and sockets see the masked text', async () => {
      expect((await setConfig({ censorship: { keywords: ['spam', '廣告'] } })).status).toBe(200);
      const watcher = await socketOf('two');
      const own = (await rest('mem', 'club', text('to edit'))).result;
      const out = await everyPath('mem', 'club', 'SPAM and Spam with 廣告!', own._id);
      for (const [path, o] of Object.entries(out)) {
        expect(o.status, path).toBe(200);
        expect(o.result.message, path).toBe('**** and **** with **!');
      }
      const history = await t.request({ method: 'GET', url: '/rooms/club/messages/v3?limit=4', headers: as('two') });
      expect(history.body.result.data.map((m: any) => m.message)).toEqual(Array(4).fill('**** and **** with **!'));
      const live = await watcher.next('chat message', (m) => m._id === out.rest!.result._id);
      expect(live.message).toBe('**** and **** with **!');
    });

    it('only the message value is masked (strings inside an object message too), never keys, other fields, or encrypted messages', async () => {
      const sent = await rest('mem', 'club', { messageType: 'poll', message: { spam: 'no spam', options: ['spam?', 1, null] }, caption: 'spam', extra: { note: 'spam' } });
      expect(sent.result).toMatchObject({ message: { spam: 'no ****', options: ['****?', 1, null] }, caption: 'spam', extra: { note: 'spam' } });
      const enc = await rest('mem', 'club', { messageType: 'encrypted', message: 'spam-cipher' });
      expect(enc.result.message).toBe('spam-cipher');
      const encEdit = await edit('mem', 'club', enc.result._id, 'spam2');
      expect(encEdit.result.message).toBe('spam2');
      const clean = await rest('mem', 'club', text('nothing to see'));
      expect(clean.result.message).toBe('nothing to see');
    });

    it('reject: a matching message is refused with 400 MESSAGE_CENSORED on every path; nothing is stored or announced', async () => {
      const own = (await rest('mem', 'club', text('to edit later'))).result;
      expect((await setConfig({ censorship: { keywords: ['spam'], mode: 'reject' } })).status).toBe(200);
      const before = await count('club');
      events.length = 0;
      const out = await everyPath('mem', 'club', 'this is SpAm', own._id);
      for (const [path, o] of Object.entries(out)) expect([path, o.status, o.error]).toEqual([path, 400, 'MESSAGE_CENSORED']);
      const nested = await rest('mem', 'club', { messageType: 'card', message: { title: 'spam' } });
      expect(nested.error).toBe('MESSAGE_CENSORED');
      expect(await count('club')).toBe(before);
      expect(events.filter((e) => e.type.startsWith('message.'))).toEqual([]);
      const unchanged = await t.request({ method: 'GET', url: `/rooms/club/messages/${own._id}?before=0&after=0`, headers: as('mem') });
      expect(unchanged.body.result.data[0].message).toBe('to edit later');
      expect((await rest('mem', 'club', text('clean'))).status).toBe(200);
    });

    it('a change by another process is picked up within a second; deleting censorship turns it off', async () => {
      expect((await setConfig({ censorship: { keywords: ['old'] } })).status).toBe(200);
      expect((await rest('mem', 'club', text('old new'))).result.message).toBe('*** new');
      // Another node writes the store directly: this process notices through the version, at most once a second.
      const repo = new ConfigRepo(t.server.store.db);
      await repo.upsert({ app_id: t.appId, key: 'censorship', value: JSON.stringify({ keywords: ['new'] }), updated_at: t.clock.now() });
      await repo.bumpVersion(t.appId);
      expect((await rest('mem', 'club', text('old new'))).result.message).toBe('*** new');
      t.clock.advance(1000);
      expect((await rest('mem', 'club', text('old new'))).result.message).toBe('old ***');
      await t.request({ method: 'DELETE', url: '/config/censorship', headers: admin });
      expect((await rest('mem', 'club', text('old new'))).result.message).toBe('old new');
    });
  });

  // ---------------------------------------------------------------- personal block

  describe('personal block (/blockStatus/my)', () => {
    it('blocks a user: the record names the pair\'s direct room; self, unknown and repeated blocks are refused', async () => {
      events.length = 0;
      const res = await t.request({ method: 'POST', url: '/blockStatus/my/pb', headers: as('pa') });
      expect(res.status).toBe(200);
      expect(res.body.result).toMatchObject({ appID: t.appId, blocker: 'pa', blockee: { _id: 'pb', id: 'pb', nickname: 'pb' }, createdAt: new Date(t.clock.now()).toISOString() });
      expect(res.body.result.room).toMatch(/^[0-9a-f]{32}$/);
      expect(events).toContainEqual({ type: 'user.blocked', appId: t.appId, blocker: 'pa', blockee: 'pb', blocked: true });
      const self = await t.request({ method: 'POST', url: '/blockStatus/my/pa', headers: as('pa') });
      expect([self.status, self.body.error]).toEqual([400, 'SELF_BLOCK_FORBIDDEN']);
      const unknown = await t.request({ method: 'POST', url: '/blockStatus/my/nobody', headers: as('pa') });
      expect([unknown.status, unknown.body.error]).toEqual([404, 'USER_NOT_FOUND']);
      const again = await t.request({ method: 'POST', url: '/blockStatus/my/pb', headers: as('pa') });
      expect([again.status, again.body.error]).toEqual([409, 'USER_ALREADY_BLOCKED']);
    });

    it('lists only the caller\'s own blocks, with the direct room as an object', async () => {
      const mine = await t.request({ method: 'GET', url: '/blockStatus/my', headers: as('pa') });
      expect(mine.body.result.data).toHaveLength(1);
      expect(mine.body.result.data[0]).toMatchObject({ blocker: 'pa', blockee: { _id: 'pb' }, room: { roomType: 'direct' } });
      expect((await t.request({ method: 'GET', url: '/blockStatus/my', headers: as('pb') })).body.result).toEqual({ data: [] });
      expect((await t.request({ method: 'GET', url: '/blockStatus/my/pb', headers: as('pa') })).body.result.blocker).toBe('pa');
      const none = await t.request({ method: 'GET', url: '/blockStatus/my/pa', headers: as('pb') });
      expect([none.status, none.body.error]).toEqual([404, 'BLOCK_NOT_FOUND']);
    });

    it('neither of the pair can send in their direct room, on any path, in either direction; their group room is unaffected', async () => {
      // The direct room is created after the block: the rule follows the members, not the room id.
      const dm = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'dm-custom-id', roomType: 'direct', members: ['pa', 'pb'] } });
      expect(dm.status).toBe(200);
      const old = (await adminSend('system', 'dm-custom-id', { message: 'from the platform' })).result;
      expect(old).toBeDefined();
      const before = await count('dm-custom-id');
      for (const [u, other] of [['pa', 'pb'], ['pb', 'pa']] as const) {
        const out = await everyPath(u, 'dm-custom-id', `hi ${other}`);
        for (const [path, o] of Object.entries(out)) expect([u, path, o.status, o.error]).toEqual([u, path, 403, 'USER_BLOCKED']);
      }
      expect(await count('dm-custom-id')).toBe(before);
      expect((await rest('pa', 'pairs', text('group still works'))).status).toBe(200);
      expect((await rest('pb', 'pairs', text('both ways'))).status).toBe(200);
      // Others (the platform's own sender) may still post; the pair can still read.
      expect((await adminSend('system', 'dm-custom-id', { message: 'notice' })).status).toBe(200);
      expect((await t.request({ method: 'GET', url: '/rooms/dm-custom-id/messages/v3', headers: as('pb') })).status).toBe(200);
    });

    it('unblocking returns the record and lets both send again; unblocking twice is 404 BLOCK_NOT_FOUND', async () => {
      const mine = (await rest('pa', 'pairs', text('before'))).result;
      void mine;
      const res = await t.request({ method: 'DELETE', url: '/blockStatus/my/pb', headers: as('pa') });
      expect(res.status).toBe(200);
      expect(res.body.result).toMatchObject({ blocker: 'pa', blockee: { _id: 'pb' }, room: 'dm-custom-id' });
      for (const u of ['pa', 'pb']) expect((await rest(u, 'dm-custom-id', text('hello again'))).status).toBe(200);
      expect((await socket('pb', 'dm-custom-id', text('socket too'))).status).toBe(200);
      const again = await t.request({ method: 'DELETE', url: '/blockStatus/my/pb', headers: as('pa') });
      expect([again.status, again.body.error]).toEqual([404, 'BLOCK_NOT_FOUND']);
    });

    it('a block by the other side alone is enough to stop both', async () => {
      const old = (await rest('pa', 'dm-custom-id', text('mine'))).result;
      expect((await t.request({ method: 'POST', url: '/blockStatus/my/pa', headers: as('pb') })).status).toBe(200);
      expect((await edit('pa', 'dm-custom-id', old._id, 'changed')).error).toBe('USER_BLOCKED');
      expect((await rest('pa', 'dm-custom-id', text('x'))).error).toBe('USER_BLOCKED');
      expect((await t.request({ method: 'DELETE', url: '/blockStatus/my/pa', headers: as('pb') })).status).toBe(200);
      expect((await edit('pa', 'dm-custom-id', old._id, 'changed')).status).toBe(200);
    });
  });

  // ---------------------------------------------------------------- room ban

  describe('room ban (/blockStatus/room)', () => {
    let oldOfBad: string;
    beforeAll(async () => {
      oldOfBad = (await rest('bad', 'club', text('before the ban'))).result._id;
    });

    it('only the platform, the owner and managers may ban, and nobody bans their own rank or above', async () => {
      const byMember = await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: as('mem') });
      expect([byMember.status, byMember.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
      const byOutsider = await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: as('out') });
      expect([byOutsider.status, byOutsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      const mgrOnOwner = await t.request({ method: 'POST', url: '/blockStatus/room/club/own', headers: as('mgr') });
      expect([mgrOnOwner.status, mgrOnOwner.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
      const self = await t.request({ method: 'POST', url: '/blockStatus/room/club/mgr', headers: as('mgr') });
      expect([self.status, self.body.error]).toEqual([400, 'SELF_BLOCK_FORBIDDEN']);
      for (const url of ['/blockStatus/room/nowhere/bad', '/blockStatus/room/club/nobody']) {
        const res = await t.request({ method: 'POST', url, headers: as('own') });
        expect([res.status, res.body.error]).toEqual([404, 'ROOM_OR_USER_NOT_FOUND']);
      }
      const list = await t.request({ method: 'GET', url: '/blockStatus/room/club', headers: as('mem') });
      expect([list.status, list.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    });

    it('a manager bans a member: the record has the documented shape; banning again is 409', async () => {
      events.length = 0;
      const res = await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: as('mgr') });
      expect(res.status).toBe(200);
      expect(res.body.result).toEqual({
        appID: t.appId,
        blockee: expect.objectContaining({ _id: 'bad', id: 'bad', nickname: 'bad' }),
        blocker: 'mgr',
        room: 'club',
        createdAt: new Date(t.clock.now()).toISOString(),
        updatedAt: new Date(t.clock.now()).toISOString(),
      });
      expect(events).toContainEqual({ type: 'room.ban', appId: t.appId, roomId: 'club', actorId: 'mgr', userId: 'bad', banned: true, unblockAt: null });
      const again = await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: as('own') });
      expect([again.status, again.body.error]).toEqual([409, 'USER_ALREADY_BLOCKED']);
      const list = await t.request({ method: 'GET', url: '/blockStatus/room/club', headers: as('own') });
      expect(list.body.result.data).toEqual([
        expect.objectContaining({ blockee: expect.objectContaining({ _id: 'bad' }), blocker: expect.objectContaining({ _id: 'mgr' }), room: { _id: 'club', roomType: 'group', id: 'club', createdTimeMS: expect.any(Number) } }),
      ]);
    });

    it('a banned user cannot send (any path), edit, read the history or receive new messages of the room', async () => {
      const before = await count('club');
      const out = await everyPath('bad', 'club', 'let me talk', oldOfBad);
      for (const [path, o] of Object.entries(out)) expect([path, o.status, o.error]).toEqual([path, 403, 'USER_BANNED']);
      expect(await count('club')).toBe(before);
      for (const url of ['/rooms/club/messages/v3', '/rooms/club/messages', `/rooms/club/messages/${oldOfBad}`]) {
        const res = await t.request({ method: 'GET', url, headers: as('bad') });
        expect([url, res.status, res.body.error]).toEqual([url, 403, 'USER_BANNED']);
      }
      const badSocket = await socketOf('bad');
      const twoSocket = await socketOf('two');
      const sent = (await rest('mem', 'club', text('members only'))).result;
      expect((await twoSocket.next('chat message', (m) => m._id === sent._id)).message).toBe('members only');
      await badSocket.none('chat message', 300);
      // Banned from other rooms? No: the ban is this room's only.
      expect((await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'elsewhere', members: ['bad', 'mem'] } })).status).toBe(200);
      expect((await rest('bad', 'elsewhere', text('fine here'))).status).toBe(200);
    });

    it('a room deleted and created again with the same id starts without the old bans', async () => {
      expect((await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'reborn', members: ['bad', 'mem'] } })).status).toBe(200);
      expect((await t.request({ method: 'POST', url: '/blockStatus/room/reborn/bad', headers: admin, body: {} })).status).toBe(200);
      expect((await rest('bad', 'reborn', text('banned'))).error).toBe('USER_BANNED');
      expect((await t.request({ method: 'DELETE', url: '/rooms/reborn', headers: admin })).status).toBe(200);
      expect((await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'reborn', members: ['bad', 'mem'] } })).status).toBe(200);
      expect((await rest('bad', 'reborn', text('a new room'))).status).toBe(200);
    });

    it('a banned user who leaves cannot join again', async () => {
      await t.request({ method: 'PUT', url: '/rooms/club', headers: admin, body: { opening: 1 } });
      const leave = await t.request({ method: 'POST', url: '/rooms/club/delete/members', headers: as('bad'), body: { members: ['bad'] } });
      expect(leave.status).toBe(200);
      const join = await t.request({ method: 'POST', url: '/rooms/club/join', headers: as('bad'), body: {} });
      expect([join.status, join.body.error]).toEqual([403, 'USER_BANNED']);
      const createAndJoin = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('bad'), body: { _id: 'club' } });
      expect([createAndJoin.status, createAndJoin.body.error]).toEqual([403, 'USER_BANNED']);
    });

    it('unban: returns the record, the user may join and send again; a second unban answers the current state (idempotent)', async () => {
      const byMember = await t.request({ method: 'DELETE', url: '/blockStatus/room/club/bad', headers: as('mem') });
      expect(byMember.status).toBe(403);
      t.clock.advance(10);
      const res = await t.request({ method: 'DELETE', url: '/blockStatus/room/club/bad', headers: as('own') });
      expect(res.status).toBe(200);
      expect(res.body.result).toMatchObject({ blocker: 'mgr', room: 'club', blockee: { _id: 'bad' }, updatedAt: new Date(t.clock.now()).toISOString() });
      expect((await t.request({ method: 'POST', url: '/rooms/club/join', headers: as('bad'), body: {} })).status).toBe(200);
      expect((await rest('bad', 'club', text('back'))).status).toBe(200);
      const again = await t.request({ method: 'DELETE', url: '/blockStatus/room/club/bad', headers: as('own') });
      expect([again.status, again.body.result]).toEqual([200, { appID: t.appId, blockee: expect.objectContaining({ _id: 'bad' }), blocker: null, room: 'club', banned: false }]);
      const nobody = await t.request({ method: 'DELETE', url: '/blockStatus/room/club/nobody-at-all', headers: as('own') });
      expect([nobody.status, nobody.body.error]).toEqual([404, 'ROOM_OR_USER_NOT_FOUND']);
    });

    it('unblockAt ends a ban by the clock; a time in the past is refused; the platform may ban the owner', async () => {
      const past = await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: admin, body: { unblockAt: t.clock.now() - 1 } });
      expect([past.status, past.body.error]).toEqual([400, 'INVALID_REQUEST']);
      const until = t.clock.now() + 60_000;
      const res = await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: admin, body: { unblockAt: new Date(until).toISOString() } });
      expect(res.body.result).toMatchObject({ blocker: null, unblockAtMS: until, unblockAt: new Date(until).toISOString() });
      expect((await rest('bad', 'club', text('still banned'))).error).toBe('USER_BANNED');
      t.clock.advance(60_000);
      expect((await rest('bad', 'club', text('free again'))).status).toBe(200);
      expect((await t.request({ method: 'GET', url: '/blockStatus/room/club', headers: admin })).body.result.data).toEqual([]);
      // An expired ban is replaced by a new one.
      expect((await t.request({ method: 'POST', url: '/blockStatus/room/club/bad', headers: as('own') })).status).toBe(200);
      expect((await t.request({ method: 'DELETE', url: '/blockStatus/room/club/bad', headers: as('own') })).status).toBe(200);
      const owner = await t.request({ method: 'POST', url: '/blockStatus/room/club/own', headers: admin });
      expect(owner.status).toBe(200);
      expect((await rest('own', 'club', text('owner'))).error).toBe('USER_BANNED');
      expect((await t.request({ method: 'DELETE', url: '/blockStatus/room/club/own', headers: admin })).status).toBe(200);
    });
  });

  // ---------------------------------------------------------------- freeze, non-members

  describe('frozen rooms and non-members', () => {
    it('a frozen room refuses new messages and edits from users on every path; the platform may still post', async () => {
      const old = (await rest('mem', 'club', text('before freeze'))).result;
      expect((await t.request({ method: 'PUT', url: '/rooms/club', headers: as('own'), body: { status: 0 } })).status).toBe(200);
      const out = { rest: await PATHS.rest('mem', 'club', 'x'), socket: await PATHS.socket('mem', 'club', 'x'), edit: await edit('mem', 'club', old._id, 'y') };
      for (const [path, o] of Object.entries(out)) expect([path, o.status, o.error]).toEqual([path, 403, 'ROOM_FROZEN']);
      expect((await adminSend('mem', 'club', { message: 'announcement' })).status).toBe(200);
      expect((await t.request({ method: 'PUT', url: '/rooms/club', headers: as('own'), body: { status: 1 } })).status).toBe(200);
      expect((await rest('mem', 'club', text('thawed'))).status).toBe(200);
    });

    it('a non-member cannot send or edit in the room (REST, socket); the platform may send as them', async () => {
      const old = (await rest('mem', 'club', text('member message'))).result;
      for (const o of [await PATHS.rest('out', 'club', 'x'), await PATHS.socket('out', 'club', 'x'), await edit('out', 'club', old._id, 'y')]) {
        expect([o.status, o.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      }
      expect((await adminSend('out', 'club', { message: 'via the backend' })).status).toBe(200);
    });
  });

  // ---------------------------------------------------------------- admin mute

  describe('admin mute (/admin/clients/:uid/mute/:room)', () => {
    it('mutes and unmutes a room for a user, as /me/mute does; unmuting an unmuted room answers the current state', async () => {
      events.length = 0;
      const mute = await t.request({ method: 'POST', url: '/admin/clients/mem/mute/club?limit=10&skip=100', headers: admin });
      expect(mute.status).toBe(200);
      expect(mute.body.result).toMatchObject({ _id: 'mem', id: 'mem', mute: ['club'], isRobot: false });
      expect(events).toContainEqual({ type: 'roomPref.changed', appId: t.appId, roomId: 'club', userId: 'mem', scope: '' });
      const rooms = await t.request({ method: 'GET', url: '/rooms', headers: as('mem') });
      expect(rooms.body.result.data.find((r: any) => r._id === 'club').muted).toBe(true);
      const unmute = await t.request({ method: 'DELETE', url: '/admin/clients/mem/mute/club', headers: admin });
      expect(unmute.body.result.mute).toEqual([]);
      events.length = 0;
      const again = await t.request({ method: 'DELETE', url: '/admin/clients/mem/mute/club', headers: admin });
      expect([again.status, again.body.result.mute]).toEqual([200, []]);
      expect(events).toEqual([]);
    });

    it('unknown users and rooms are 404; users cannot call it', async () => {
      const user = await t.request({ method: 'POST', url: '/admin/clients/nobody/mute/club', headers: admin });
      expect([user.status, user.body.error]).toEqual([404, 'CLIENT_NOT_FOUND']);
      const room = await t.request({ method: 'POST', url: '/admin/clients/mem/mute/nowhere', headers: admin });
      expect([room.status, room.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
      const byUser = await t.request({ method: 'POST', url: '/admin/clients/mem/mute/club', headers: as('mem') });
      expect([byUser.status, byUser.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    });
  });
});
