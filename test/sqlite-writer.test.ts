import net from 'node:net';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { atTurnEnd } from '../src/lib/turn-end.js';
import { SQLITE_FILE } from '../src/store/database.js';
import type { PlannedStatement } from '../src/store/append-repo.js';
import { type SqliteWriter, startSqliteWriter, viaThread } from '../src/store/sqlite-writer.js';
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
      expect(writer.stats).toMatchObject({ transactions: 1, failures: 1 });
    } finally {
      await writer.stop();
    }
    expect(writer.alive).toBe(false);
    await expect(writer.run([])).rejects.toThrow(/stopp/);
  });

  /**
   * A writer thread of its own on the test store, with a batch that renames room w, and a way to hold up the event
   * loop (as a long turn does) until the thread has committed a rename, then 20 ms more (bounded at 5 s).
   */
  async function withWriter(
    body: (w: { writer: SqliteWriter; name: () => string; rename: (to: string) => PlannedStatement[]; holdUntilStored: (to: string) => void }) => Promise<void>,
  ): Promise<void> {
    const file = path.join(t.config.dataDir, SQLITE_FILE);
    const writer = startSqliteWriter(file, 4000);
    const reader = new Sqlite(file);
    const name = () => (reader.prepare('select name from rooms where app_id = ? and id = ?').get(t.appId, 'w') as { name: string }).name;
    const rename = (to: string) => [{ sql: 'update rooms set name = ? where app_id = ? and id = ?', params: [to, t.appId, 'w'] }];
    const holdUntilStored = (to: string) => {
      const deadline = Date.now() + 5000;
      while (name() !== to && Date.now() < deadline);
      const settle = Date.now() + 20;
      while (Date.now() < settle);
    };
    try {
      await writer.run(rename('warm'));
      await body({ writer, name, rename, holdUntilStored });
    } finally {
      reader.close();
      await writer.stop();
    }
  }

  /**
   * A loopback connection: `onInput` runs for each input the server side reads (in the poll phase of the event
   * loop), and may write more from the client; resolves once the server side ends the connection.
   */
  async function converse(onInput: (n: number, server: net.Socket, client: net.Socket) => void): Promise<void> {
    let client: net.Socket | undefined;
    let inputs = 0;
    const server = net.createServer((socket) => socket.on('data', () => onInput(++inputs, socket, client!)));
    try {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => c.write('go'));
      client = c;
      await new Promise((resolve) => c.on('close', resolve));
    } finally {
      server.close();
    }
  }

  it('settles a batch the thread committed during a long turn at the end of that turn, not a turn later', () =>
    withWriter(async ({ writer, name, rename, holdUntilStored }) => {
      const order: string[] = [];
      let batch: Promise<unknown> | undefined;
      // As in the server: a socket's input arrives (the poll phase), a batch goes to the thread, and the turn goes on
      // long enough for the thread to commit.
      await converse((_n, socket) => {
        batch = writer.run(rename('in one turn')).then(() => order.push('batch'));
        setImmediate(() => order.push('end of the turn'));
        setTimeout(() => order.push('timer of the next turn'), 0);
        holdUntilStored('in one turn');
        socket.end();
      });
      await batch;
      await new Promise((r) => setTimeout(r, 10));
      expect(name()).toBe('in one turn');
      // Read from the thread's message, the answer would come in the next turn's poll phase, after its timers.
      expect(order).toEqual(['batch', 'end of the turn', 'timer of the next turn']);
      expect(writer.stats).toMatchObject({ transactions: 2, failures: 0 });
      expect(writer.stats.settledAtTurnEnd).toBeGreaterThanOrEqual(1);
    }));

  it('writes what a committed batch starts (its deliveries) in the turn the batch is settled in', () =>
    withWriter(async ({ writer, name, rename, holdUntilStored }) => {
      const order: string[] = [];
      let batch: Promise<unknown> | undefined;
      // As in the server: the message writer sends a batch at the end of a turn (setImmediate); the next turn reads
      // input for long enough that the thread commits meanwhile. The batch's promise continuations hand their packets
      // to the coalescer, whose flush must come after the settle stage of that turn.
      // Counting to 100,000 first keeps the thread busy until the next turn is reading input, so that its answer
      // cannot be read in that turn's poll phase already (a quick commit's can be) and the end of the turn settles it.
      const slowRename = (to: string) => [{ ...rename(to)[0]!, sql: `update rooms set name = ? || substr((with recursive c(x) as (select 1 union all select x + 1 from c where x < 100000) select count(*) from c), 1, 0) where app_id = ? and id = ?` }];
      await converse((n, socket, client) => {
        if (n === 1) {
          setImmediate(() => {
            batch = writer.run(slowRename('two turns')).then(() => atTurnEnd('flush', () => order.push('written')));
            client.write('input of the next turn');
          });
          return;
        }
        setTimeout(() => order.push('timer of the turn after'), 0);
        holdUntilStored('two turns');
        socket.end();
      });
      await batch;
      await new Promise((r) => setTimeout(r, 10));
      expect(name()).toBe('two turns');
      expect(order).toEqual(['written', 'timer of the turn after']);
      expect(writer.stats.settledAtTurnEnd).toBeGreaterThanOrEqual(1);
    }));

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
