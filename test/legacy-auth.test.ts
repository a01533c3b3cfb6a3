import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, loadConfig } from '../src/config.js';
import { TestClient } from './realtime-helpers.js';
import { createUser, DIALECTS, startTestServer, type TestServer } from './helpers.js';

/**
 * The legacy socket `auth` event (a token, no client key, no domain binding) is off unless IMKIT_LEGACY_SOCKET_AUTH
 * names the one application whose tokens it accepts; then it looks the token up in that application only.
 */
describe.each(DIALECTS)('legacy socket auth (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  const clients: TestClient[] = [];
  const legacy = async () => {
    const c = await TestClient.connect(base, 'legacy');
    clients.push(c);
    await c.emitAck('conf', { encoding: 'base64' });
    return c;
  };

  beforeAll(async () => {
    t = await startTestServer(dialect, { legacySocketAuth: 'default' });
    base = await t.server.listen();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  it("another application binding the same custom token does not break the named application's user", async () => {
    const custom = 'shared-custom-token-0001';
    const admin = { 'IM-API-KEY': t.apiKey };
    expect((await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'amy', token: custom } })).status).toBe(200);
    const other = await t.server.services.apps.create({ id: 'other', name: 'Other' });
    const bound = await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': other.apiKey }, body: { _id: 'mallory', token: custom } });
    expect(bound.status).toBe(200);
    const c = await legacy();
    const [ack] = await c.emitAck('auth', custom);
    expect(c.decode(ack)).toMatchObject({ RC: 0, result: { _id: 'amy', client: 'amy' } });
  });

  it("a token of another application is refused, even when it is unique", async () => {
    const other = await t.server.services.apps.create({ id: 'third', name: 'Third' });
    const token = await createUser(t, 'zed', other.apiKey);
    const c = await legacy();
    const [ack] = await c.emitAck('auth', token);
    expect(c.decode(ack)).toMatchObject({ RC: 401, error: 'INVALID_TOKEN' });
  });
});

describe('legacy socket auth setting', () => {
  it('is off by default: the event answers 401 and names auth2', async () => {
    expect(defaultConfig().legacySocketAuth).toBeUndefined();
    const t = await startTestServer('sqlite');
    const base = await t.server.listen();
    const c = await TestClient.connect(base, 'legacy');
    try {
      const token = await createUser(t, 'amy');
      await c.emitAck('conf', { encoding: 'base64' });
      const [ack] = await c.emitAck('auth', token);
      expect(c.decode(ack)).toMatchObject({ RC: 401, error: 'INVALID_TOKEN' });
      expect(c.decode(ack).RM).toContain('auth2');
    } finally {
      c.close();
      await t.close();
    }
  });

  it('takes an application id or off; the old "true" is refused with a message saying what it takes now', () => {
    expect(loadConfig({}, { IMKIT_LEGACY_SOCKET_AUTH: 'default' }).legacySocketAuth).toBe('default');
    expect(loadConfig({}, { IMKIT_LEGACY_SOCKET_AUTH: 'off' }).legacySocketAuth).toBeUndefined();
    expect(() => loadConfig({}, { IMKIT_LEGACY_SOCKET_AUTH: 'true' })).toThrow(/names the one application/);
    expect(() => loadConfig({}, { IMKIT_LEGACY_SOCKET_AUTH: 'not an id!' })).toThrow(/application id/);
  });
});

describe.each(DIALECTS)('custom token length (%s)', (dialect) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(dialect);
  });
  afterAll(async () => t?.close());

  it('a custom token shorter than 16 characters is refused with 400 naming the minimum, on both routes', async () => {
    const admin = { 'IM-API-KEY': t.apiKey };
    const post = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'kim', token: 'fifteen-chars-x' } });
    expect(post.status).toBe(400);
    expect(post.body).toMatchObject({ RC: 400, error: 'INVALID_REQUEST' });
    expect(post.body.message).toBe('Invalid field token: must NOT have fewer than 16 characters');
    expect((await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'kim', token: 'sixteen-chars-xx' } })).status).toBe(200);
    const put = await t.request({ method: 'PUT', url: '/admin/clients/kim/token', headers: admin, body: { token: 'a', expirationDate: '2031-01-01T00:00:00Z' } });
    expect(put.status).toBe(400);
    expect(put.body.message).toBe('Invalid field token: must NOT have fewer than 16 characters');
  });

  it('the service refuses one too, for callers that do not go through HTTP', async () => {
    const app = (await t.server.guard.credentials.app(t.appId))!;
    await expect(t.server.services.users.replaceToken(app, 'kim', 'short', '2031-01-01T00:00:00Z')).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: 'Invalid field token: must be at least 16 characters' });
  });
});
