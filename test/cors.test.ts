import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../src/config.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

/**
 * One origin decision for HTTP and Socket.IO (src/auth/cors.ts): an application's domain is allowed, anything else
 * only through IMKIT_CORS_ORIGINS; credentials (cookies) are never allowed.
 */
describe.each(DIALECTS)('CORS (%s)', (dialect) => {
  let t: TestServer;
  let base: string;

  beforeAll(async () => {
    t = await startTestServer(dialect, { corsOrigins: ['https://console.example.org'] });
    await t.server.services.apps.create({ id: 'shop', name: 'Shop', domains: ['chat.shop.example', '*.shop-cdn.example'] });
    base = await t.server.listen();
  });
  afterAll(async () => t?.close());

  const preflight = (origin: string) =>
    t.request({ method: 'OPTIONS', url: '/me', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'im-client-key,im-authorization' } });

  it("allows an application's domains (wildcards cover sub-domains) and the configured origins, nothing else", async () => {
    for (const origin of ['https://chat.shop.example', 'http://a.b.shop-cdn.example:8080', 'https://console.example.org']) {
      const res = await preflight(origin);
      expect(res.status, origin).toBe(204);
      expect(res.headers['access-control-allow-origin'], origin).toBe(origin);
      expect(res.headers['access-control-allow-headers']).toBe('im-client-key,im-authorization');
      // The API's own methods, PUT and DELETE included (the Web SDK renames rooms, leaves them, deletes messages).
      expect(String(res.headers['access-control-allow-methods']).split(/,\s*/)).toEqual(expect.arrayContaining(['GET', 'POST', 'PUT', 'DELETE']));
      expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    }
    for (const origin of ['https://evil.example', 'https://shop-cdn.example', 'https://console.example.org.evil.example', 'http://console.example.org', 'null']) {
      const res = await preflight(origin);
      expect(res.headers['access-control-allow-origin'], origin).toBeUndefined();
    }
    const plain = await t.request({ method: 'GET', url: '/healthz', headers: { origin: 'https://evil.example' } });
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();
    const allowed = await t.request({ method: 'GET', url: '/healthz', headers: { origin: 'https://chat.shop.example' } });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://chat.shop.example');
    expect(allowed.headers['access-control-expose-headers']).toContain('X-RateLimit-Remaining');
  });

  it('a domain bound while the server runs is allowed at once', async () => {
    expect((await preflight('https://new.partner.example')).headers['access-control-allow-origin']).toBeUndefined();
    await t.server.services.apps.create({ id: 'partner', name: 'Partner', domains: ['new.partner.example'] });
    expect((await preflight('https://new.partner.example')).headers['access-control-allow-origin']).toBe('https://new.partner.example');
  });

  it('Socket.IO answers with the same decision, and never allows credentials', async () => {
    const handshake = (origin: string) => fetch(`${base}/socket.io/?EIO=4&transport=polling`, { headers: { origin } });
    const ok = await handshake('https://chat.shop.example');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://chat.shop.example');
    expect(ok.headers.get('access-control-allow-credentials')).toBeNull();
    const listed = await handshake('https://console.example.org');
    expect(listed.headers.get('access-control-allow-origin')).toBe('https://console.example.org');
    const evil = await handshake('https://evil.example');
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    expect(evil.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('a WebSocket handshake (to which browsers apply no CORS) from an Origin CORS refuses is refused; an allowed one connects', async () => {
    const open = (origin: string) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`${base.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`, { headers: { origin } });
        ws.on('message', () => (ws.close(), resolve('open')));
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => resolve(`${res.statusCode} ${body}`));
        });
        ws.on('error', () => resolve('error'));
      });
    expect(await open('https://chat.shop.example')).toBe('open');
    expect(await open('https://console.example.org')).toBe('open');
    const refused = await open('https://evil.example');
    expect(refused).toMatch(/^400 .*Origin may not open a connection/);
  });
});

describe('CORS by default', () => {
  let t: TestServer;
  let base: string;
  beforeAll(async () => {
    t = await startTestServer('sqlite');
    base = await t.server.listen();
  });
  afterAll(async () => t?.close());

  it('allows any origin (the Web SDK works on a fresh server), without credentials, on HTTP and Socket.IO', async () => {
    expect(t.config.corsOrigins).toBe('*');
    const res = await t.request({ method: 'OPTIONS', url: '/me', headers: { origin: 'https://anywhere.example', 'access-control-request-method': 'GET' } });
    expect(res.headers['access-control-allow-origin']).toBe('https://anywhere.example');
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    const sock = await fetch(`${base}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'https://anywhere.example' } });
    expect(sock.headers.get('access-control-allow-origin')).toBe('https://anywhere.example');
    expect(sock.headers.get('access-control-allow-credentials')).toBeNull();
  });
});

describe.each(DIALECTS)('domain binding from a browser (%s)', (dialect) => {
  let t: TestServer;
  let shop: { apiKey: string; clientKey: string };
  let token: string;
  let defaultToken: string;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    shop = await t.server.services.apps.create({ id: 'shop', name: 'Shop', domains: ['chat.shop.example', '*.shop-cdn.example'] });
    token = await createUser(t, 'carol', shop.apiKey);
    defaultToken = await createUser(t, 'dave');
  });
  afterAll(async () => t?.close());

  const me = (clientKey: string, tok: string, extra: Record<string, string>) => t.request({ method: 'GET', url: '/me', headers: { ...userHeaders(clientKey, tok), ...extra } });

  it('with an Origin, the Origin alone must be one of the domains: the right Host does not make up for a foreign page', async () => {
    const res = await me(shop.clientKey, token, { host: 'chat.shop.example', origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('CLIENT_KEY_MISMATCH');
    expect((await me(shop.clientKey, token, { host: 'chat.shop.example', origin: 'null' })).body.error).toBe('CLIENT_KEY_MISMATCH');
    // A listed Origin is enough whatever the Host; without an Origin the Host stands in.
    expect((await me(shop.clientKey, token, { host: 'api.internal', origin: 'https://x.shop-cdn.example' })).status).toBe(200);
    expect((await me(shop.clientKey, token, { host: 'chat.shop.example' })).status).toBe(200);
  });

  it('an application without domains still accepts any Origin that is not another application\'s', async () => {
    expect((await me(t.clientKey, defaultToken, { host: 'localhost', origin: 'https://anywhere.example' })).status).toBe(200);
    expect((await me(t.clientKey, defaultToken, { host: 'localhost', origin: 'https://chat.shop.example' })).body.error).toBe('CLIENT_KEY_MISMATCH');
  });
});

describe('IMKIT_CORS_ORIGINS', () => {
  it('takes *, none or a list of origins; anything else stops start-up naming the setting', () => {
    expect(loadConfig({}, {}).corsOrigins).toBe('*');
    expect(loadConfig({}, { IMKIT_CORS_ORIGINS: 'none' }).corsOrigins).toEqual([]);
    expect(loadConfig({}, { IMKIT_CORS_ORIGINS: 'https://App.Example.com, http://localhost:5173/' }).corsOrigins).toEqual(['https://app.example.com', 'http://localhost:5173']);
    for (const bad of ['app.example.com', 'https://app.example.com/path', 'ftp://x.example', 'https://*.example.com']) {
      expect(() => loadConfig({}, { IMKIT_CORS_ORIGINS: bad }), bad).toThrow(/IMKIT_CORS_ORIGINS/);
    }
  });
});
