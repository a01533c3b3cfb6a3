import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintOf } from '../src/auth/keys.js';
import { digest } from '../src/lib/secrets.js';
import type { ImkitServer } from '../src/server.js';
import { consoleErrors, launchBrowser, shot, startBrowserServer } from './browser-helpers.js';

/**
 * The dashboard in a real Chromium against a real server: first-run setup, login, an application and its keys, the
 * key used over HTTP, rotated and revoked, the usage page and the audit log (docs/dashboard.md).
 */
const PASSWORD = 'a long operator password';

describe('dashboard in the browser', () => {
  let browser: Browser;
  let srv: { server: ImkitServer; base: string; close(): Promise<void> };
  let context: BrowserContext;
  let page: Page;
  let errors: ReturnType<typeof consoleErrors>;

  beforeAll(async () => {
    browser = await launchBrowser();
    srv = await startBrowserServer();
    context = await browser.newContext({ baseURL: srv.base });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.base });
    page = await context.newPage();
    page.on('dialog', (d) => void d.accept());
    errors = consoleErrors(page);
  });
  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  const call = (key: string, path = '/admin/stats') => fetch(`${srv.base}${path}`, { headers: { 'IM-API-KEY': key } }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

  it('the landing page links to the dashboard', async () => {
    await page.goto('/');
    await expect.poll(() => page.locator('h1').textContent()).toBe('imkit-server');
    await shot(page, 'landing');
    await page.click('text=Dashboard');
    await page.waitForURL('**/dashboard');
    await page.waitForSelector('input[name=email]');
  });

  it('the setup link creates the first operator, and works once', async () => {
    const token = srv.server.bootstrap.operatorSetupToken!;
    await page.goto(`/dashboard/setup#token=${token}`);
    await page.fill('input[name=email]', 'ops@example.com');
    await page.fill('input[name=password]', PASSWORD);
    await page.fill('input[name=again]', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForSelector('h1:text("Applications")');
    expect(await page.textContent('[data-testid=operator]')).toBe('ops@example.com');
    // The token left the address bar.
    expect(page.url()).not.toContain(token);
    await shot(page, 'applications');

    const other = await browser.newContext({ baseURL: srv.base });
    try {
      const p = await other.newPage();
      const otherErrors = consoleErrors(p);
      otherErrors.allow(/status of 401/);
      await p.goto(`/dashboard/setup#token=${token}`);
      await p.fill('input[name=email]', 'intruder@example.com');
      await p.fill('input[name=password]', PASSWORD);
      await p.fill('input[name=again]', PASSWORD);
      await p.click('button[type=submit]');
      await expect.poll(() => p.locator('[role=alert]').textContent()).toMatch(/invalid, expired or used/);
      expect(otherErrors.errors).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('log out; a wrong password is refused; the right one logs in', async () => {
    await page.click('button:text("Log out")');
    await page.waitForSelector('input[name=email]');
    errors.allow(/status of 401/);
    await page.fill('input[name=email]', 'ops@example.com');
    await page.fill('input[name=password]', 'not the password at all');
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('[role=alert]').textContent()).toMatch(/Wrong email or password/);
    await shot(page, 'login-refused');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForSelector('h1:text("Applications")');
  });

  it('a call without the CSRF token is refused, with the session cookie', async () => {
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'imkit_session')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    const res = await fetch(`${srv.base}/dashboard/api/apps`, { method: 'POST', headers: { cookie: `imkit_session=${session.value}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'csrf' }) });
    expect(res.status).toBe(403);
    expect(((await res.json()) as any).error).toBe('CSRF_TOKEN_INVALID');
    // The page's script cannot read the cookie.
    expect(await page.evaluate('document.cookie')).not.toContain('imkit_session');
  });

  let appKey = '';
  let ciKey = '';
  it('creates an application and an API key, shown once; the key works against the API', async () => {
    await page.fill('input[name=name]', 'Shop');
    await page.fill('input[name=id]', 'shop');
    await page.click('button:text("Create application")');
    appKey = (await page.textContent('[data-testid=new-app-api-key]'))!.trim();
    expect(appKey.length).toBeGreaterThan(40);
    expect((await call(appKey)).status).toBe(200);
    await page.click('a:text("shop")');
    await page.waitForSelector('h1:text("API Settings")');
    // The client key is shown (it is no secret) and works.
    const clientKey = (await page.textContent('[data-testid=client-key]'))!.trim();
    expect(clientKey.split('.')).toHaveLength(3);

    await page.fill('input[name=keyName]', 'ci');
    await page.click('button:text("Create API key")');
    ciKey = (await page.textContent('[data-testid=new-api-key]'))!.trim();
    await page.click('[data-testid=new-api-key-panel] button:text("Copy")');
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(ciKey);
    await shot(page, 'api-key-created');
    expect((await call(ciKey)).status).toBe(200);
    // Never shown again: not after dismissing, not after a reload.
    await page.click('button:text("I have stored it")');
    expect(await page.content()).not.toContain(ciKey);
    await page.reload();
    await page.waitForSelector('[data-testid=api-keys] tbody tr');
    expect(await page.content()).not.toContain(ciKey);
    expect(await page.locator('[data-testid=api-keys] tbody tr').count()).toBe(2);
  });

  it('the usage page shows the requests the key made', async () => {
    for (let i = 0; i < 4; i++) expect((await call(ciKey)).status).toBe(200);
    await srv.server.usage.flush();
    // Keys are named by fingerprint: two keys' last 4 characters are the same one time in sixteen (CI met it).
    // (Computed here, as a key's holder can: a call to list the keys would be one more request to count.)
    const fingerprint = fingerprintOf(digest(ciKey));
    await page.click('a:text("Usage")');
    await page.waitForSelector('h1:text("Usage")');
    // 1 call when it was made, 4 now.
    await expect.poll(() => page.locator(`[data-testid="key-hour-${fingerprint}"]`).textContent()).toBe('5');
    // Drawn by uPlot: a canvas per chart, and its legend naming the key.
    await expect.poll(() => page.locator('[data-testid=chart] canvas').count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator('[data-testid=chart] .u-legend').first().textContent()).toContain(fingerprint);
    await shot(page, 'usage');
  });

  it('rotating a key with expiry 0 revokes it and shows the new one; revoking that one refuses it with the seed error', async () => {
    await page.click('a:text("API Settings")');
    await page.waitForSelector('[data-testid=api-keys] tbody tr');
    const fingerprint = (await call(ciKey, '/admin/api-keys')).body.result.data.find((k: any) => k.name === 'ci').fingerprint as string;
    await page.selectOption('select[aria-label="Old key keeps working for"]', '0');
    await page.click(`tr[data-fingerprint="${fingerprint}"] button:text("Rotate")`);
    const rotated = (await page.textContent('[data-testid=new-api-key]'))!.trim();
    expect(rotated).not.toBe(ciKey);
    const old = await call(ciKey);
    expect([old.status, old.body.error]).toEqual([401, 'INVALID_API_KEY']);
    expect((await call(rotated)).status).toBe(200);

    const newFingerprint = (await call(rotated, '/admin/api-keys')).body.result.data.find((k: any) => k.status === 'live' && k.name === 'ci').fingerprint as string;
    await page.click(`tr[data-fingerprint="${newFingerprint}"] button:text("Revoke")`);
    await expect.poll(() => page.locator(`tr[data-fingerprint="${newFingerprint}"] td.status-revoked`).count()).toBe(1);
    const revoked = await call(rotated);
    expect([revoked.status, revoked.body.error, revoked.body.message]).toEqual([401, 'INVALID_API_KEY', 'The provided API key is invalid or expired']);
    await shot(page, 'api-keys-rotated-revoked');
  });

  it('the audit log shows what the operator did', async () => {
    await srv.server.audit.flush();
    await page.click('a:text("Audit log")');
    await page.waitForSelector('[data-testid=audit] tbody tr');
    await expect.poll(async () => (await page.locator('[data-testid=audit] tbody').textContent()) ?? '').toContain('operator ops@example.com');
    const text = (await page.locator('[data-testid=audit] tbody').textContent())!;
    for (const action of ['app.create', 'api-keys.create', 'api-keys.rotate.create', 'api-keys.delete']) expect(text).toContain(action);
    await page.fill('input[name=action]', 'api-keys.delete');
    await page.click('button:text("Filter")');
    await expect.poll(() => page.locator('[data-testid=audit] tbody tr').count()).toBe(1);
    await shot(page, 'audit');
  });

  it('the other pages load without errors', async () => {
    for (const link of ['Users and rooms', 'Webhooks', 'Settings']) {
      const heading = link;
      await page.click(`nav a:text-is("${link}")`);
      await page.waitForSelector(`h1:text("${heading}")`);
      await page.waitForLoadState('networkidle');
      expect(await page.locator('[role=alert]').count(), link).toBe(0);
      await shot(page, link.toLowerCase().replace(/\W+/g, '-'));
    }
    expect(errors.errors).toEqual([]);
  });

  it('key alerts show as banners, the application\'s and the server\'s, until acknowledged', async () => {
    // The application's key, used so far from 127.0.0.1, from a new address; and an address sending invalid keys.
    const via = (key: string, remoteAddress: string) => srv.server.http.inject({ method: 'GET', url: '/admin/stats', remoteAddress, headers: { 'IM-API-KEY': key } });
    expect((await via(appKey, '198.51.100.7')).statusCode).toBe(200);
    for (let i = 0; i < 20; i++) expect((await via(`not-a-key-${i}`, '203.0.113.50')).statusCode).toBe(401);
    await srv.server.alerts.flush();

    // The banner is read whenever a page of the application opens.
    await page.click('nav a:text("Usage")');
    await page.waitForSelector('h1:text("Usage")');
    await page.click('nav a:text("API Settings")');
    await page.waitForSelector('[data-testid=alerts] [data-testid=alert]');
    expect(await page.locator('[data-testid=alerts]').textContent()).toContain('was used from 198.51.100.7, an address it had never been used from');
    await shot(page, 'key-alert-banner');
    await page.click('[data-testid=alerts] button:text("Acknowledge")');
    await expect.poll(() => page.locator('[data-testid=alerts]').count()).toBe(0);
    const open = await fetch(`${srv.base}/admin/alerts?open=true`, { headers: { 'IM-API-KEY': appKey } }).then((r) => r.json() as Promise<any>);
    expect(open.result.totalCount).toBe(0);

    await page.click('a:text("Applications")');
    await page.waitForSelector('[data-testid=alerts] [data-testid=alert]');
    expect(await page.locator('[data-testid=alerts]').textContent()).toContain('203.0.113.50 sent 20 invalid API keys within 10 minutes');
    await page.click('[data-testid=alerts] button:text("Acknowledge")');
    await expect.poll(() => page.locator('[data-testid=alerts]').count()).toBe(0);
    expect((await srv.server.alerts.list('*', { open: true })).totalCount).toBe(0);
    expect(errors.errors).toEqual([]);
  });

  it('users and rooms: search a user, revoke their tokens; open a room, see its messages, freeze it, ban a member', async () => {
    const as = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${srv.base}${path}`, { method, headers: { 'IM-API-KEY': appKey, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: r.status, body: (await r.json()) as any };
    };
    const clientKey = (await page.evaluate(async () => ((await (await fetch('/dashboard/api/apps/shop/client-key')).json()) as any).result.clientKey.clientKey)) as string;
    const tokens: Record<string, string> = {};
    for (const id of ['ann', 'ben']) tokens[id] = (await as('POST', '/admin/clients', { _id: id, nickname: `N ${id}`, issueAccessToken: true })).body.result.token;
    expect((await as('POST', '/rooms', { _id: 'lobby', name: 'Lobby', roomType: 'group', members: ['ann', 'ben'], owner: 'ann' })).status).toBe(200);
    expect((await as('POST', '/messages', { room: 'lobby', sender: 'ann', messageType: 'text', message: 'hello from ann' })).status).toBe(200);
    const me = (id: string) => fetch(`${srv.base}/me`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': tokens[id]! } }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    const before = await me('ben');
    expect(before.status, JSON.stringify(before.body)).toBe(200);

    page.setDefaultTimeout(8000);
    await page.click('a:text-is("shop")');
    await page.click('nav a:text-is("Users and rooms")');
    await page.waitForSelector('h1:text("Users and rooms")');
    await page.fill('input[aria-label="Search users"]', 'ben');
    await page.click('form:has(input[aria-label="Search users"]) button:text("Search")');
    await expect.poll(() => page.locator('section:has(h2:text("Users")) tbody tr').count()).toBe(1);
    await page.click('section:has(h2:text("Users")) tbody tr button:text("Revoke tokens")');
    await page.waitForSelector('p.notice:text("The tokens of ben are revoked.")');
    const revoked = await me('ben');
    expect([revoked.status, revoked.body.error]).toEqual([401, 'INVALID_TOKEN']);
    expect((await me('ann')).status).toBe(200);

    await page.fill('input[aria-label="Search rooms"]', 'lobby');
    await page.click('button:text("Open by id")');
    await page.waitForSelector('[data-testid=room] td:text("hello from ann")');
    await page.click('[data-testid=room] button:text("Freeze")');
    await page.waitForSelector('[data-testid=room] b:text("frozen")');
    expect((await as('GET', '/rooms/lobby')).body.result.status).toBe(0);
    await page.fill('input[aria-label="User to ban"]', 'ann');
    await page.click('[data-testid=room] button:text("Ban from room")');
    await expect.poll(async () => (await as('GET', '/blockStatus/room/lobby')).body.result?.data?.map((b: any) => b.blockee?._id ?? b.blockee ?? b.client) ?? []).toContain('ann');
    await shot(page, 'users-and-rooms');
    expect(errors.errors).toEqual([]);
  });
});
