import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config.js';
import { digest } from '../src/lib/secrets.js';
import { openStore } from '../src/store/database.js';
import { UsersRepo } from '../src/store/users-repo.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

/**
 * A socket's session lasts as long as its token (docs/realtime.md, Token lifetime): checked on every client event
 * and by a timer at the expiry time, with the texts the SDKs get at login.
 */
const EXPIRED = { RC: 401, RM: 'The provided user token has expired', error: 'INVALID_TOKEN' };
const REVOKED = { RC: 401, RM: 'The provided user token is invalid or has been revoked', error: 'INVALID_TOKEN' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(DIALECTS)('socket token lifetime (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  let admin: Record<string, string>;
  const clients: TestClient[] = [];
  let seq = 0;
  let bobToken: string;

  /** A user in room "r" with a custom token that expires `inMs` after the server's clock now. */
  const userWithToken = async (inMs: number) => {
    const id = `u${++seq}`;
    const token = `${id}-token-0123456789abcdef`;
    const res = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: id, nickname: id, token, expirationDate: new Date(t.clock.now() + inMs).toISOString() } });
    expect(res.status).toBe(200);
    await t.request({ method: 'POST', url: '/rooms/r/members', headers: admin, body: { members: [id] } });
    return { id, token };
  };
  const login = async (token: string) => {
    const c = await TestClient.connect(base, 'bundle');
    clients.push(c);
    expect((await c.login(token, t.clientKey)).RC).toBe(0);
    return c;
  };
  const send = async (c: TestClient, text: string) => (await c.emitAck('chat message', { room: 'r', messageType: 'text', message: text }))[0] as any;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    base = await t.server.listen();
    admin = { 'IM-API-KEY': t.apiKey };
    bobToken = await createUser(t, 'bob');
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'r', members: ['bob'], owner: 'bob' } });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => t?.close());

  it('an event after the token expired is refused with the login error, and the socket receives nothing more', async () => {
    const { token } = await userWithToken(60_000);
    const c = await login(token);
    expect((await send(c, 'before expiry')).RC).toBe(0);
    await c.next('chat message', (m) => m.message === 'before expiry');
    t.clock.advance(60_000);
    // REST refuses the token now; the socket must too.
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) })).body).toMatchObject(EXPIRED);
    expect(await send(c, 'after expiry')).toMatchObject(EXPIRED);
    expect(await send(c, 'again')).toMatchObject(EXPIRED);
    await t.request({ method: 'POST', url: '/rooms/r/message', headers: userHeaders(t.clientKey, bobToken), body: { messageType: 'text', message: 'not for an expired socket' } });
    await c.none('chat message');
    const stored = await t.request({ method: 'GET', url: '/rooms/r/messages/v3?limit=50', headers: userHeaders(t.clientKey, bobToken) });
    expect(stored.body.result.data.map((m: any) => m.message)).not.toContain('after expiry');
  });

  it('typing after expiry is refused as well, and a fresh login on the same socket works again', async () => {
    const { id, token } = await userWithToken(60_000);
    const c = await login(token);
    t.clock.advance(60_000);
    expect((await c.emitAck('typing', 'r', 'hi'))[0]).toMatchObject(EXPIRED);
    const fresh = await t.request({ method: 'PUT', url: `/admin/clients/${id}/token`, headers: admin, body: { token: `${id}-second-token-0123456789`, expirationDate: new Date(t.clock.now() + 3_600_000).toISOString() } });
    expect(fresh.status).toBe(200);
    const ack = c.decode((await c.emitAck('auth2', `${id}-second-token-0123456789`, { CLIENT_KEY: t.clientKey, Authorization: `${id}-second-token-0123456789` }))[0]);
    expect(ack.RC).toBe(0);
    expect((await send(c, 'after a new login')).RC).toBe(0);
  });

  it('a token revoked by another process: the next event is refused with the revocation text', async () => {
    const { id, token } = await userWithToken(3_600_000);
    const c = await login(token);
    expect((await send(c, 'live')).RC).toBe(0);
    // Another process (the CLI, another node) deletes the token: this server's bus never hears of it.
    const other = openStore(defaultConfig({ dataDir: t.config.dataDir, databaseUrl: t.config.databaseUrl, databaseSchema: t.config.databaseSchema }));
    try {
      expect(await new UsersRepo(other.db).deleteTokens(t.appId, id, { digest: digest(token) })).toBe(1);
    } finally {
      await other.close();
    }
    // Seen once the gateway's poll (every second) has synced the credential cache (retried for at most 3 s).
    let ack = await send(c, 'after revocation');
    for (const deadline = Date.now() + 3000; ack.RC === 0 && Date.now() < deadline; ) {
      await sleep(20);
      ack = await send(c, 'after revocation');
    }
    expect(ack).toMatchObject(REVOKED);
    expect(c.disconnected).toBe(false);
  });

  it('at the expiry time the timer ends the session and closes the transport, so the SDK reconnects and gets the login error', async () => {
    const { token } = await userWithToken(400);
    const c = await login(token);
    const reason = new Promise<string>((resolve) => c.socket.on('disconnect', (r: string) => resolve(r)));
    // The timer waits for the server's clock: advanced now, it ends the session at its next firing.
    t.clock.advance(400);
    expect(await c.waitDisconnect(3000)).toBe(true);
    // Not "io server disconnect", after which a Socket.IO client does not reconnect by itself.
    expect(await reason).toBe('transport close');
    const again = await TestClient.connect(base, 'bundle');
    clients.push(again);
    expect(await again.login(token, t.clientKey)).toMatchObject(EXPIRED);
  });

  it('the timer does not end a session before the clock reaches the expiry, also for an expiry beyond setTimeout\'s range', async () => {
    const soon = await userWithToken(300);
    const far = await userWithToken(40 * 24 * 3_600_000); // 40 days: more than 2^31-1 ms
    const a = await login(soon.token);
    const b = await login(far.token);
    // The clock stays put: the soon token's timer fires (in real time) and waits again; the far one's must not
    // fire at once (setTimeout runs a too-long delay after 1 ms).
    await sleep(700);
    expect(a.disconnected).toBe(false);
    expect(b.disconnected).toBe(false);
    expect((await send(a, 'still live')).RC).toBe(0);
    expect((await send(b, 'still live')).RC).toBe(0);
  });
});
