import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('key lifecycle (%s)', (dialect) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(dialect);
  });
  afterAll(async () => t?.close());

  const list = (apiKey: string) => t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': apiKey } });

  it('API key format: the Base64 of the Base64 of 32 random bytes', () => {
    const inner = Buffer.from(t.apiKey, 'base64').toString('utf8');
    expect(Buffer.from(t.apiKey, 'base64').toString('base64')).toBe(t.apiKey);
    expect(Buffer.from(inner, 'base64')).toHaveLength(32);
  });

  it('client key is an HS256 JWT naming the application, a key id and createAt, with no secret in it', () => {
    const [h, p, sig] = t.clientKey.split('.');
    expect(sig).toBeTruthy();
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    expect(header).toMatchObject({ alg: 'HS256', typ: 'JWT' });
    expect(claims).toEqual({ appID: 'default', kid: header.kid, createAt: expect.any(Number) });
    expect(t.clientKey).not.toContain(t.apiKey);
  });

  it('rotation: the old key works until its expiry, then INVALID_API_KEY', async () => {
    const app = await t.server.services.apps.resolve('default');
    const old = t.apiKey;
    const { apiKey: fresh, oldKeysExpireAt } = await t.server.services.apps.rotateApiKey(app, 3_600_000);
    expect(Date.parse(oldKeysExpireAt!)).toBe(t.clock.now() + 3_600_000);
    expect((await list(old)).status).toBe(200);
    expect((await list(fresh)).status).toBe(200);
    t.clock.advance(3_600_000 - 1);
    expect((await list(old)).status).toBe(200);
    t.clock.advance(1);
    const expired = await list(old);
    expect(expired.status).toBe(401);
    expect(expired.body.error).toBe('INVALID_API_KEY');
    expect((await list(fresh)).status).toBe(200);
    t.apiKey = fresh;
  });

  it('rotation with --expire-old-in 0 and revocation by last 4 take effect on the next request', async () => {
    const app = await t.server.services.apps.resolve('default');
    const { apiKey: second } = await t.server.services.apps.rotateApiKey(app, 0);
    expect((await list(t.apiKey)).status).toBe(401);
    expect((await list(second)).status).toBe(200);
    let { apiKey: third } = await t.server.services.apps.rotateApiKey(app, 86_400_000);
    // Last 4 characters carry little randomness (docs/security.md): one live key in 16 shares them with another, and
    // revoking by them is then refused as ambiguous (the next test). Here the key revoked must have its own.
    const taken = new Set([second.slice(-4)]);
    while (taken.has(third.slice(-4))) {
      taken.add(third.slice(-4));
      third = (await t.server.services.apps.createApiKey(app, {})).apiKey as string;
    }
    await t.server.services.apps.revokeApiKey(app, third.slice(-4));
    expect((await list(third)).body.error).toBe('INVALID_API_KEY');
    expect((await list(second)).status).toBe(200);
    t.apiKey = second;
  });

  it('live API keys are told apart by fingerprint (last 4 characters may repeat); revoke takes the fingerprint or the id, and refuses an ambiguous last 4', async () => {
    const app = await t.server.services.apps.resolve('default');
    const keys: string[] = [];
    for (let i = 0; i < 24; i++) keys.push((await t.server.services.apps.rotateApiKey(app, 86_400_000)).apiKey);
    const live = (await t.server.services.apps.describe(app)).apiKeys.filter((k) => k.status === 'live' || k.status === 'expiring');
    expect(live.length).toBeGreaterThan(16); // no cap any more
    expect(new Set(live.map((k) => k.fingerprint)).size).toBe(live.length);
    // 24 keys over 16 possible endings: some last 4 are shared, and revoking by them is refused as ambiguous.
    const shared = live.map((k) => k.last4).find((l, i, all) => all.indexOf(l) !== i)!;
    await expect(t.server.services.apps.revokeApiKey(app, shared)).rejects.toMatchObject({ code: 'KEY_AMBIGUOUS' });
    const last = live.find((k) => k.fingerprint === createHash('sha256').update(keys[keys.length - 1]!).digest('hex').slice(0, 10))!;
    await t.server.services.apps.revokeApiKey(app, last.fingerprint!);
    expect((await list(keys[keys.length - 1]!)).status).toBe(401);
    const byId = live.find((k) => k.fingerprint === createHash('sha256').update(keys[keys.length - 2]!).digest('hex').slice(0, 10))!;
    await t.server.services.apps.revokeApiKey(app, byId.id);
    expect((await list(keys[keys.length - 2]!)).status).toBe(401);
    t.apiKey = keys[keys.length - 3]!;
    expect((await list(t.apiKey)).status).toBe(200);
  });

  it('client key rotation replaces the old key at once', async () => {
    const token = await createUser(t, 'erin');
    const app = await t.server.services.apps.resolve('default');
    const { clientKey } = await t.server.services.apps.rotateClientKey(app);
    const old = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) });
    expect(old.status).toBe(403);
    expect(old.body.error).toBe('INVALID_CLIENT_KEY');
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(clientKey, token) })).status).toBe(200);
    t.clientKey = clientKey;
  });

  it('token revocation takes effect on the next request (one token, then all)', async () => {
    const issued = await createUser(t, 'frank');
    const bind = await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'frank', token: 'frank-custom-token-1' } });
    expect(bind.status).toBe(200);
    const me = (token: string) => t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) });
    expect((await me(issued)).status).toBe(200);
    expect((await me('frank-custom-token-1')).status).toBe(200);

    const one = await t.request({ method: 'DELETE', url: '/admin/clients/frank/token', headers: { 'IM-API-KEY': t.apiKey }, body: { token: 'frank-custom-token-1' } });
    expect(one.body).toEqual({ RC: 0, RM: 'OK', result: { success: true, message: 'Token revoked successfully', revokedTokens: 1 } });
    expect((await me('frank-custom-token-1')).status).toBe(401);
    expect((await me(issued)).status).toBe(200);

    const all = await t.request({ method: 'DELETE', url: '/admin/clients/frank/token', headers: { 'IM-API-KEY': t.apiKey } });
    expect(all.body.result).toEqual({ success: true, message: 'All tokens revoked successfully', revokedTokens: 1 });
    expect((await me(issued)).status).toBe(401);
  });

  it('re-issuing a token invalidates the previous issued token', async () => {
    const first = await createUser(t, 'gina');
    const second = await createUser(t, 'gina');
    expect(second).not.toBe(first);
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, first) })).status).toBe(401);
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, second) })).status).toBe(200);
  });
});

describe.each(DIALECTS)('application isolation (%s)', (dialect) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(dialect);
  });
  afterAll(async () => t?.close());

  it("an application's key never reads or writes another application's users", async () => {
    const other = await t.server.services.apps.create({ name: 'Other App' });
    expect(other.id).toBe('other-app');
    await createUser(t, 'shared-id', t.apiKey, { nickname: 'in default' });
    const otherToken = await createUser(t, 'shared-id', other.apiKey, { nickname: 'in other' });
    await createUser(t, 'only-other', other.apiKey);

    const mine = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey } });
    expect(mine.body.result.data.map((u: any) => [u._id, u.nickname, u.appID])).toEqual([['shared-id', 'in default', 'default']]);
    expect(mine.body.result.totalCount).toBe(1);

    const theirs = await t.request({ method: 'GET', url: '/me', headers: userHeaders(other.clientKey, otherToken) });
    expect(theirs.body.result).toMatchObject({ _id: 'shared-id', nickname: 'in other', appID: 'other-app' });

    // the default key cannot revoke or delete the other application's users
    const revoke = await t.request({ method: 'DELETE', url: '/admin/clients/only-other/token', headers: { 'IM-API-KEY': t.apiKey } });
    expect(revoke.status).toBe(404);
    expect(revoke.body.error).toBe('CLIENT_NOT_FOUND');
    const del = await t.request({ method: 'DELETE', url: '/admin/clients/only-other', headers: { 'IM-API-KEY': t.apiKey } });
    expect(del.status).toBe(404);
    const still = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': other.apiKey } });
    expect(still.body.result.totalCount).toBe(2);
  });
});

describe.each(DIALECTS)('secrets stay secret (%s)', (dialect) => {
  it('appear in no log line and in no response except the one that created them', async () => {
    // debug: one log line per request too (info logs no requests)
    const t = await startTestServer(dialect, { logLevel: 'debug' });
    try {
      const created = await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'hank', issueAccessToken: true } });
      const token = created.body.result.token as string;
      const custom = 'hank-custom-token-secret-1';
      const bound = await t.request({ method: 'PUT', url: '/admin/clients/hank/token', headers: { 'IM-API-KEY': t.apiKey }, body: { token: custom, expirationDate: '2030-01-01T00:00:00Z' } });
      expect(bound.body.result.token).toBe(custom);
      const secrets = [t.apiKey, t.clientKey, token, custom];

      const later = [
        await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey } }),
        await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, custom) }),
        await t.request({ method: 'POST', url: '/me', headers: userHeaders(t.clientKey, custom), body: { nickname: 'H' } }),
        await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'hank', nickname: 'Hank' } }),
        await t.request({ method: 'GET', url: '/me?token=' + encodeURIComponent(custom), headers: userHeaders(t.clientKey, 'wrong-' + custom) }),
        await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey + 'x' } }),
      ];
      const summary = JSON.stringify(await t.server.services.apps.list());
      for (const s of secrets) {
        for (const r of later) expect(r.raw).not.toContain(s);
        expect(summary).not.toContain(s);
      }
      expect(t.logs.length).toBeGreaterThan(5);
      const log = t.logs.join('');
      for (const s of secrets) expect(log).not.toContain(s);
      expect(log).toContain('[redacted]');
    } finally {
      await t.close();
    }
  });
});
