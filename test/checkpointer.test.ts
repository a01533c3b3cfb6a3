import fs from 'node:fs';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_FILE } from '../src/store/database.js';
import { startTestServer, type TestServer } from './helpers.js';

/**
 * SQLite checkpoints run on a thread of their own (store/checkpointer.ts): the WAL is copied back into the database
 * file while the server writes, and it stays bounded under a steady stream of sends.
 */
describe('checkpoint thread [sqlite]', () => {
  let t: TestServer;
  const as = { appId: '', userId: 'ann', platform: false };

  beforeAll(async () => {
    t = await startTestServer('sqlite');
    as.appId = t.appId;
    const res = await t.request({ method: 'POST', url: '/admin/clients/list', headers: { 'IM-API-KEY': t.apiKey }, body: { data: [{ _id: 'ann' }, { _id: 'bob' }] } });
    expect(res.status).toBe(200);
    const rooms = await Promise.all(
      Array.from({ length: 20 }, (_, i) => t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: `c${i}`, roomType: 'group', members: ['ann', 'bob'] } })),
    );
    expect(rooms.map((r) => r.status)).toEqual(rooms.map(() => 200));
  });
  afterAll(() => t?.close());

  const file = () => path.join(t.config.dataDir, SQLITE_FILE);
  const stats = () => t.server.store.background().checkpoints!;

  async function until(what: () => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!what()) {
      if (Date.now() > end) throw new Error(`timed out; checkpoints ${JSON.stringify(stats())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('copies what the server commits into the database file, without the server checkpointing', async () => {
    for (let i = 0; i < 200; i++) await t.server.services.messages.send(as, `c${i % 20}`, { message: `m${i}` });
    const runs = stats().runs;
    await until(() => stats().runs > runs && stats().walFrames > 0 && stats().copiedFrames === stats().walFrames);
    expect(stats().errors).toBe(0);
    // Another connection finds nothing left to copy, and reads every message. (Read-write: a checkpoint asked by a
    // read-only connection failed once with SQLITE_IOERR, disk I/O error, in a run of the whole suite.)
    const other = new Sqlite(file());
    other.pragma('busy_timeout = 5000');
    try {
      const [r] = other.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      expect(r!.checkpointed).toBe(r!.log);
      expect(other.prepare(`select count(*) as n from messages where message like '"m%'`).get()).toEqual({ n: 200 });
    } finally {
      other.close();
    }
  });

  it('keeps the WAL bounded under a steady stream of sends', async () => {
    let largest = 0;
    const watch = setInterval(() => {
      try {
        largest = Math.max(largest, fs.statSync(`${file()}-wal`).size);
      } catch {
        // the WAL file can be missing for a moment; nothing to measure then
      }
    }, 5);
    try {
      // Far past the 4,000-page threshold (about 30,000 pages), in rounds that leave the thread little time to catch up.
      for (let round = 0; round < 100; round++) {
        await Promise.all(Array.from({ length: 100 }, (_, i) => t.server.services.messages.send(as, `c${i % 20}`, { message: `r${round}.${i}`, pad: 'x'.repeat(600) })));
      }
    } finally {
      clearInterval(watch);
    }
    largest = Math.max(largest, fs.statSync(`${file()}-wal`).size);
    // 4,000 pages of 4 KiB with their frame headers, plus what is appended past the threshold before the WAL can
    // start over: the batch that crossed it and, while a reader still holds the old WAL, a few more (one run on a
    // loaded machine reached 4,545 pages). Without the threshold the WAL grows to about 30,000 pages.
    expect(largest).toBeGreaterThan(0);
    expect(largest).toBeLessThan((4_000 + 1_000) * (4096 + 24));
    expect(stats().errors).toBe(0);
  });

  it('stops with the server', async () => {
    await t.server.close();
    const runs = stats().runs;
    await new Promise((r) => setTimeout(r, 300));
    expect(stats().runs).toBe(runs);
  });
});
