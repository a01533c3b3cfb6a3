import { type ChildProcess, execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS, freePort, isolatedStore, POSTGRES_URL, startServerProcess, tempDir } from './helpers.js';

/** `imkit-server backup`, `restore` and `doctor` as an operator runs them, against a running server (issue 21). */
const MAIN = path.resolve('dist/main.js');
const run = promisify(execFile);
const API_KEY = 'ops-test-api-key-0123456789abcdef0123456789';

function cli(args: string[], env: Record<string, string | undefined>) {
  return run(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env } as NodeJS.ProcessEnv }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const exited = new Promise((resolve) => p.once('exit', resolve));
  p.kill('SIGTERM');
  await exited;
}

class Api {
  constructor(readonly base: string) {}
  async call(method: string, url: string, body?: unknown, asUser?: string): Promise<any> {
    const res = await fetch(`${this.base}${url}`, {
      method,
      headers: { 'IM-API-KEY': API_KEY, 'Content-Type': 'application/json', ...(asUser ? { 'IM-CLIENT-ID': asUser } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as any;
    if (res.status !== 200) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json)}`);
    return json.result;
  }
  /** Every message id of the room, oldest first. */
  async history(room: string): Promise<string[]> {
    const ids: string[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await this.call('GET', `/rooms/${room}/messages/v3?limit=100${before ? `&beforeMessage=${before}` : ''}`, undefined, 'alice');
      const data = (page.data as Array<{ _id: string }>).filter((m) => m._id !== before);
      if (data.length === 0) break;
      ids.push(...data.map((m) => m._id));
      before = data[data.length - 1]!._id;
    }
    return ids.reverse();
  }
}

describe.each(DIALECTS)('backup, restore and doctor (%s)', (dialect) => {
  const store = isolatedStore(dialect);
  const env = { IMKIT_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl, IMKIT_DATABASE_SCHEMA: store.databaseSchema, IMKIT_API_KEY: API_KEY };
  const backupFile = path.join(tempDir('imkit-backup-'), 'backup.db');
  let server: ChildProcess | undefined;
  let api: Api;

  beforeAll(async () => {
    if (!fs.existsSync(MAIN)) throw new Error('dist/main.js is missing: run "npm run build" (npm test does it first)');
    const port = await freePort();
    server = await startServerProcess(port, env);
    api = new Api(`http://127.0.0.1:${port}`);
  });
  afterAll(async () => {
    if (server) await stop(server);
    await store.drop();
  });

  it('a backup taken while messages are being sent restores to a store holding every message acknowledged before it, in order, without gaps', async () => {
    await api.call('POST', '/admin/clients', { _id: 'alice', nickname: 'Alice' });
    await api.call('POST', '/admin/clients', { _id: 'bob', nickname: 'Bob' });
    await api.call('POST', '/rooms', { _id: 'ops', name: 'Ops', roomType: 'group', members: ['alice', 'bob'], owner: 'alice' });
    const acked: string[] = [];
    let sending = true;
    const sender = (async () => {
      for (let i = 0; sending; i++) acked.push((await api.call('POST', '/messages', { room: 'ops', sender: i % 2 ? 'bob' : 'alice', messageType: 'text', message: `m${i}` }))._id);
    })();
    await expect.poll(() => acked.length, { timeout: 20_000 }).toBeGreaterThan(50);
    const beforeBackup = acked.length;
    const backup = await cli(['backup', '--out', backupFile], env);
    expect(backup.code, backup.stderr).toBe(0);
    await expect.poll(() => acked.length - beforeBackup, { timeout: 20_000 }).toBeGreaterThan(20);
    sending = false;
    await sender;
    expect(fs.existsSync(backupFile)).toBe(true);
    expect(fs.readdirSync(path.dirname(backupFile)).filter((f) => f.includes('.partial-'))).toEqual([]);
    const report = JSON.parse(backup.stdout.trim());
    expect(report).toMatchObject({ backup: backupFile });
    expect(report.bytes).toBeGreaterThan(0);

    if (dialect === 'sqlite') {
      // Not under a running server, and not over existing data without --force.
      const refused = await cli(['restore', '--from', backupFile], env);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/a server \(pid \d+\) runs on .*: stop it before restoring/);
    }
    await stop(server!);
    server = undefined;

    let restoredEnv: Record<string, string | undefined> = env;
    if (dialect === 'sqlite') {
      const over = await cli(['restore', '--from', backupFile], env);
      expect(over.code).toBe(2);
      expect(over.stderr).toContain('pass --force');
      // Into a fresh data directory.
      restoredEnv = { ...env, IMKIT_DATA_DIR: tempDir('imkit-restored-') };
      const restored = await cli(['restore', '--from', backupFile], restoredEnv);
      expect(restored.code, restored.stderr).toBe(0);
    } else {
      const over = await cli(['restore', '--from', backupFile], env);
      expect(over.code).toBe(2);
      expect(over.stderr).toContain('pass --force');
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`drop schema "${store.databaseSchema}" cascade`);
      await client.end();
      const restored = await cli(['restore', '--from', backupFile], env);
      expect(restored.code, restored.stderr).toBe(0);
    }

    const doctor = await cli(['doctor'], restoredEnv);
    expect(doctor.code, doctor.stdout).toBe(0);
    expect(doctor.stdout).toMatch(/^ok +migrations: all \d+ applied$/m);

    const port = await freePort();
    server = await startServerProcess(port, restoredEnv);
    api = new Api(`http://127.0.0.1:${port}`);
    const stored = await api.history('ops');
    expect(stored.length).toBeGreaterThanOrEqual(beforeBackup);
    expect(stored.length).toBeLessThanOrEqual(acked.length);
    expect(stored).toEqual(acked.slice(0, stored.length));
    // The restored server goes on: a new message sorts after the restored ones.
    const next = (await api.call('POST', '/messages', { room: 'ops', sender: 'alice', messageType: 'text', message: 'after restore' }))._id as string;
    expect((await api.history('ops')).at(-1)).toBe(next);
  });

  it('restore refuses a file that is not a backup; doctor names a store it cannot reach and a bad setting', async () => {
    const junk = path.join(tempDir('imkit-junk-'), 'junk.db');
    fs.writeFileSync(junk, Buffer.alloc(8192, 7));
    const fresh = { ...env, IMKIT_DATA_DIR: tempDir('imkit-fresh-') };
    if (dialect === 'sqlite') {
      const refused = await cli(['restore', '--from', junk], fresh);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('cannot be restored');
      expect(fs.existsSync(path.join(fresh.IMKIT_DATA_DIR, 'imkit.sqlite'))).toBe(false);
    }
    const unreachable = await cli(['doctor', '--database-url', 'postgres://postgres@127.0.0.1:1/test'], fresh);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stdout).toMatch(/^FAIL +store: cannot open the PostgreSQL database of DATABASE_URL: .*ECONNREFUSED/m);
    const badSetting = await cli(['doctor', '--port', 'seventy'], fresh);
    expect(badSetting.code).toBe(1);
    expect(badSetting.stdout).toMatch(/^FAIL +settings: Invalid --port/m);
    const missing = await cli(['backup'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('backup needs --out FILE');
  });
});
