import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_FILE } from '../src/store/database.js';
import type { PlannedStatement } from '../src/store/append-repo.js';
import { startSqliteWriter, viaThread } from '../src/store/sqlite-writer.js';
import { startTestServer, type TestServer } from './helpers.js';

/**
 * On SQLite, users' messages are written by a thread with its own connection (store/sqlite-writer.ts), in the
 * batches the message writer forms; the event loop's connection begins its transactions IMMEDIATE.
 */
describe('SQLite writer thread', () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer('sqlite');
    const admin = { 'IM-API-KEY': t.apiKey };
    expect((await t.request({ method: 'POST', url: '/admin/clients/list', headers: admin, body: { data: [{ _id: 'ann' }, { _id: 'bob' }] } })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'w', roomType: 'group', members: ['ann', 'bob'] } })).status).toBe(200);
  });
  afterAll(() => t?.close());

  it('writes the batches of users’ messages, which are then read back on the event loop’s connection', async () => {
    const before = t.server.store.background().writer!;
    const sent = await Promise.all(Array.from({ length: 50 }, (_, i) => t.server.services.messages.send({ appId: t.appId, userId: i % 2 ? 'ann' : 'bob', platform: false }, 'w', { message: `t${i}` })));
    const after = t.server.store.background().writer!;
    expect(after.transactions - before.transactions).toBeGreaterThan(0);
    expect(after.transactions - before.transactions).toBeLessThan(50 / 4);
    expect(after.failures).toBe(before.failures);
    const page = await t.request({ method: 'GET', url: '/rooms/w/messages/v3?limit=100', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
    expect(page.body.result.data.map((m: { _id: string }) => m._id).sort()).toEqual(sent.map((m) => m._id as string).sort());
    expect(page.body.result.totalCount).toBe(50);
  });

  it('runs a batch as one transaction: a failing statement leaves nothing of the batch', async () => {
    const writer = startSqliteWriter(path.join(t.config.dataDir, SQLITE_FILE), 4000);
    try {
      const rename = { sql: 'update rooms set name = ? where app_id = ? and id = ?', params: ['renamed', t.appId, 'w'] };
      const bad = { sql: 'insert into messages (app_id, id) values (?, ?)', params: [t.appId, 'x'] }; // NOT NULL columns missing
      const err = await writer.run([rename, bad]).catch((e: unknown) => e as { code?: string });
      expect(err).toMatchObject({ code: 'SQLITE_CONSTRAINT_NOTNULL' });
      const room = await t.request({ method: 'GET', url: '/rooms/w', headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'ann' } });
      expect(room.body.result.name).not.toBe('renamed');
      await writer.run([rename]);
      expect((await t.server.store.db.selectFrom('rooms').select('name').where('id', '=', 'w').executeTakeFirst())?.name).toBe('renamed');
      expect(writer.stats).toEqual({ transactions: 1, failures: 1 });
    } finally {
      await writer.stop();
    }
    expect(writer.alive).toBe(false);
    await expect(writer.run([])).rejects.toThrow(/stopp/);
  });

  it('sends batches to the event loop’s connection once the thread is gone', async () => {
    const writer = startSqliteWriter(path.join(t.config.dataDir, SQLITE_FILE), 4000);
    const fellBack: PlannedStatement[][] = [];
    const run = viaThread(writer, async (statements) => void fellBack.push(statements));
    const rename = (name: string) => [{ sql: 'update rooms set name = ? where app_id = ? and id = ?', params: [name, t.appId, 'w'] }];
    await run(rename('by the thread'));
    expect(writer.stats.transactions).toBe(1);
    expect(fellBack).toEqual([]);
    await writer.stop();
    await run(rename('after'));
    expect(fellBack).toEqual([rename('after')]);
    expect(writer.stats.transactions).toBe(1);
  });
});
