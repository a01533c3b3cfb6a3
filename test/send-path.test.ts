import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompiledQuery, sql } from 'kysely';
import { SQLITE_FILE } from '../src/store/database.js';
import { senderReads } from '../src/chat/message-writer.js';
import { appendShapes } from '../src/store/append-repo.js';
import type { MessageRow } from '../src/store/messages-repo.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

/**
 * The send path's shortcuts (chat/room-cache.ts, chat/message-writer.ts): group commit must leave exactly what
 * sending one by one leaves, and the room cache must never let a send through that the store would refuse.
 */

function row(id: string, room: string, sender: string | null): MessageRow {
  return { app_id: 'a', id, room_id: room, sender_id: sender, message_type: 'text', message: '""', fields: '{}', reply_id: null, pinned: 0, edited_at: null, message_time: 1, created_at: 1, updated_at: 1 };
}

describe('senderReads', () => {
  it("marks each sender's last message read, with what others sent after it as unread", () => {
    const rows = [row('1', 'r', 'a'), row('2', 'r', 'b'), row('3', 's', 'a'), row('4', 'r', 'a'), row('5', 'r', 'b'), row('6', 'r', null), row('7', 's', 'c')];
    const reads = senderReads(rows);
    const get = (room: string, user: string) => reads.find((r) => r.roomId === room && r.userId === user);
    expect(get('r', 'a')).toEqual({ roomId: 'r', userId: 'a', messageId: '4', badge: 2 });
    expect(get('r', 'b')).toEqual({ roomId: 'r', userId: 'b', messageId: '5', badge: 1 });
    expect(get('s', 'a')).toEqual({ roomId: 's', userId: 'a', messageId: '3', badge: 1 });
    expect(get('s', 'c')).toEqual({ roomId: 's', userId: 'c', messageId: '7', badge: 0 });
    expect(reads).toHaveLength(4);
  });
});

for (const dialect of DIALECTS) {
  describe(`send path [${dialect}]`, () => {
    let t: TestServer;
    const tokens: Record<string, string> = {};
    const users = ['ann', 'bob', 'cat', 'dan', 'eve'];
    const as = (u: string) => ({ appId: t.appId, userId: u, platform: false });

    beforeAll(async () => {
      t = await startTestServer(dialect);
      for (const u of users) tokens[u] = await createUser(t, u);
      for (const [room, members] of [['r1', users], ['r2', ['ann', 'bob', 'cat']]] as const) {
        const res = await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' }, body: { _id: room, roomType: 'group', members } });
        expect(res.status).toBe(200);
      }
    });
    afterAll(() => t?.close());

    it('writes messages sent together in one batch, with the badges and read marks of sending them one by one', async () => {
      const messages = t.server.services.messages;
      const writer = t.server.services.chat.writer;
      await messages.send(as('ann'), 'r1', { message: 'warm-up' });
      await messages.send(as('ann'), 'r2', { message: 'warm-up' });
      const before = { ...writer.stats };
      // 60 sends started in the same turn of the event loop: several senders, two rooms, interleaved.
      const plan = Array.from({ length: 60 }, (_, i) => ({ user: users[(i * 7) % 5]!, room: i % 3 === 0 ? 'r2' : 'r1' })).filter((p) => p.room === 'r1' || ['ann', 'bob', 'cat'].includes(p.user));
      const results = await Promise.all(plan.map((p, i) => messages.send(as(p.user), p.room, { message: `m${i}`, n: i })));
      expect(writer.stats.messages - before.messages).toBe(plan.length);
      expect(writer.stats.batches - before.batches).toBeLessThan(plan.length / 4);

      // Every caller got its own message back, in the order the sends were made.
      const ids = results.map((r) => r._id as string);
      expect(new Set(ids).size).toBe(plan.length);
      expect([...ids].sort()).toEqual(ids);
      results.forEach((r, i) => {
        expect(r.message).toBe(`m${i}`);
        expect(r.n).toBe(i);
        expect((r.sender as { _id: string })._id).toBe(plan[i]!.user);
      });

      // The unread count of each member is what one-by-one sending gives: messages from others after their last own.
      for (const room of ['r1', 'r2']) {
        const history = await t.request({ method: 'GET', url: `/rooms/${room}/messages/v3?limit=200&sortOrder=asc`, headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
        const all = history.body.result.data as Array<{ _id: string; sender: { _id: string } }>;
        for (const u of room === 'r1' ? users : ['ann', 'bob', 'cat']) {
          const lastOwn = all.map((m) => m.sender._id).lastIndexOf(u);
          const expected = all.slice(lastOwn + 1).filter((m) => m.sender._id !== u).length;
          const res = await t.request({ method: 'GET', url: `/rooms/${room}`, headers: userHeaders(t.clientKey, tokens[u]!) });
          expect({ room, u, unread: res.body.result.unread }).toEqual({ room, u, unread: expected });
          if (lastOwn >= 0) {
            const props = res.body.result.memberProperties.find((p: { client: string }) => p.client === u);
            expect(props.lastRead).toBe(all[lastOwn]!._id);
          }
        }
        const last = await t.request({ method: 'GET', url: `/rooms/${room}`, headers: userHeaders(t.clientKey, tokens.ann!) });
        expect(last.body.result.lastMessage._id).toBe(all[all.length - 1]!._id);
        // totalCount is a stored count: it must equal the messages there are (system messages included)
        expect(history.body.result.totalCount).toBe(all.length);
      }
      const before2 = await t.request({ method: 'GET', url: '/rooms/r2/messages/v3?limit=1', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
      const victim = before2.body.result.data[0]._id as string;
      expect((await t.request({ method: 'DELETE', url: `/rooms/r2/messages/${victim}`, headers: { 'IM-API-KEY': t.apiKey } })).status).toBe(200);
      const after2 = await t.request({ method: 'GET', url: '/rooms/r2/messages/v3?limit=1', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
      expect(after2.body.result.totalCount).toBe(before2.body.result.totalCount - 1);
    });

    it('a batch across many rooms raises exactly the badges of their members, a banned member excepted', async () => {
      const admin = { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' };
      // 12 rooms of three: from eight rooms on, SQLite once planned the badge update as a scan of the app's members.
      const rooms = Array.from({ length: 12 }, (_, i) => `wide${i}`);
      for (const id of rooms) expect((await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: id, roomType: 'group', members: ['ann', 'bob', 'cat'] } })).status).toBe(200);
      expect((await t.request({ method: 'POST', url: '/blockStatus/room/wide3/cat', headers: admin })).status).toBe(200);
      const unread = async (room: string, u: string) => (await t.request({ method: 'GET', url: `/rooms/${room}`, headers: userHeaders(t.clientKey, tokens[u]!) })).body.result?.unread;
      const before = new Map<string, number>();
      for (const room of rooms) for (const u of ['bob', 'cat']) if (!(room === 'wide3' && u === 'cat')) before.set(`${room}/${u}`, await unread(room, u));
      const writer = t.server.services.chat.writer;
      const batches = writer.stats.batches;
      // ann sends once to every room and a second time to the even ones, all in one turn of the event loop.
      const plan = [...rooms, ...rooms.filter((_, i) => i % 2 === 0)];
      await Promise.all(plan.map((room, i) => t.server.services.messages.send(as('ann'), room, { message: `w${i}` })));
      expect(writer.stats.batches - batches).toBeLessThan(plan.length / 4);
      for (const [i, room] of rooms.entries()) {
        const sent = i % 2 === 0 ? 2 : 1;
        expect({ room, unread: await unread(room, 'bob') }).toEqual({ room, unread: before.get(`${room}/bob`)! + sent });
        if (room !== 'wide3') expect({ room, unread: await unread(room, 'cat') }).toEqual({ room, unread: before.get(`${room}/cat`)! + sent });
        expect({ room, unread: await unread(room, 'ann') }).toEqual({ room, unread: 0 });
      }
      // The ban lifted: cat's stored badge in wide3 did not move while banned.
      expect((await t.request({ method: 'DELETE', url: '/blockStatus/room/wide3/cat', headers: admin })).status).toBe(200);
      expect(await unread('wide3', 'cat')).toBe(0);
    });

    if (dialect === 'postgres') {
      it('a batch runs as one call of a named prepared statement on the connection that wrote it', async () => {
        let prepared: string[] = [];
        const isBatch = (s: string) => s.startsWith('select imkit_append_batch(');
        // The pool hands out the client released last: the one that just wrote a batch.
        for (let i = 0; i < 10 && !prepared.some(isBatch); i++) {
          await t.server.services.messages.send(as('ann'), 'r2', { message: `named${i}` });
          const res = await sql<{ statement: string }>`select statement from pg_prepared_statements where name like 'imkit_%'`.execute(t.server.store.db);
          prepared = res.rows.map((r) => r.statement);
        }
        // Background writes of their own (API key addresses, key alerts) go through the same pool and may have
        // left their statements on this connection too (a flake on a busy machine); none of the batch's tables is
        // written by a statement of its own.
        expect(prepared.filter(isBatch)).toEqual([expect.stringMatching(/^select imkit_append_batch\(\$1, .*\$24\)$/)]);
        expect(prepared.filter((s) => !isBatch(s) && /\b(messages|rooms|room_members)\b/.test(s))).toEqual([]);
      });
    }

    if (dialect === 'sqlite') {
      it('the badge update looks rooms up by key, whatever the number of rooms in the batch', async () => {
        for (const n of [1, 8, 32, 128]) {
          const text = appendShapes.badges(n).compile(t.server.store.db).sql;
          // EXPLAIN with a null for every placeholder: the plan does not depend on the values.
          const explain = CompiledQuery.raw(`explain query plan ${text}`, Array.from({ length: n + 3 }, () => null));
          const rows = (await t.server.store.db.executeQuery<{ detail: string }>(explain)).rows;
          const details = rows.map((r) => r.detail).join(' | ');
          expect({ n, details }).toEqual({ n, details: expect.stringContaining('sqlite_autoindex_room_members_1 (app_id=? AND room_id=?)') });
          expect(details).not.toContain('room_members_user');
        }
      });
    }

    it('text that array literals must escape comes back exactly as sent, sent together', async () => {
      const texts = ['{a,b}', '"quoted"', 'back\\slash\\', 'NULL', '', ' spaced ', 'comma, and } brace', '多語言 😀', "it's", 'new\nline'];
      const sent = await Promise.all(
        texts.map((text, i) => t.server.services.messages.send(as('ann'), 'r2', { message: text, extra: { k: `{"v":"${text}"}`, i } })),
      );
      const page = await t.request({ method: 'GET', url: `/rooms/r2/messages/v3?limit=${texts.length}`, headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
      const byId = new Map(page.body.result.data.map((m: { _id: string }) => [m._id, m]));
      for (const [i, m] of sent.entries()) {
        expect(byId.get(m._id as string)).toMatchObject({ message: texts[i], extra: { k: `{"v":"${texts[i]}"}`, i } });
      }
    });

    it('messages stored together are announced in the order stored, also when rendering one waits for the store', async () => {
      const messages = t.server.services.messages;
      await messages.send(as('ann'), 'r1', { message: 'warm-up' });
      const order: string[] = [];
      const off = t.server.services.bus.on((e) => {
        if (e.type === 'message.created') order.push(e.messageId);
      });
      try {
        // bob's profile leaves the user cache: rendering his messages reads the store, ann's come from memory.
        t.server.services.bus.emit({ type: 'user.changed', appId: t.appId, userIds: ['bob'] });
        const results = await Promise.all(Array.from({ length: 12 }, (_, i) => messages.send(as(i % 2 === 0 ? 'bob' : 'ann'), 'r1', { message: `order${i}` })));
        const ids = results.map((r) => r._id as string);
        expect(order).toEqual([...ids].sort());
      } finally {
        off();
      }
    });

    it('a message the store refuses fails alone; the others of its batch are stored', async () => {
      const writer = t.server.services.chat.writer;
      const now = t.clock.now();
      const good = (n: number) => writer.append({ appId: t.appId, roomId: 'r2', senderId: 'bob', messageType: 'text', message: `ok${n}`, fields: {}, now });
      // message_type is NOT NULL in the schema: this row cannot be inserted.
      const bad = writer.append({ appId: t.appId, roomId: 'r2', senderId: 'bob', messageType: null as unknown as string, message: 'bad', fields: {}, now });
      const settled = await Promise.allSettled([good(1), bad, good(2)]);
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      const history = await t.request({ method: 'GET', url: '/rooms/r2/messages/v3?limit=3', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
      expect(history.body.result.data.map((m: { message: string }) => m.message)).toEqual(['ok2', 'ok1', expect.any(String)]);
      expect(history.body.result.data[2].message).not.toBe('bad');
    });

    it('new messages carry the sender profile as it is now: the user cache follows every profile write', async () => {
      const admin = { 'IM-API-KEY': t.apiKey };
      const send = async (u: string) => {
        const res = await t.request({ method: 'POST', url: '/rooms/r2/message', headers: userHeaders(t.clientKey, tokens[u]!), body: { message: 'profile' } });
        expect(res.status).toBe(200);
        return res.body.result.sender as Record<string, unknown>;
      };
      const cache = t.server.services.chat.userCache;
      await send('cat');
      const hits = cache.hits;
      expect((await send('cat')).nickname).toBe('cat');
      expect(cache.hits).toBeGreaterThan(hits);

      // renamed by the platform, then by the user themself
      expect((await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'cat', nickname: 'Catherine', avatarUrl: 'https://a.example/c.png' } })).status).toBe(200);
      expect(await send('cat')).toMatchObject({ nickname: 'Catherine', avatarUrl: 'https://a.example/c.png' });
      expect((await t.request({ method: 'POST', url: '/me', headers: userHeaders(t.clientKey, tokens.cat!), body: { nickname: 'Cat S.' } })).status).toBe(200);
      expect((await send('cat')).nickname).toBe('Cat S.');
      // many at once
      expect((await t.request({ method: 'POST', url: '/admin/clients/list', headers: admin, body: { data: [{ _id: 'cat', nickname: 'Kitty' }] } })).status).toBe(200);
      expect((await send('cat')).nickname).toBe('Kitty');

      // a login (GET /me as the SDKs call it after connecting) moves the login time new messages show
      t.clock.advance(5000);
      const me = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, tokens.cat!) });
      expect(me.body.result.lastLoginTimeMS).toBe(t.clock.now());
      expect((await send('cat')).lastLoginTimeMS).toBe(t.clock.now());
    });

    it('the room cache follows membership, roles, bans, freezes and deletion at once', async () => {
      const send = (u: string, room = 'r1') => t.request({ method: 'POST', url: `/rooms/${room}/message`, headers: userHeaders(t.clientKey, tokens[u]!), body: { message: 'hi' } });
      const admin = (u = 'ann') => ({ 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': u });
      const cache = t.server.services.chat.roomCache;
      expect((await send('eve')).status).toBe(200);
      const hits = cache.hits;
      expect((await send('eve')).status).toBe(200);
      expect(cache.hits).toBeGreaterThan(hits);

      // removed, then added back
      expect((await t.request({ method: 'POST', url: '/rooms/r1/delete/members', headers: admin(), body: { members: ['eve'] } })).status).toBe(200);
      expect((await send('eve')).body.error).toBe('NOT_ROOM_MEMBER');
      expect((await t.request({ method: 'POST', url: '/rooms/r1/members', headers: admin(), body: { members: ['eve'] } })).status).toBe(200);
      expect((await send('eve')).status).toBe(200);

      // banned, then unbanned
      expect((await t.request({ method: 'POST', url: '/blockStatus/room/r1/eve', headers: admin() })).status).toBe(200);
      expect((await send('eve')).body.error).toBe('USER_BANNED');
      expect((await t.request({ method: 'DELETE', url: '/blockStatus/room/r1/eve', headers: admin() })).status).toBe(200);
      expect((await send('eve')).status).toBe(200);

      // frozen, then open again
      expect((await t.request({ method: 'PUT', url: '/rooms/r1', headers: admin(), body: { status: 0 } })).status).toBe(200);
      expect((await send('eve')).body.error).toBe('ROOM_FROZEN');
      expect((await t.request({ method: 'PUT', url: '/rooms/r1', headers: admin(), body: { status: 1 } })).status).toBe(200);
      expect((await send('eve')).status).toBe(200);

      // deleted
      expect((await t.request({ method: 'DELETE', url: '/rooms/r1', headers: { 'IM-API-KEY': t.apiKey } })).status).toBe(200);
      expect((await send('eve')).body.error).toBe('ROOM_NOT_FOUND');
    });
  });
}

/**
 * Overload: past `maxQueuedMessages` messages waiting for a batch, a send is refused at once (503, retry after a
 * second) instead of waiting in memory. The writer thread is held by another connection's write lock, as a stalled
 * disk or a long transaction would hold it.
 */
describe('messages waiting to be stored (SQLite)', () => {
  let t: TestServer;
  let tok: string;
  beforeAll(async () => {
    t = await startTestServer('sqlite', { maxQueuedMessages: 2 });
    tok = await createUser(t, 'ann');
    await createUser(t, 'bob');
    expect((await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'q', roomType: 'group', members: ['ann', 'bob'] } })).status).toBe(200);
  });
  afterAll(() => t?.close());

  it('refuses sends with 503 SERVICE_UNAVAILABLE while the queue is full, and stores the ones it accepted', async () => {
    const caller = { appId: t.appId, userId: 'ann', platform: false };
    const send = (text: string) => t.server.services.messages.send(caller, 'q', { messageType: 'text', message: text });
    await send('warm');
    // The per-key usage counts are written on the event loop's connection every 10 s: one falling while the lock
    // below is held would block the loop for the whole busy timeout. Written now, and no more in this test.
    await t.server.usage.close();
    const lock = new Sqlite(path.join(t.config.dataDir, SQLITE_FILE));
    lock.pragma('busy_timeout = 5000');
    lock.exec('BEGIN IMMEDIATE');
    let released = false;
    try {
      const inFlight = send('m0');
      // The batch holding m0 goes to the writer thread at the end of this turn, and waits there for the lock.
      await new Promise((r) => setTimeout(r, 50));
      const queued = [send('m1'), send('m2')];
      const refused = await send('m3').catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'SERVICE_UNAVAILABLE', status: 503, extra: { retryAfter: 1 } });
      const rest = await t.request({ method: 'POST', url: '/rooms/q/message', headers: userHeaders(t.clientKey, tok), body: { messageType: 'text', message: 'm4' } });
      expect([rest.status, rest.body.error, rest.body.RC, rest.body.retryAfter, rest.headers['retry-after']]).toEqual([503, 'SERVICE_UNAVAILABLE', 503, 1, '1']);
      expect(t.logs.join('')).not.toContain('request failed');
      lock.exec('ROLLBACK');
      released = true;
      const stored = await Promise.all([inFlight, ...queued]);
      expect(stored.map((m) => m.message)).toEqual(['m0', 'm1', 'm2']);
      expect(t.server.services.chat.writer.stats.refused).toBe(2);
    } finally {
      if (!released) lock.exec('ROLLBACK');
      lock.close();
    }
    // Accepted again once the queue has drained; the refused messages were never stored.
    expect((await send('m5')).message).toBe('m5');
    const page = await t.request({ method: 'GET', url: '/rooms/q/messages/v3?limit=10&sortOrder=asc', headers: userHeaders(t.clientKey, tok) });
    expect(page.body.result.data.map((m: { message: string }) => m.message)).toEqual(['warm', 'm0', 'm1', 'm2', 'm5']);
  });
});
