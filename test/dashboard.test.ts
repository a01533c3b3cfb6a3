import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS, startTestServer, type TestServer } from './helpers.js';

/** The server's web pages and the operators' accounts over HTTP (docs/dashboard.md); the browser tests are in dashboard-browser.test.ts. */
describe.each(DIALECTS)('web pages (%s)', (dialect) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(dialect);
  });
  afterAll(async () => t?.close());

  it('/ is a landing page with the version and links to the dashboard, the docs and the health check', async () => {
    const res = await t.request({ method: 'GET', url: '/' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    const { version } = (await import('../package.json', { with: { type: 'json' } })).default;
    expect(res.raw).toContain(`<span id="version">${version}</span>`);
    for (const href of ['/dashboard', '/docs', '/healthz']) expect(res.raw).toContain(`href="${href}"`);
    expect(res.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(res.headers['x-frame-options']).toBe('DENY');
  });

  it('the dashboard and the chat pages load their scripts from the server only, framing refused, no referrer', async () => {
    for (const url of ['/dashboard', '/dashboard/apps/x/keys', '/chat?token=abc']) {
      const res = await t.request({ method: 'GET', url });
      expect(res.status, url).toBe(200);
      expect(res.raw).not.toMatch(/<script>|https?:\/\//);
      expect(res.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
      expect(res.headers['referrer-policy']).toBe('no-referrer');
    }
    const js = await t.request({ method: 'GET', url: '/assets/dashboard.js' });
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    for (const bad of ['/assets/..%2Fmain.js', '/assets/..%2F..%2Fpackage.json', '/assets/nope.js']) {
      const res = await t.request({ method: 'GET', url: bad });
      expect(res.status, bad).toBe(404);
      expect(res.body.RC).toBe(404);
    }
  });
});
