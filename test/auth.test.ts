import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

describe.each(DIALECTS)('credentials and the error table (%s)', (dialect) => {
  let t: TestServer;
  let token: string;

  beforeAll(async () => {
    t = await startTestServer(dialect, { authFailuresPerMinute: 10_000 });
    token = await createUser(t, 'alice');
  });
  afterAll(async () => t?.close());

  const envelope = (status: number, error: string, message: string) => ({ RC: status, RM: message, error, message });

  it('admin route without any credential: 401 MISSING_API_KEY', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/clients' });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(envelope(401, 'MISSING_API_KEY', 'IM-API-KEY header is required'));
  });

  it('unknown API key: 401 INVALID_API_KEY', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': 'MjJZcFlIRGFRbElRbERTdlZMQ0xMbzJNUHpGZlZtOWpZcHh3MnZ1QnJtaz0=' } });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(envelope(401, 'INVALID_API_KEY', 'The provided API key is invalid or expired'));
  });

  it('user route without a client key: 401 MISSING_CLIENT_KEY', async () => {
    const res = await t.request({ method: 'GET', url: '/me', headers: { 'IM-Authorization': token } });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(envelope(401, 'MISSING_CLIENT_KEY', 'Client key is required for SDK initialization'));
  });

  it('unknown client key: 403 INVALID_CLIENT_KEY', async () => {
    const res = await t.request({ method: 'GET', url: '/me', headers: userHeaders('eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.x', token) });
    expect(res.status).toBe(403);
    expect(res.body).toEqual(envelope(403, 'INVALID_CLIENT_KEY', 'The provided client key is invalid or expired'));
  });

  it('a forged client key (right claims, wrong signature) is refused', async () => {
    const [h, p] = t.clientKey.split('.');
    const forged = `${h}.${p}.${'A'.repeat(43)}`;
    const res = await t.request({ method: 'GET', url: '/me', headers: userHeaders(forged, token) });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('INVALID_CLIENT_KEY');
  });

  it('missing, unknown and forged user tokens: 401 INVALID_TOKEN', async () => {
    for (const headers of [
      { 'IM-CLIENT-KEY': t.clientKey },
      userHeaders(t.clientKey, 'not-a-token'),
      userHeaders(t.clientKey, `${token.slice(0, -4)}AAAA`),
    ]) {
      const res = await t.request({ method: 'GET', url: '/me', headers });
      expect(res.status).toBe(401);
      expect(res.body.RC).toBe(401);
      expect(res.body.error).toBe('INVALID_TOKEN');
      expect(res.body.message).toBe(res.body.RM);
      expect(res.body.message.length).toBeGreaterThan(10);
    }
  });

  it('an expired token is refused on the next request', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/admin/clients',
      headers: { 'IM-API-KEY': t.apiKey },
      body: { _id: 'shortlived', token: 'shortlived-token-123', expirationDate: new Date(t.clock.now() + 60_000).toISOString() },
    });
    expect(res.status).toBe(200);
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, 'shortlived-token-123') })).status).toBe(200);
    t.clock.advance(60_001);
    const after = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, 'shortlived-token-123') });
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ error: 'INVALID_TOKEN', message: 'The provided user token has expired' });
  });

  it('client key + token on an admin route: 403 INSUFFICIENT_PERMISSIONS', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/clients', headers: userHeaders(t.clientKey, token) });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ RC: 403, error: 'INSUFFICIENT_PERMISSIONS' });
    expect(res.body.message).toBe(res.body.RM);
  });

  it('a client key + token is refused on every admin route of the route table', async () => {
    const adminRoutes = t.server.routes.filter((r) => r.auth === 'admin');
    expect(adminRoutes.length).toBeGreaterThanOrEqual(6);
    for (const r of adminRoutes) {
      const url = r.url.replace(/:[a-zA-Z]+/g, 'alice');
      const res = await t.request({ method: r.method, url, headers: userHeaders(t.clientKey, token), body: r.method === 'GET' ? undefined : { _id: 'x', data: [], token: 'x', expirationDate: '2030-01-01T00:00:00Z' } });
      expect({ route: `${r.method} ${r.url}`, status: res.status, error: res.body.error }).toEqual({ route: `${r.method} ${r.url}`, status: 403, error: 'INSUFFICIENT_PERMISSIONS' });
    }
    // nothing was changed by those attempts
    const me = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) });
    expect(me.status).toBe(200);
  });

  it('accepts every header spelling of spec 1.2', async () => {
    const variants: Array<Record<string, string>> = [
      { 'IM-CLIENT-KEY': t.clientKey, 'IM-Authorization': token },
      { 'IM-CLIENT-KEY': t.clientKey, Authorization: token },
      { 'IM-CLIENT-KEY': t.clientKey, 'IM-Authorization': `Bearer ${token}` },
      { CLIENT_KEY: t.clientKey, Authorization: `Bearer ${token}` },
      { 'IM-CLIENT-KEY': t.clientKey, 'IM-Authorization': token, 'IM-CLIENT-ID': 'alice' },
    ];
    for (const headers of variants) {
      const res = await t.request({ method: 'GET', url: '/me', headers });
      expect(res.status).toBe(200);
      expect(res.body.result._id).toBe('alice');
    }
    const legacyAdmin = await t.request({ method: 'GET', url: '/admin/clients', headers: { API_KEY: t.apiKey } });
    expect(legacyAdmin.status).toBe(200);
  });

  it('IM-CLIENT-ID must match the token owner', async () => {
    const res = await t.request({ method: 'GET', url: '/me', headers: { ...userHeaders(t.clientKey, token), 'IM-CLIENT-ID': 'bob' } });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('INSUFFICIENT_PERMISSIONS');
  });

  it('the API key may call user routes, acting as IM-CLIENT-ID', async () => {
    const res = await t.request({ method: 'GET', url: '/me', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'alice' } });
    expect(res.status).toBe(200);
    expect(res.body.result._id).toBe('alice');
    const missing = await t.request({ method: 'GET', url: '/me', headers: { 'IM-API-KEY': t.apiKey } });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe('INVALID_REQUEST');
    expect(missing.body.message).toContain('IM-CLIENT-ID');
  });

  it('unknown route: 404 in the same envelope', async () => {
    const res = await t.request({ method: 'GET', url: '/no/such/route', headers: { 'IM-API-KEY': t.apiKey } });
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ RC: 404, error: 'NOT_FOUND' });
    expect(res.body.message).toBe(res.body.RM);
  });

  it('trailing slashes are ignored (spec 6.19)', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/clients/', headers: { 'IM-API-KEY': t.apiKey } });
    expect(res.status).toBe(200);
  });
});

describe.each(DIALECTS)('domain binding (%s)', (dialect) => {
  let t: TestServer;
  let bound: { apiKey: string; clientKey: string };
  let boundToken: string;
  let defaultToken: string;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    const app = await t.server.services.apps.create({ id: 'shop', name: 'Shop', domains: ['chat.shop.example', '*.shop-cdn.example'] });
    bound = app;
    boundToken = await createUser(t, 'carol', bound.apiKey);
    defaultToken = await createUser(t, 'dave');
  });
  afterAll(async () => t?.close());

  const me = (clientKey: string, token: string, extra: Record<string, string>) =>
    t.request({ method: 'GET', url: '/me', headers: { ...userHeaders(clientKey, token), ...extra } });

  it('accepts the listed Host, the listed Origin and wildcard sub-domains', async () => {
    expect((await me(bound.clientKey, boundToken, { host: 'chat.shop.example' })).status).toBe(200);
    expect((await me(bound.clientKey, boundToken, { host: 'chat.shop.example:8443' })).status).toBe(200);
    expect((await me(bound.clientKey, boundToken, { host: '127.0.0.1', origin: 'https://chat.shop.example' })).status).toBe(200);
    expect((await me(bound.clientKey, boundToken, { host: 'a.shop-cdn.example' })).status).toBe(200);
  });

  it('refuses a host that is not among its domains: 403 CLIENT_KEY_MISMATCH', async () => {
    const res = await me(bound.clientKey, boundToken, { host: 'evil.example' });
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ RC: 403, RM: 'Client key does not match the specified domain', error: 'CLIENT_KEY_MISMATCH', message: 'Client key does not match the specified domain' });
    expect((await me(bound.clientKey, boundToken, { host: 'shop-cdn.example' })).status).toBe(403);
  });

  it("refuses another application's domain even for an application without domains", async () => {
    expect((await me(t.clientKey, defaultToken, { host: 'localhost' })).status).toBe(200);
    const res = await me(t.clientKey, defaultToken, { host: 'chat.shop.example' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('CLIENT_KEY_MISMATCH');
    const viaOrigin = await me(t.clientKey, defaultToken, { host: 'localhost', origin: 'https://x.shop-cdn.example' });
    expect(viaOrigin.body.error).toBe('CLIENT_KEY_MISMATCH');
  });

  it("a client key never reaches another application's users", async () => {
    // carol's token belongs to "shop"; presented with the default application's client key it is unknown
    const res = await me(t.clientKey, boundToken, { host: 'localhost' });
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('INVALID_TOKEN');
  });
});

describe('failed credential attempts', () => {
  it('after too many failures from an address, further failures get 429 (and age out after a minute); valid credentials from it still pass', async () => {
    const t = await startTestServer('sqlite', { authFailuresPerMinute: 5 });
    try {
      const token = await createUser(t, 'olga');
      for (let i = 0; i < 5; i++) {
        const res = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': `wrong-key-${i}-xxxxxxxx` } });
        expect(res.status).toBe(401);
      }
      const locked = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': 'wrong-key-5-xxxxxxxx' } });
      expect(locked.status).toBe(429);
      expect(locked.body).toMatchObject({ error: 'RATE_LIMIT_EXCEEDED', message: 'Too many requests, please try again later' });
      expect(locked.body.retryAfter).toBeGreaterThan(0);
      expect(locked.headers['retry-after']).toBe(String(locked.body.retryAfter));
      const badToken = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, 'not-a-token') });
      expect(badToken.status).toBe(429);

      // The same address, right then: the valid API key and the valid user token are served.
      expect((await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey } })).status).toBe(200);
      expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) })).status).toBe(200);

      t.clock.advance(60_001);
      const back = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': 'wrong-key-6-xxxxxxxx' } });
      expect(back.status).toBe(401);
    } finally {
      await t.close();
    }
  });

  it('socket logins from a locked-out address: a valid token logs in over auth2, a bad one gets 429', async () => {
    const t = await startTestServer('sqlite', { authFailuresPerMinute: 3 });
    const base = await t.server.listen();
    const c = await TestClient.connect(base, 'bundle');
    try {
      const token = await createUser(t, 'sam');
      // Fastify inject and the socket both come from 127.0.0.1.
      for (let i = 0; i < 3; i++) expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, `bad-${i}`) })).status).toBe(401);
      expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, 'bad-3') })).status).toBe(429);
      await c.emitAck('conf', { encoding: 'base64' });
      const [bad] = await c.emitAck('auth2', 'bad-4', { CLIENT_KEY: t.clientKey, Authorization: 'bad-4' });
      expect(c.decode(bad)).toMatchObject({ RC: 429, error: 'RATE_LIMIT_EXCEEDED' });
      const [good] = await c.emitAck('auth2', token, { CLIENT_KEY: t.clientKey, Authorization: token });
      expect(c.decode(good)).toMatchObject({ RC: 0, result: { client: 'sam' } });
    } finally {
      c.close();
      await t.close();
    }
  });

  it('a valid token passes the legacy socket login path while its address is locked out; a bad one gets 429', async () => {
    const t = await startTestServer('sqlite', { authFailuresPerMinute: 3, legacySocketAuth: 'default' });
    try {
      const token = await createUser(t, 'lena');
      const guard = t.server.guard;
      for (let i = 0; i < 3; i++) await expect(guard.authenticateTokenOnly(`bad-${i}`, '198.51.100.1')).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
      await expect(guard.authenticateTokenOnly('bad-3', '198.51.100.1')).rejects.toMatchObject({ code: 'RATE_LIMIT_EXCEEDED' });
      const ok = await guard.authenticateTokenOnly(token, '198.51.100.1');
      expect(ok.actor).toMatchObject({ kind: 'user', userId: 'lena' });
    } finally {
      await t.close();
    }
  });

  it('the same bad credential from many addresses is locked out by itself, without locking those addresses', async () => {
    const t = await startTestServer('sqlite', { authFailuresPerMinute: 3, trustProxy: ['loopback'] });
    try {
      const from = (ip: string, key: string) => t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': key, 'X-Forwarded-For': ip } });
      for (let i = 0; i < 3; i++) expect((await from(`203.0.113.${i + 1}`, 'one-stolen-old-key-xxxx')).status).toBe(401);
      expect((await from('203.0.113.50', 'one-stolen-old-key-xxxx')).status).toBe(429);
      // Those addresses failed once each: another wrong key from one of them is a plain failure.
      expect((await from('203.0.113.1', 'another-wrong-key-xxxx')).status).toBe(401);
    } finally {
      await t.close();
    }
  });

  it('behind a trusted proxy the address counted is the rightmost untrusted hop: forged X-Forwarded-For entries neither escape the lockout nor lock out a chosen address', async () => {
    // Fastify inject connects from 127.0.0.1: that is the trusted proxy, appending the address it saw last.
    const t = await startTestServer('sqlite', { authFailuresPerMinute: 5, trustProxy: ['loopback'] });
    try {
      const attacker = '203.0.113.66';
      const victim = '198.51.100.23';
      const req = (xff: string, key: string) => t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': key, 'X-Forwarded-For': xff } });
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await req(`10.9.${i}.1, ${victim}, ${attacker}`, `attempt-${i}-wrong-key-xxxx`)).status);
      // Rotating the entries to the left of the proxy's own did not give each attempt a fresh address.
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
      // The victim, whose address the attacker wrote in every request, is not locked out.
      expect((await req(victim, 'victim-wrong-key-xxxxxxx')).status).toBe(401);
      expect((await req(victim, t.apiKey)).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
