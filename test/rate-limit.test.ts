import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryRateLimitStore } from '../src/auth/rate-limit.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('API key rate limit (%s)', (dialect) => {
  let t: TestServer;
  let other: string;

  beforeAll(async () => {
    t = await startTestServer(dialect);
    other = (await t.server.services.apps.create({ id: 'other', name: 'Other' })).apiKey;
  });
  afterAll(async () => t?.close());

  it('refuses the 1001st request within 60 seconds with 429 and retryAfter; another key is unaffected', async () => {
    const admin = { 'IM-API-KEY': t.apiKey };
    let last;
    for (let i = 1; i <= 1000; i++) {
      if (i === 500) t.clock.advance(30_000); // spread over the minute: the window is sliding, not fixed
      last = await t.request({ method: 'GET', url: '/healthz' }); // public, not counted
      last = await t.request({ method: 'GET', url: '/admin/clients?limit=1', headers: admin });
      expect(last.status).toBe(200);
    }
    expect(last!.headers['x-ratelimit-limit']).toBe('1000');
    expect(last!.headers['x-ratelimit-remaining']).toBe('0');
    const refused = await t.request({ method: 'GET', url: '/admin/clients', headers: admin });
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({
      RC: 429,
      RM: 'Too many requests, please try again later',
      error: 'RATE_LIMIT_EXCEEDED',
      message: 'Too many requests, please try again later',
      retryAfter: 30,
    });
    expect(refused.headers['retry-after']).toBe('30');
    expect(refused.headers['x-ratelimit-remaining']).toBe('0');

    const otherRes = await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': other } });
    expect(otherRes.status).toBe(200);
    expect(otherRes.headers['x-ratelimit-remaining']).toBe('999');

    // 30 s later the first 499 requests have left the window: exactly 499 slots are free again
    t.clock.advance(30_000);
    const again = await t.request({ method: 'GET', url: '/admin/clients', headers: admin });
    expect(again.status).toBe(200);
    expect(again.headers['x-ratelimit-remaining']).toBe('498');
  });
});

describe('per-application and per-token limits', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('sqlite', { userRateLimitPerMinute: 3 });
  });
  afterAll(async () => t?.close());

  it('an application may have its own API key limit', async () => {
    const app = await t.server.services.apps.create({ id: 'small', name: 'Small', rateLimitPerMinute: 2 });
    const h = { 'IM-API-KEY': app.apiKey };
    expect((await t.request({ method: 'GET', url: '/admin/clients', headers: h })).status).toBe(200);
    expect((await t.request({ method: 'GET', url: '/admin/clients', headers: h })).headers['x-ratelimit-limit']).toBe('2');
    expect((await t.request({ method: 'GET', url: '/admin/clients', headers: h })).status).toBe(429);
  });

  it('counts each user token separately', async () => {
    const a = await createUser(t, 'ua');
    const b = await createUser(t, 'ub');
    for (let i = 0; i < 3; i++) expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, a) })).status).toBe(200);
    const refused = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, a) });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('RATE_LIMIT_EXCEEDED');
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, b) })).status).toBe(200);
  });
});

describe('MemoryRateLimitStore', () => {
  it('is an exact sliding window: refused requests are not counted, peek counts nothing', async () => {
    const s = new MemoryRateLimitStore();
    try {
      expect((await s.peek('k', 2, 1000, 0)).remaining).toBe(2);
      expect((await s.hit('k', 2, 1000, 0)).allowed).toBe(true);
      expect((await s.hit('k', 2, 1000, 400)).allowed).toBe(true);
      const refused = await s.hit('k', 2, 1000, 999);
      expect(refused).toMatchObject({ allowed: false, remaining: 0, resetAt: 1000, retryAfter: 1 });
      expect((await s.hit('k', 2, 1000, 1000)).allowed).toBe(true); // the request at 0 left the window
      expect((await s.hit('k', 2, 1000, 1001)).allowed).toBe(false); // 400 and 1000 are still in it
      expect((await s.hit('k', 2, 1000, 1400)).allowed).toBe(true);
    } finally {
      await s.close();
    }
  });
});
