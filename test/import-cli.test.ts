import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/database.js';
import { createUser, startTestServer, tempDir, type TestServer } from './helpers.js';

/** `imkit-server import` as a process (dist/main.js): progress on stderr, --json on stdout, kill -9 and start again. */

const MAIN = path.resolve('dist/main.js');

function importer(args: string[], dataDir: string) {
  let stdout = '';
  let stderr = '';
  const env = { ...process.env };
  for (const k of ['IMKIT_APP_ID', 'IMKIT_API_KEY', 'IMKIT_CLIENT_KEY', 'IMKIT_DATABASE_URL']) delete env[k];
  const proc = spawn(process.execPath, [MAIN, 'import', ...args, '--data-dir', dataDir], { env });
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, done, out: () => stdout, err: () => stderr };
}

async function storedMessages(dataDir: string): Promise<number> {
  const store = openStore({ dataDir, databaseUrl: undefined, databaseSchema: undefined });
  try {
    const row = await store.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst();
    return Number(row?.n ?? 0);
  } catch {
    return 0; // not migrated yet
  } finally {
    await store.close();
  }
}

describe('imkit-server import (the command)', () => {
  let src: TestServer;
  let url: string;
  const dirs: string[] = [];
  const TOTAL = 300;

  beforeAll(async () => {
    if (!fs.existsSync(MAIN)) throw new Error('dist/main.js is missing: run "npm run build" (npm test does it first)');
    src = await startTestServer('sqlite', { rateLimitPerMinute: 100_000 });
    url = await src.server.listen();
    for (const u of ['a', 'b', 'c']) await createUser(src, u, src.apiKey, { team: 'x' });
    for (const [id, members] of [['r1', ['a', 'b']], ['r2', ['b', 'c']], ['r3', ['a', 'c']]] as const) {
      const res = await src.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': src.apiKey }, body: { _id: id, roomType: 'group', members } });
      expect(res.status).toBe(200);
    }
    for (let i = 0; i < TOTAL; i++) {
      const room = ['r1', 'r2', 'r3'][i % 3]!;
      const sender = room === 'r2' ? 'b' : 'a';
      const res = await src.request({ method: 'POST', url: `/rooms/${room}/message`, headers: { 'IM-API-KEY': src.apiKey, 'IM-CLIENT-ID': sender }, body: { message: `m${i}` } });
      expect(res.status).toBe(200);
      src.clock.advance(5);
    }
  }, 60_000);

  afterAll(async () => {
    await src?.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('--help describes the options', async () => {
    const r = importer(['--help'], tempDir());
    expect((await r.done).code).toBe(0);
    for (const opt of ['--from', '--api-key', '--app', '--since', '--rooms', '--dry-run', '--concurrency', '--json']) expect(r.out()).toContain(opt);
  });

  it('killed with -9 while waiting for its request budget, started again it completes without duplicates; a third run changes nothing', async () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    // 20 requests a minute: after the first 20 the process waits for the minute to pass, and is killed there.
    const first = importer(['--from', url, '--api-key', src.apiKey, '--limit-per-minute', '20', '--concurrency', '1', '--json'], dataDir);
    for (let i = 0; i < 200 && !/requests 20\/20/.test(first.err()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(first.err()).toMatch(/\[rooms\] users 3\/3/);
    first.proc.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');
    const partial = await storedMessages(dataDir);
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(TOTAL);

    const second = importer(['--from', url, '--api-key', src.apiKey, '--json'], dataDir);
    expect((await second.done).code).toBe(0);
    const report = JSON.parse(second.out().trim().split('\n').at(-1)!);
    expect(report.messages.created).toBe(TOTAL - partial);
    expect(report.throttled).toBe(0);
    expect(await storedMessages(dataDir)).toBe(TOTAL);

    const third = importer(['--from', url, '--api-key', src.apiKey, '--json'], dataDir);
    expect((await third.done).code).toBe(0);
    const again = JSON.parse(third.out().trim());
    expect(again.messages).toMatchObject({ created: 0, updated: 0 });
    expect(again.users).toMatchObject({ created: 0, updated: 0, unchanged: 3 });
    expect(again.rooms).toMatchObject({ created: 0, updated: 0, unchanged: 3 });
    expect(typeof again.durationMs).toBe('number');
    expect(again.requests).toBeGreaterThan(0);

    // Without --json: a summary a person reads.
    const fourth = importer(['--from', url, '--api-key', src.apiKey], dataDir);
    expect((await fourth.done).code).toBe(0);
    // Only what changed since each room's newest update is read again (its newest message): nothing new.
    expect(fourth.out()).toMatch(/messages {2}0 new, 0 changed, \d+ unchanged/);
    expect(fourth.out()).toMatch(/requests {2}\d+ \(limit 1000\/min\), 429s 0/);
    expect(fourth.out()).toMatch(/found {5}3 rooms in room lists, 0 by id, 0 by search \(the source counts 3\)/);
    expect(fourth.out()).toMatch(/deleted {3}0 users, 0 rooms, 0 messages, 0 config keys, 0 webhooks/);
    expect(fourth.err()).toMatch(/\[done\] users 3\/3, rooms 3\/3/);
  }, 60_000);

  it('refuses to start without --from or --api-key', async () => {
    const r = importer(['--api-key', 'k'], tempDir());
    expect((await r.done).code).toBe(2);
    expect(r.err()).toContain('--from');
  });
});
