import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Receiver, verifySignature } from './webhook-receiver.js';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS } from '../src/config.js';
import { DIALECTS, freePort, isolatedStore } from './helpers.js';

/**
 * The CLI and the server as a user runs them: real processes (the built bin), real HTTP over a real port,
 * the CLI changing keys on the same store while the server runs.
 */
const MAIN = path.resolve('dist/main.js');
const run = promisify(execFile);

function cli(args: string[], env: Record<string, string | undefined>) {
  return run(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env } as NodeJS.ProcessEnv }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}


function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', reject);
  });
}

interface Running {
  proc: ChildProcess;
  out: () => string;
  stdout: () => string;
  stderr: () => string;
  base: string;
}

async function startProcess(env: Record<string, string | undefined>, cwd = process.cwd()): Promise<Running> {
  const port = await freePort();
  let out = '';
  let stdout = '';
  let stderr = '';
  const proc = spawn(process.execPath, [MAIN, 'start', '--port', String(port), '--host', '127.0.0.1'], { env: { ...process.env, ...env } as NodeJS.ProcessEnv, cwd });
  proc.stdout!.on('data', (d) => {
    out += d;
    stdout += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
    stderr += d;
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`server exited: ${out}`);
    try {
      if ((await fetch(`${base}/healthz`)).status === 200) return { proc, out: () => out, stdout: () => stdout, stderr: () => stderr, base };
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become ready: ${out}`);
}

async function stop(r: Running): Promise<number | null> {
  if (r.proc.exitCode !== null) return r.proc.exitCode;
  const exited = new Promise<number | null>((resolve) => r.proc.once('exit', (code) => resolve(code)));
  r.proc.kill('SIGTERM');
  return exited;
}

beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error('dist/main.js is missing: run "npm run build" (npm test does it first)');
});

describe('--help and configuration errors', () => {
  it('--help lists every setting with its flag and environment variable', async () => {
    const r = await cli(['--help'], {});
    expect(r.code).toBe(0);
    for (const s of SETTINGS) {
      expect(r.stdout).toContain(`--${s.flag}`);
      expect(r.stdout).toContain(s.env);
    }
    expect(r.stdout).toContain('imkit-server app');
    const app = await cli(['app', '--help'], {});
    for (const sub of ['create', 'list', 'rotate-api-key', 'revoke-api-key', 'rotate-client-key', '--expire-old-in']) expect(app.stdout).toContain(sub);
  });

  it('migrate creates the store and its tables, and is idempotent', async () => {
    const store = isolatedStore('sqlite');
    try {
      for (let i = 0; i < 2; i++) {
        const r = await cli(['migrate', '--data-dir', store.dataDir], {});
        expect(r.code).toBe(0);
        expect(r.stdout).toContain(`Migrated SQLite ${path.join(store.dataDir, 'imkit.sqlite')}`);
      }
      expect(fs.existsSync(path.join(store.dataDir, 'imkit.sqlite'))).toBe(true);
    } finally {
      await store.drop();
    }
  });

  it('bad configuration stops start-up with one line naming the setting', async () => {
    for (const [env, args, name] of [
      [{ PORT: 'eighty' }, [], 'PORT'],
      [{}, ['--port', '99999'], '--port'],
      [{ DATABASE_URL: 'mysql://x' }, [], 'DATABASE_URL'],
      [{ IMKIT_TOKEN_TTL: 'forever' }, [], 'IMKIT_TOKEN_TTL'],
      [{ LOG_LEVEL: 'loud' }, [], 'LOG_LEVEL'],
      [{}, ['--no-such-flag'], 'no-such-flag'],
    ] as Array<[Record<string, string>, string[], string]>) {
      const r = await cli(['start', ...args], { ...env, IMKIT_DATA_DIR: '/nonexistent-should-not-be-created' });
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(name);
      expect(r.stdout).toBe('');
    }
    expect(fs.existsSync('/nonexistent-should-not-be-created')).toBe(false);
  });
});

describe.each(DIALECTS)('the server process and the app CLI (%s)', (dialect) => {
  const store = isolatedStore(dialect);
  // Webhook receivers of these tests listen on loopback.
  const env = { IMKIT_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl, IMKIT_DATABASE_SCHEMA: store.databaseSchema, LOG_LEVEL: 'debug', IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' };
  let server: Running;
  let apiKey: string;
  let clientKey: string;

  beforeAll(async () => {
    server = await startProcess(env);
  });
  afterAll(async () => {
    if (server) await stop(server);
    await store.drop();
  });

  it('first start prints the default keys once, with a warning; curl flow of the README works', async () => {
    // The keys are on stderr, framed; the log (stdout: JSON lines, not a terminal) never holds them.
    const err = server.stderr();
    const block = /\n(={20} imkit-server: keys of application "default" =+)\n([\s\S]*?)\n(=+)\n/.exec(err)!;
    expect(block[3]).toHaveLength(78);
    apiKey = /^API key \(IM-API-KEY\).*\n(\S+)$/m.exec(block[2]!)![1]!;
    clientKey = /^Client key \(IM-CLIENT-KEY\).*\n(\S+)$/m.exec(block[2]!)![1]!;
    expect(block[2]).toContain('will not be shown again');
    expect(server.stdout()).not.toContain(apiKey);
    expect(server.stdout()).not.toContain(clientKey);
    for (const line of server.stdout().trim().split('\n')) expect(() => JSON.parse(line), line).not.toThrow();
    // the README's curl: create a user with a token, then GET /me with the client key
    const created = await fetch(`${server.base}/admin/clients`, {
      method: 'POST',
      headers: { 'IM-API-KEY': apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify({ _id: 'u1', issueAccessToken: true }),
    });
    const token = ((await created.json()) as any).result.token;
    const me = await fetch(`${server.base}/me`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as any).result._id).toBe('u1');
    // log lines are JSON and hold no secret (LOG_LEVEL=debug: one line per request, reaching stdout a little later)
    const logs = () => server.out().split('\n').filter((l) => l.startsWith('{'));
    const meLogged = () => logs().some((l) => JSON.parse(l).url === '/me' && JSON.parse(l).status === 200);
    for (let i = 0; i < 100 && !meLogged(); i++) await new Promise((r) => setTimeout(r, 20));
    const logLines = logs();
    expect(meLogged()).toBe(true);
    for (const l of logLines) {
      expect(() => JSON.parse(l)).not.toThrow();
      for (const s of [apiKey, clientKey, token]) expect(l).not.toContain(s);
    }
  });

  it('app create/list/rotate/revoke work on the same store while the server runs', async () => {
    const created = await cli(['app', 'create', '--name', 'My Shop', '--domain', 'chat.myshop.example', '--json'], env);
    expect(created.code).toBe(0);
    const lines = created.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const app = JSON.parse(lines[0]!);
    expect(Object.keys(app)).toEqual(expect.arrayContaining(['id', 'name', 'apiKey', 'clientKey']));
    // Which store the command opened, in one line on stderr (the server's, not a stray ./data).
    expect(created.stderr.trim().split('\n')).toEqual([
      dialect === 'sqlite'
        ? `imkit-server: using SQLite ${path.join(store.dataDir, 'imkit.sqlite')} (DATABASE_URL is not set; data directory ${store.dataDir})`
        : expect.stringMatching(/^imkit-server: using PostgreSQL 127\.0\.0\.1:5432\/test schema \S+$/),
    ]);
    expect(app).toMatchObject({ id: 'my-shop', name: 'My Shop' });

    const call = (key: string) => fetch(`${server.base}/admin/clients`, { headers: { 'IM-API-KEY': key } });
    expect((await call(app.apiKey)).status).toBe(200);

    const list = await cli(['app', 'list', '--json'], env);
    const apps = JSON.parse(list.stdout).apps;
    expect(apps.map((a: any) => a.id)).toEqual(['default', 'my-shop']);
    expect(list.stdout).not.toContain(app.apiKey);
    expect(list.stdout).not.toContain(apiKey);

    const rotated = JSON.parse((await cli(['app', 'rotate-api-key', 'my-shop', '--expire-old-in', '0', '--json'], env)).stdout);
    expect(rotated.apiKey).toBeTruthy();
    expect((await call(app.apiKey)).status).toBe(401);
    expect((await call(rotated.apiKey)).status).toBe(200);

    const graceful = JSON.parse((await cli(['app', 'rotate-api-key', 'My Shop', '--expire-old-in', '1h', '--json'], env)).stdout);
    expect((await call(rotated.apiKey)).status).toBe(200); // still inside its hour
    expect((await call(graceful.apiKey)).status).toBe(200);

    // By the fingerprint anyone holding the key can compute (the last 4 characters may be shared by live keys).
    const fingerprint = createHash('sha256').update(graceful.apiKey).digest('hex').slice(0, 10);
    expect(graceful.fingerprint).toBe(fingerprint);
    const revoked = await cli(['app', 'revoke-api-key', 'my-shop', fingerprint, '--json'], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await call(graceful.apiKey)).status).toBe(401);

    const token = (await (await fetch(`${server.base}/admin/clients`, { method: 'POST', headers: { 'IM-API-KEY': rotated.apiKey, 'Content-Type': 'application/json' }, body: JSON.stringify({ _id: 'z', issueAccessToken: true }) })).json() as any).result.token;
    // fetch() may not set Host, so this call goes through node:http
    const me = (ck: string) => rawGet(`${server.base}/me`, { 'IM-CLIENT-KEY': ck, 'IM-Authorization': token, Host: 'chat.myshop.example' });
    expect((await me(app.clientKey)).status).toBe(200);
    expect((await rawGet(`${server.base}/me`, { 'IM-CLIENT-KEY': app.clientKey, 'IM-Authorization': token })).status).toBe(403);
    const ck = JSON.parse((await cli(['app', 'rotate-client-key', 'my-shop', '--json'], env)).stdout);
    expect((await me(app.clientKey)).status).toBe(403);
    expect((await me(ck.clientKey)).status).toBe(200);

    const bad = await cli(['app', 'rotate-api-key', 'nope', '--json'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('No application nope');
    const badExpiry = await cli(['app', 'rotate-api-key', 'my-shop', '--expire-old-in', '3d'], env);
    expect(badExpiry.code).toBe(2);
  });

  it('app create-api-key makes a limited key the running server enforces; list-api-keys shows it; revoke by fingerprint', async () => {
    const made = await cli(['app', 'create-api-key', 'default', '--scope', 'users:read', '--scope', 'rooms:read', '--allow-ip', '127.0.0.0/8', '--allow-ip', '::1', '--name', 'reporting', '--expires-in', '90d', '--rate-limit', '50', '--json'], env);
    expect(made.code, made.stderr).toBe(0);
    const key = JSON.parse(made.stdout);
    expect(key).toMatchObject({ appId: 'default', name: 'reporting', scopes: ['users:read', 'rooms:read'], allowIps: ['127.0.0.0/8', '::1'], rateLimitPerMinute: 50, status: 'expiring' });
    expect(key.fingerprint).toMatch(/^[0-9a-f]{10}$/);
    expect(Date.parse(key.expiresAt) - Date.now()).toBeGreaterThan(89 * 86_400_000);
    const call = (method: string, url: string) => fetch(`${server.base}${url}`, { method, headers: { 'IM-API-KEY': key.apiKey, 'Content-Type': 'application/json' }, body: method === 'POST' ? '{"_id":"scoped-made"}' : undefined });
    expect((await call('GET', '/admin/clients')).status).toBe(200);
    const refused = await call('POST', '/admin/clients');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as any).error).toBe('INSUFFICIENT_PERMISSIONS');
    const listed = JSON.parse((await cli(['app', 'list-api-keys', 'default', '--json'], env)).stdout);
    const row = listed.apiKeys.find((k: any) => k.fingerprint === key.fingerprint);
    expect(row).toMatchObject({ name: 'reporting', scopes: ['users:read', 'rooms:read'], last4: key.apiKey.slice(-4) });
    expect(JSON.stringify(listed)).not.toContain(key.apiKey);
    const revoked = await cli(['app', 'revoke-api-key', 'default', key.fingerprint, '--json'], env);
    expect(revoked.code).toBe(0);
    expect((await call('GET', '/admin/clients')).status).toBe(401);
    // The key's life is in the audit log, the CLI as the operator, the refused calls (out of scope, then revoked) as the key's.
    // (A call's entry is recorded once its answer has been sent: the last one may be a moment behind.)
    let audit: any;
    const mine = async () => {
      audit = (await (await fetch(`${server.base}/admin/audit?limit=500`, { headers: { 'IM-API-KEY': apiKey } })).json()) as any;
      return audit.result.data.filter((e: any) => e.target === `fingerprint=${key.fingerprint}` || e.actor.fingerprint === key.fingerprint).map((e: any) => `${e.action} ${e.outcome} ${e.actor.type}`).reverse();
    };
    await expect.poll(mine).toEqual(['api_key.create ok operator', 'clients.create denied apiKey', 'api_key.revoke ok operator', 'clients.read denied apiKey']);
    expect(JSON.stringify(audit)).not.toContain(key.apiKey);
    const bad = await cli(['app', 'create-api-key', 'default', '--scope', 'everything'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('scopes');
  });

  it('app webhook-secret prints the secret that signs room webhooks; a rotation by the CLI reaches the running server', async () => {
    const rx = await new Receiver().start();
    try {
      const first = await cli(['app', 'webhook-secret', 'default', '--json'], env);
      expect(first.code).toBe(0);
      const secret = JSON.parse(first.stdout);
      expect(secret).toEqual({ id: 'default', webhookSecret: expect.stringMatching(/^whsec_/), previousSecretExpiresAt: null });
      // Asked again: the same secret (it is made once).
      expect(JSON.parse((await cli(['app', 'webhook-secret', 'default', '--json'], env)).stdout).webhookSecret).toBe(secret.webhookSecret);
      const admin = { 'IM-API-KEY': apiKey, 'Content-Type': 'application/json' };
      const room = await fetch(`${server.base}/rooms`, { method: 'POST', headers: admin, body: JSON.stringify({ _id: 'hooked', members: ['u1'], webhook: rx.url('/room') }) });
      expect(room.status, await room.text()).toBe(200);
      const send = async (text: string) => {
        const res = await fetch(`${server.base}/messages`, { method: 'POST', headers: admin, body: JSON.stringify({ room: 'hooked', sender: 'u1', messageType: 'text', message: text }) });
        expect(res.status, await res.text()).toBe(200);
      };
      await send('one');
      await rx.waitFor((r) => r.length === 1);
      expect(verifySignature(secret.webhookSecret, rx.requests[0]!)).toBe(true);

      const rotated = JSON.parse((await cli(['app', 'webhook-secret', 'default', '--rotate', '--json'], env)).stdout);
      expect(rotated.webhookSecret).not.toBe(secret.webhookSecret);
      expect(Date.parse(rotated.previousSecretExpiresAt) - Date.now()).toBeGreaterThan(23 * 3_600_000);
      // The server reads secrets again at most a second after they change in another process.
      await new Promise((r) => setTimeout(r, 1_100));
      await send('two');
      await rx.waitFor((r) => r.length === 2);
      expect(verifySignature(rotated.webhookSecret, rx.requests[1]!)).toBe(true);
      expect(verifySignature(secret.webhookSecret, rx.requests[1]!)).toBe(true);
      expect(first.stdout + rotated.webhookSecret).not.toContain('undefined');
      expect(server.out()).not.toContain(secret.webhookSecret);
    } finally {
      await rx.close();
    }
  });

  it('a restart does not print keys again, keeps the data, and SIGTERM shuts down cleanly', async () => {
    expect(await stop(server)).toBe(0);
    server = await startProcess(env);
    expect(server.out()).not.toContain('IM-API-KEY');
    const res = await fetch(`${server.base}/admin/clients`, { headers: { 'IM-API-KEY': apiKey } });
    expect(((await res.json()) as any).result.data.map((u: any) => u._id)).toContain('u1');
  });
});

describe('keys given by the environment (IMKIT_APP_ID, IMKIT_API_KEY, IMKIT_CLIENT_KEY, .env)', () => {
  it('makes sure the application exists with exactly those keys, read from a .env file', async () => {
    const store = isolatedStore('sqlite');
    const cwd = store.dataDir;
    const apiKey = 'MjJZcFlIRGFRbElRbERTdlZMQ0xMbzJNUHpGZlZtOWpZcHh3MnZ1QnJtaz0=';
    const clientKey = 'fangho_imkit_0412_2018_001_clientkey';
    fs.writeFileSync(path.join(cwd, '.env'), `IMKIT_APP_ID=SampleApp\nIMKIT_API_KEY=${apiKey}\nIMKIT_CLIENT_KEY=${clientKey}\nIMKIT_DATA_DIR=${path.join(cwd, 'data')}\n`);
    const env = { IMKIT_APP_ID: undefined, IMKIT_API_KEY: undefined, IMKIT_CLIENT_KEY: undefined, IMKIT_DATA_DIR: undefined, DATABASE_URL: undefined };
    let r = await startProcess(env, cwd);
    try {
      expect(r.out()).not.toContain(apiKey);
      const created = await fetch(`${r.base}/admin/clients`, { method: 'POST', headers: { 'IM-API-KEY': apiKey, 'Content-Type': 'application/json' }, body: JSON.stringify({ _id: 'sam', token: 'sam-custom-token-1' }) });
      expect(((await created.json()) as any).result.appID).toBe('SampleApp');
      const me = await fetch(`${r.base}/me`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': 'sam-custom-token-1' } });
      expect(me.status).toBe(200);
      await stop(r);
      r = await startProcess(env, cwd); // idempotent on restart
      expect((await fetch(`${r.base}/me`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': 'sam-custom-token-1' } })).status).toBe(200);
      expect(fs.existsSync(path.join(cwd, 'data', 'imkit.sqlite'))).toBe(true);
    } finally {
      await stop(r);
      await store.drop();
    }
  });
});
