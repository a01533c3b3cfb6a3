import { io } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type ImkitServer } from '../src/server.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

const decode = (s: unknown) => (typeof s === 'string' ? JSON.parse(Buffer.from(s, 'base64').toString()) : s);

/**
 * The conformance scenario of realtime spec §6.3, driven the way the IMKIT js-lib drives the server: REST for
 * actions, a base64 socket with conf + auth2 on every (re)connect, auto-reconnect across a server restart.
 */
describe.each(DIALECTS)('conformance scenario §6.3 (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  let restarted: ImkitServer | undefined;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);

  beforeAll(async () => {
    t = await startTestServer(dialect);
    base = await t.server.listen();
  });
  afterAll(async () => {
    await restarted?.close();
    await t?.close();
  });

  it('runs steps 1-12', async () => {
    // 1. tokens (the admin API, API_KEY header only)
    for (const u of ['alice', 'bob']) {
      const res = await t.request({ method: 'POST', url: '/admin/clients', headers: { API_KEY: t.apiKey }, body: { _id: u, nickname: u[0]!.toUpperCase() + u.slice(1), issueAccessToken: true } });
      tok[u] = res.body.result.token;
    }
    // 2. sockets: conf {encoding:base64} then auth2 (token, {CLIENT_KEY, Authorization}) on every connect
    const sockets: Record<string, { s: ReturnType<typeof io>; got: any[]; authed: number }> = {};
    for (const u of ['alice', 'bob']) {
      const s = io(base, { transports: ['websocket'], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 200 });
      const entry = { s, got: [] as any[], authed: 0 };
      for (const ev of ['chat message', 'typing', 'lastRead', 'room']) s.on(ev, (p: unknown) => entry.got.push({ ev, p: decode(p) }));
      s.on('connect', () => {
        s.emit('conf', { encoding: 'base64' }, () => {
          s.emit('auth2', tok[u], { CLIENT_KEY: t.clientKey, Authorization: tok[u] }, (ack: string) => {
            if (decode(ack).result?.client === u) entry.authed++;
          });
        });
      });
      sockets[u] = entry;
    }
    await until(() => sockets.alice!.authed === 1 && sockets.bob!.authed === 1);
    const seen = (u: string, ev: string, pred: (p: any) => boolean) => until(() => sockets[u]!.got.some((g) => g.ev === ev && pred(g.p)));

    // 3. room
    const room = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('alice'), body: { _id: 'conf-room-1', name: 'Conformance', roomType: 'group' } });
    expect(room.body.result._id).toBe('conf-room-1');
    expect(room.body.result.members.map((m: any) => m._id)).toEqual(['alice']);
    // 4. join
    const joined = await t.request({ method: 'POST', url: '/rooms/conf-room-1/join', headers: as('bob'), body: {} });
    for (const m of joined.body.result.members) expect(m.id).toBe(m._id);
    expect(joined.body.result.members.map((m: any) => m._id)).toEqual(['alice', 'bob']);
    await seen('alice', 'room', (r) => r._id === 'conf-room-1' && r.members.length === 2);
    // 5. send over REST, 6. both receive it
    const viaRest = (await t.request({ method: 'POST', url: '/rooms/conf-room-1/message', headers: as('alice'), body: { messageType: 'text', message: 'hello via REST' } })).body.result;
    expect(viaRest).toMatchObject({ room: 'conf-room-1', sender: { _id: 'alice' } });
    expect(viaRest.messageTimeMS).toBeGreaterThan(0);
    expect(viaRest.createdAtMS).toBeGreaterThan(0);
    await seen('bob', 'chat message', (m) => m._id === viaRest._id && m.message === 'hello via REST');
    await seen('alice', 'chat message', (m) => m._id === viaRest._id);
    // 7. send over the socket: plain-object ack
    const ack: any = await new Promise((r) => sockets.alice!.s.emit('chat message', { room: 'conf-room-1', messageType: 'text', message: 'hello via socket' }, r));
    expect(ack.RC).toBe(0);
    await seen('bob', 'chat message', (m) => m._id === ack.result._id);
    // 8. typing: bob only
    sockets.alice!.s.emit('typing', 'conf-room-1', Buffer.from('…').toString('base64'));
    await seen('bob', 'typing', (p) => p.room === 'conf-room-1' && p.sender === 'alice');
    expect(sockets.alice!.got.some((g) => g.ev === 'typing')).toBe(false);
    // 9. read receipt
    const read = await t.request({ method: 'PUT', url: '/rooms/conf-room-1/lastRead', headers: as('bob'), body: { message: ack.result._id } });
    expect(read.body.result).toEqual({ client: 'bob', lastRead: ack.result._id, badge: 0 });
    for (const u of ['alice', 'bob']) await seen(u, 'lastRead', (p) => p.memberID === 'bob' && p.messageID === ack.result._id && p.roomID === 'conf-room-1');
    // 10. history, newest first
    const hist = await t.request({ method: 'GET', url: '/rooms/conf-room-1/messages?limit=20', headers: as('bob') });
    expect(hist.body.result.totalCount).toBeGreaterThanOrEqual(2);
    expect(hist.body.result.data.slice(0, 2).map((m: any) => m.message)).toEqual(['hello via socket', 'hello via REST']);
    // 11. negative: garbage token
    const bad = await TestClient.connect(base, 'bundle');
    await bad.emitAck('conf', { encoding: 'base64' });
    const [badAck] = await bad.emitAck('auth2', 'garbage', { CLIENT_KEY: t.clientKey, Authorization: 'garbage' });
    expect(bad.decode(badAck).RC).toBe(401);
    bad.close();
    // 12. reconnect after a server restart: the clients reconnect, conf + auth2 again, and chat works again
    const port = Number(new URL(base).port);
    await t.server.close();
    restarted = await createServer({ ...t.config, port, logLevel: 'silent' }, { clock: t.clock });
    await restarted.listen();
    await until(() => sockets.alice!.authed === 2 && sockets.bob!.authed === 2, 8000);
    const after = await restarted.http.inject({ method: 'POST', url: '/rooms/conf-room-1/message', headers: { ...as('alice'), 'content-type': 'application/json' }, payload: JSON.stringify({ messageType: 'text', message: 'after restart' }) });
    const afterId = JSON.parse(after.body).result._id;
    await seen('bob', 'chat message', (m) => m._id === afterId);
    for (const u of ['alice', 'bob']) sockets[u]!.s.disconnect();
  });
});

describe.each(DIALECTS)('resync after a disconnect (%s)', (dialect) => {
  it('GET /rooms?updatedAfter and messages afterMessage return everything committed while away', async () => {
    const t = await startTestServer(dialect);
    try {
      const base = await t.server.listen();
      const a = await createUser(t, 'a');
      const b = await createUser(t, 'b');
      await createUser(t, 'c');
      await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'r1', members: ['a', 'b'] } });
      await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'r2', members: ['a', 'b'] } });
      const c = await TestClient.connect(base, 'bundle');
      await c.login(b, t.clientKey);
      const last = (await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, a), body: { messageType: 'text', message: 'seen' } })).body.result;
      await c.next('chat message', (m) => m._id === last._id);
      const lastSync = t.clock.now();
      c.close();

      // while b is away: messages, a new room, a member added, a room untouched
      const missed: string[] = [];
      for (let i = 0; i < 25; i++) {
        t.clock.advance(1);
        missed.push((await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, a), body: { messageType: 'text', message: `away ${i}` } })).body.result._id);
      }
      t.clock.advance(1);
      await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'r3', members: ['a', 'b'] } });

      const rooms = await t.request({ method: 'GET', url: `/rooms?updatedAfter=${lastSync}`, headers: userHeaders(t.clientKey, b) });
      expect(rooms.body.result.data.map((r: any) => r._id).sort()).toEqual(['r1', 'r3']);
      expect(rooms.body.result.data.find((r: any) => r._id === 'r1').unread).toBe(26); // 'seen' was delivered, never marked read
      // page forward from the last message seen, 10 at a time (the anchor comes back first and is skipped)
      const got: string[] = [];
      let anchor = last._id;
      for (;;) {
        const page = await t.request({ method: 'GET', url: `/rooms/r1/messages/v3?afterMessage=${anchor}&sortOrder=asc&limit=10`, headers: userHeaders(t.clientKey, b) });
        const ids = page.body.result.data.map((m: any) => m._id).filter((id: string) => id !== anchor);
        if (ids.length === 0) break;
        got.push(...ids);
        anchor = ids[ids.length - 1];
      }
      expect(got).toEqual(missed);
    } finally {
      await t.close();
    }
  });
});

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
