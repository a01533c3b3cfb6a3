import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config.js';
import { LOGIN_LIMITS } from '../src/operators/operators-service.js';
import { createServer } from '../src/server.js';
import { DIALECTS, isolatedStore, type Res, startTestServer, type TestServer } from './helpers.js';

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

const PASSWORD = 'correct horse battery';

/** The session cookie's `name=value` from a Set-Cookie answer. */
function cookieOf(res: Res): string {
  const set = res.headers['set-cookie'];
  const line = (Array.isArray(set) ? set[0] : String(set ?? '')) as string;
  return line.split(';')[0]!;
}

async function inject(t: TestServer, opts: { method: string; url: string; headers?: Record<string, string>; body?: unknown; ip?: string }): Promise<Res> {
  const res = await t.server.http.inject({
    method: opts.method as 'GET',
    url: opts.url,
    remoteAddress: opts.ip ?? '127.0.0.1',
    headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    payload: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let body: any;
  try {
    body = JSON.parse(res.body);
  } catch {
    body = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body, raw: res.body };
}

async function login(t: TestServer, email: string, password = PASSWORD, ip?: string): Promise<{ cookie: string; csrf: string; res: Res }> {
  const res = await inject(t, { method: 'POST', url: '/dashboard/api/login', body: { email, password }, ip });
  return { cookie: res.status === 200 ? cookieOf(res) : '', csrf: res.body?.result?.csrfToken, res };
}

describe.each(DIALECTS)('dashboard operators (%s)', (dialect) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(dialect);
  });
  afterAll(async () => t?.close());

  it('the setup link creates the first operator once; its password is stored as an argon2id hash; the session cookie is httpOnly and SameSite=Strict', async () => {
    const token = t.server.bootstrap.operatorSetupToken!;
    expect(token).toMatch(/^[0-9a-f]{48}$/);
    expect((await t.request({ method: 'GET', url: '/dashboard/api/status' })).body.result.setupNeeded).toBe(true);
    const wrong = await inject(t, { method: 'POST', url: '/dashboard/api/setup', body: { token: 'f'.repeat(48), email: 'first@example.com', password: PASSWORD } });
    expect([wrong.status, wrong.body.error]).toEqual([401, 'INVALID_SETUP_TOKEN']);
    // Another start (another node of a cluster) prints a link of its own: the first one still works.
    const other = (await t.server.services.operators.setupTokenIfNeeded())!;
    expect(other).toMatch(/^[0-9a-f]{48}$/);
    expect(other).not.toBe(token);
    const res = await inject(t, { method: 'POST', url: '/dashboard/api/setup', body: { token, email: 'First@Example.com', password: PASSWORD } });
    expect(res.status).toBe(200);
    // Using one ends them all.
    const viaOther = await inject(t, { method: 'POST', url: '/dashboard/api/setup', body: { token: other, email: 'other@example.com', password: PASSWORD } });
    expect([viaOther.status, viaOther.body.error]).toEqual([401, 'INVALID_SETUP_TOKEN']);
    expect(res.body.result.operator.email).toBe('first@example.com');
    const set = String(res.headers['set-cookie']);
    expect(set).toMatch(/^imkit_session=[0-9a-f]{64}; Max-Age=43200;/);
    expect(set).toMatch(/HttpOnly/);
    expect(set).toMatch(/SameSite=Strict/);
    expect(set).not.toMatch(/Secure/);
    const again = await inject(t, { method: 'POST', url: '/dashboard/api/setup', body: { token, email: 'second@example.com', password: PASSWORD } });
    expect([again.status, again.body.error]).toEqual([401, 'INVALID_SETUP_TOKEN']);
    const rows = await t.server.store.db.selectFrom('operators').select(['email', 'password_hash']).execute();
    expect(rows.map((r) => r.email)).toEqual(['first@example.com']);
    expect(rows[0]!.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(rows[0]!.password_hash).not.toContain(PASSWORD);
    // The session's secret is stored as a digest only.
    const sessions = await t.server.store.db.selectFrom('operator_sessions').select('digest').execute();
    expect(sessions.map((s) => s.digest)).not.toContain(cookieOf(res).split('=')[1]);
    expect((await t.request({ method: 'GET', url: '/dashboard/api/status' })).body.result.setupNeeded).toBe(false);
  });

  it('a wrong password is refused; a right one opens a session that acts on an application through the admin routes, with its CSRF token on changes', async () => {
    const bad = await login(t, 'first@example.com', 'not the password!');
    expect([bad.res.status, bad.res.body.error]).toEqual([401, 'INVALID_LOGIN']);
    const unknown = await login(t, 'nobody@example.com');
    expect([unknown.res.status, unknown.res.body.error, unknown.res.body.message]).toEqual([401, 'INVALID_LOGIN', bad.res.body.message]);
    const { cookie, csrf } = await login(t, 'first@example.com');
    expect(csrf).toMatch(/^[0-9a-f]{64}$/);
    const session = await inject(t, { method: 'GET', url: '/dashboard/api/session', headers: { cookie } });
    expect(session.body.result).toMatchObject({ operator: { email: 'first@example.com' }, csrfToken: csrf });

    // Applications: listed; created only with the CSRF token.
    const list = await inject(t, { method: 'GET', url: '/dashboard/api/apps', headers: { cookie } });
    expect(list.body.result.data.map((a: any) => a.id)).toEqual([t.appId]);
    const noCsrf = await inject(t, { method: 'POST', url: '/dashboard/api/apps', headers: { cookie }, body: { name: 'Shop' } });
    expect([noCsrf.status, noCsrf.body.RC, noCsrf.body.error]).toEqual([403, 403, 'CSRF_TOKEN_INVALID']);
    const wrongCsrf = await inject(t, { method: 'POST', url: '/dashboard/api/apps', headers: { cookie, 'x-csrf-token': 'a'.repeat(64) }, body: { name: 'Shop' } });
    expect(wrongCsrf.status).toBe(403);
    const foreign = await inject(t, { method: 'POST', url: '/dashboard/api/apps', headers: { cookie, 'x-csrf-token': csrf, origin: 'https://evil.example' }, body: { name: 'Shop' } });
    expect([foreign.status, foreign.body.error]).toEqual([403, 'CSRF_TOKEN_INVALID']);
    const created = await inject(t, { method: 'POST', url: '/dashboard/api/apps', headers: { cookie, 'x-csrf-token': csrf }, body: { name: 'Shop', id: 'shop' } });
    expect(created.status).toBe(200);
    expect(created.body.result).toMatchObject({ id: 'shop', apiKey: expect.any(String), clientKey: expect.any(String) });

    // The admin routes, for the application X-IMKIT-APP names.
    const app = { cookie, 'x-imkit-app': 'shop' };
    const keys = await inject(t, { method: 'GET', url: '/admin/api-keys', headers: app });
    expect(keys.status).toBe(200);
    expect(keys.body.result.data).toHaveLength(1);
    const postNoCsrf = await inject(t, { method: 'POST', url: '/admin/api-keys', headers: app, body: { name: 'ci' } });
    expect([postNoCsrf.status, postNoCsrf.body.error]).toEqual([403, 'CSRF_TOKEN_INVALID']);
    const made = await inject(t, { method: 'POST', url: '/admin/api-keys', headers: { ...app, 'x-csrf-token': csrf }, body: { name: 'ci' } });
    expect(made.status).toBe(200);
    const works = await t.request({ method: 'GET', url: '/admin/stats', headers: { 'IM-API-KEY': made.body.result.apiKey } });
    expect(works.status).toBe(200);
    const noApp = await inject(t, { method: 'GET', url: '/admin/api-keys', headers: { cookie } });
    expect([noApp.status, noApp.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const noSuchApp = await inject(t, { method: 'GET', url: '/admin/api-keys', headers: { cookie, 'x-imkit-app': 'nope' } });
    expect([noSuchApp.status, noSuchApp.body.error]).toEqual([404, 'APP_NOT_FOUND']);
    // Never as a user.
    const asUser = await inject(t, { method: 'GET', url: '/me', headers: app });
    expect([asUser.status, asUser.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);

    // What the operator did is in the application's audit log, by operator.
    const audit = await inject(t, { method: 'GET', url: '/admin/audit', headers: app });
    const actions = audit.body.result.data.map((e: any) => `${e.actor.type}:${e.action}:${e.outcome}`);
    expect(actions).toContain('operator:app.create:ok');
    expect(actions).toContain('operator:api-keys.create:ok');
    expect(audit.body.result.data.find((e: any) => e.action === 'app.create').actor.id).toBe(session.body.result.operator.id);
  });

  it('a forged or missing session is 401 with the envelope; sessions expire; logout ends one', async () => {
    for (const cookie of ['', 'imkit_session=forged', `imkit_session=${'0'.repeat(64)}`]) {
      const res = await inject(t, { method: 'GET', url: '/dashboard/api/apps', headers: cookie ? { cookie } : {} });
      expect([res.status, res.body.RC, res.body.error]).toEqual([401, 401, 'INVALID_SESSION']);
      const admin = await inject(t, { method: 'GET', url: '/admin/api-keys', headers: { ...(cookie ? { cookie } : {}), 'x-imkit-app': t.appId } });
      expect(admin.status).toBe(401);
    }
    const a = await login(t, 'first@example.com');
    const b = await login(t, 'first@example.com');
    const out = await inject(t, { method: 'POST', url: '/dashboard/api/logout', headers: { cookie: a.cookie, 'x-csrf-token': a.csrf } });
    expect(out.status).toBe(200);
    expect(String(out.headers['set-cookie'])).toMatch(/imkit_session=; Max-Age=0;/);
    // The session check answers "not logged in" (operator null); every other call refuses the ended session.
    expect((await inject(t, { method: 'GET', url: '/dashboard/api/session', headers: { cookie: a.cookie } })).body.result.operator).toBeNull();
    expect((await inject(t, { method: 'GET', url: '/dashboard/api/apps', headers: { cookie: a.cookie } })).status).toBe(401);
    expect((await inject(t, { method: 'GET', url: '/dashboard/api/session', headers: { cookie: b.cookie } })).body.result.operator.email).toBe('first@example.com');
    t.clock.advance(t.config.operatorSessionTtlMs + 1);
    expect((await inject(t, { method: 'GET', url: '/dashboard/api/session', headers: { cookie: b.cookie } })).body.result.operator).toBeNull();
    const expired = await inject(t, { method: 'GET', url: '/dashboard/api/apps', headers: { cookie: b.cookie } });
    expect([expired.status, expired.body.error]).toEqual([401, 'INVALID_SESSION']);
  });

  it('login failures are limited per (account, address) and per address, without locking the operator out elsewhere', async () => {
    t.clock.advance(3_600_000);
    for (let i = 0; i < LOGIN_LIMITS.perPair; i++) expect((await login(t, 'first@example.com', 'wrong password!!', '203.0.113.5')).res.status).toBe(401);
    const limited = await login(t, 'first@example.com', PASSWORD, '203.0.113.5');
    expect([limited.res.status, limited.res.body.error]).toEqual([429, 'RATE_LIMIT_EXCEEDED']);
    expect(Number(limited.res.headers['retry-after'])).toBeGreaterThan(0);
    // The real operator from their own address is not locked out.
    expect((await login(t, 'first@example.com', PASSWORD, '198.51.100.7')).res.status).toBe(200);
    // One address guessing many accounts stops at the per-address cap.
    let status = 0;
    for (let i = 0; i < LOGIN_LIMITS.perAddress + 1 && status !== 429; i++) status = (await login(t, `guess${i}@example.com`, 'wrong password!!', '203.0.113.9')).res.status;
    expect(status).toBe(429);
    expect((await login(t, 'first@example.com', PASSWORD, '203.0.113.9')).res.status).toBe(429);
    // The window passes.
    t.clock.advance(LOGIN_LIMITS.windowMs + 1);
    expect((await login(t, 'first@example.com', PASSWORD, '203.0.113.5')).res.status).toBe(200);
  });
});

describe.each(DIALECTS)('operators from the environment and the CLI (%s)', (dialect) => {
  it('IMKIT_ADMIN_EMAIL + IMKIT_ADMIN_PASSWORD make sure of that operator at every start; the cookie is Secure behind a trusted HTTPS proxy', async () => {
    const store = isolatedStore(dialect);
    try {
      const first = await createServer(defaultConfig({ ...store, logLevel: 'silent', adminEmail: 'ops@example.com', adminPassword: PASSWORD, trustProxy: ['127.0.0.1'] }));
      try {
        expect(first.bootstrap.adminFromEnv).toEqual({ email: 'ops@example.com', created: true, passwordChanged: false });
        expect(first.bootstrap.operatorSetupToken).toBeUndefined();
        const res = await first.http.inject({ method: 'POST', url: '/dashboard/api/login', headers: { 'content-type': 'application/json', 'x-forwarded-proto': 'https' }, payload: JSON.stringify({ email: 'ops@example.com', password: PASSWORD }) });
        expect(res.statusCode).toBe(200);
        expect(String(res.headers['set-cookie'])).toMatch(/; Secure/);
      } finally {
        await first.close();
      }
      const second = await createServer(defaultConfig({ ...store, logLevel: 'silent', adminEmail: 'ops@example.com', adminPassword: 'a brand new password' }));
      try {
        expect(second.bootstrap.adminFromEnv).toEqual({ email: 'ops@example.com', created: false, passwordChanged: true });
        const tryLogin = async (password: string) => (await second.http.inject({ method: 'POST', url: '/dashboard/api/login', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ email: 'ops@example.com', password }) })).statusCode;
        expect(await tryLogin(PASSWORD)).toBe(401);
        expect(await tryLogin('a brand new password')).toBe(200);
      } finally {
        await second.close();
      }
    } finally {
      await store.drop();
    }
  });

  it('imkit-server operator create | reset-password | list', async () => {
    const store = isolatedStore(dialect);
    const env = { IMKIT_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl, IMKIT_DATABASE_SCHEMA: store.databaseSchema };
    try {
      const created = await cli(['operator', 'create', '--email', 'cli@example.com', '--json'], env, `${PASSWORD}\n`);
      expect(created.code, created.stderr).toBe(0);
      expect(JSON.parse(created.stdout).operator.email).toBe('cli@example.com');
      expect(created.stdout).not.toContain(PASSWORD);
      const dup = await cli(['operator', 'create', '--email', 'cli@example.com'], env, `${PASSWORD}\n`);
      expect(dup.code).toBe(1);
      expect(dup.stderr).toMatch(/exists already/);
      const short = await cli(['operator', 'create', '--email', 'x@example.com'], env, 'short\n');
      expect(short.code).toBe(1);
      expect(short.stderr).toMatch(/12 to 1024 characters/);
      const reset = await cli(['operator', 'reset-password', '--email', 'cli@example.com'], env, 'another long password');
      expect(reset.code, reset.stderr).toBe(0);
      const missing = await cli(['operator', 'reset-password', '--email', 'none@example.com'], env, PASSWORD);
      expect(missing.code).toBe(1);
      const list = await cli(['operator', 'list', '--json'], env, '');
      expect(JSON.parse(list.stdout).operators.map((o: any) => o.email)).toEqual(['cli@example.com']);
      const server = await createServer(defaultConfig({ ...store, logLevel: 'silent' }));
      try {
        expect(server.bootstrap.operatorSetupToken).toBeUndefined();
        const tryLogin = async (password: string) => (await server.http.inject({ method: 'POST', url: '/dashboard/api/login', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ email: 'cli@example.com', password }) })).statusCode;
        expect(await tryLogin(PASSWORD)).toBe(401);
        expect(await tryLogin('another long password')).toBe(200);
      } finally {
        await server.close();
      }
    } finally {
      await store.drop();
    }
  });
});

function cli(args: string[], env: Record<string, string | undefined>, input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.resolve('dist/main.js'), ...args], { env: { ...process.env, ...env } as NodeJS.ProcessEnv });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(input);
  });
}

describe('the dashboard pages and the server agree', () => {
  it('the webhooks page offers exactly the event types the server accepts', async () => {
    const { WEBHOOK_EVENT_TYPES } = await import('../src/webhooks/outbox.js');
    const source = (await import('node:fs')).readFileSync(path.resolve('web/dashboard/app-pages.tsx'), 'utf8');
    const listed = /const EVENT_TYPES = \[([^\]]*)\]/.exec(source)![1]!.match(/'[^']+'/g)!.map((s) => s.slice(1, -1));
    expect(listed).toEqual(['*', ...WEBHOOK_EVENT_TYPES]);
  });
});
