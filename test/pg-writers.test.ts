import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageWriter, type AppendInput } from '../src/chat/message-writer.js';
import { openStore, type Store } from '../src/store/database.js';
import { createUser, POSTGRES_URL, startTestServer, tempDir, type TestServer } from './helpers.js';

/**
 * Several message writers on one PostgreSQL, as in cluster mode (docs/cluster.md): each node group-commits its own
 * sends, and two nodes' batches often touch the same rooms at the same moment. The database is one of the test's
 * own, so that its deadlock counter (pg_stat_database) counts this test's transactions alone.
 */
// PostgreSQL only (SQLite has one writer). Defined when IMKIT_TEST_POSTGRES_URL says PostgreSQL is installed, and
// always under CI, where a missing one fails it.
if (POSTGRES_URL !== undefined || process.env.CI) describe('message writers of several nodes on one PostgreSQL', () => {
  const ROOMS = 12;
  const MEMBERS = 20;
  const rooms = Array.from({ length: ROOMS }, (_, i) => `r${String(i).padStart(2, '0')}`);
  const users = Array.from({ length: MEMBERS }, (_, i) => `u${String(i).padStart(2, '0')}`);
  const database = `imkit_writers_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
  let url: string;
  let t: TestServer;
  const stores: Store[] = [];

  const admin = async <T>(fn: (c: pg.Client) => Promise<T>, target = POSTGRES_URL): Promise<T> => {
    if (!target) throw new Error('IMKIT_TEST_POSTGRES_URL is not set: CI runs this test on PostgreSQL');
    const c = new pg.Client({ connectionString: target });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  const node = () => {
    const store = openStore({ databaseUrl: url, databaseSchema: undefined, dataDir: tempDir() });
    stores.push(store);
    return { store, writer: new MessageWriter(store.db, 'postgres', (s) => store.runBatch(s)) };
  };
  const message = (roomId: string, senderId: string, text: string): AppendInput => ({
    appId: t.appId, roomId, senderId, messageType: 'text', message: text, fields: {}, now: Date.now(),
  });
  const deadlocks = () => admin(async (c) => Number((await c.query('select deadlocks from pg_stat_database where datname = $1', [database])).rows[0].deadlocks));

  beforeAll(async () => {
    await admin((c) => c.query(`create database ${database}`));
    const u = new URL(POSTGRES_URL!);
    u.pathname = `/${database}`;
    url = u.toString();
    t = await startTestServer('postgres', { databaseUrl: url, databaseSchema: undefined });
    for (const user of users) await createUser(t, user);
    for (const id of rooms) {
      const res = await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: id, name: id, members: users, owner: users[0] } });
      expect(res.status).toBe(200);
    }
  }, 60_000);

  afterAll(async () => {
    for (const s of stores.splice(0)) await s.close();
    await t?.close();
    await admin((c) => c.query(`drop database if exists ${database} with (force)`));
  });

  it('three nodes sending to the same rooms at once meet no deadlock, and every count and badge is exact', async () => {
    const nodes = [node(), node(), node()];
    const before = await deadlocks();
    const ROUNDS = 150;
    // A fixed pseudo-random sequence: each turn, each node sends a batch to some of the rooms, in its own order.
    let seed = 7;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
    const sent = new Map(rooms.map((id) => [id, 0]));
    const sends: Array<Promise<unknown>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      nodes.forEach((n, i) => {
        const order = rooms.filter(() => random() < 0.6).sort(() => random() - 0.5);
        for (const id of order) {
          sent.set(id, sent.get(id)! + 1);
          sends.push(n.writer.append(message(id, `u0${i}`, `${i}:${round}`)));
        }
      });
      await new Promise((r) => setImmediate(r));
    }
    const settled = await Promise.allSettled(sends);
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
    expect(nodes.reduce((a, n) => a + n.writer.stats.batches, 0)).toBeGreaterThan(3);

    const db = nodes[0]!.store.db;
    const counts = await db.selectFrom('rooms').select(['id', 'message_count']).where('app_id', '=', t.appId).where('id', 'in', rooms).orderBy('id').execute();
    expect(counts).toEqual(rooms.map((id) => ({ id, message_count: sent.get(id) })));
    // Every member who sent nothing has every message of the room unread.
    const badges = await db.selectFrom('room_members').select(['room_id', 'badge']).where('app_id', '=', t.appId).where('room_id', 'in', rooms).where('user_id', 'not in', ['u00', 'u01', 'u02']).execute();
    expect(badges).toHaveLength(ROOMS * (MEMBERS - 3));
    for (const m of badges) expect(m.badge).toBe(sent.get(m.room_id));

    // A backend adds its deadlocks to the database's counter when it reports its statistics (at the latest as it
    // exits): the pools are closed first.
    for (const s of stores.splice(0)) await s.close();
    await new Promise((r) => setTimeout(r, 300));
    expect((await deadlocks()) - before).toBe(0);
  }, 60_000);

  it('a batch that PostgreSQL aborts to end a deadlock is run again: the send succeeds, stored once', async () => {
    const a = node();
    const room = rooms[3]!;
    const before = await deadlocks();
    await admin(async (c) => {
      // Another transaction holds a member row of the room, then (below) asks for the room's row, which the batch
      // holds while it waits for that member row: a deadlock. This session waits 10 s before looking for one, the
      // batch's the default 1 s: PostgreSQL aborts the batch, not this transaction.
      await c.query('begin');
      await c.query(`set local deadlock_timeout = '10s'`);
      await c.query('update room_members set badge = badge where app_id = $1 and room_id = $2 and user_id = $3', [t.appId, room, 'u05']);
      const sent = a.writer.append(message(room, 'u02', 'through a deadlock'));
      sent.catch(() => {});
      // Until the batch waits for the member row.
      for (let i = 0; i < 200; i++) {
        // (Inside a transaction pg_stat_activity is read once, then repeated, unless the snapshot is cleared.)
        await c.query('select pg_stat_clear_snapshot()');
        const waiting = await c.query(`select count(*)::int as n from pg_stat_activity where datname = $1 and wait_event_type = 'Lock' and query like 'select imkit_append_batch%'`, [database]);
        if (waiting.rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await c.query('update rooms set updated_at = updated_at where app_id = $1 and id = $2', [t.appId, room]);
      await c.query('commit');
      const row = await sent;
      const stored = await a.store.db.selectFrom('messages').select(['id', 'message']).where('app_id', '=', t.appId).where('room_id', '=', room).where('message', '=', JSON.stringify('through a deadlock')).execute();
      expect(stored).toEqual([{ id: row.id, message: JSON.stringify('through a deadlock') }]);
    }, url);
    // There was a deadlock indeed.
    for (const s of stores.splice(0)) await s.close();
    await new Promise((r) => setTimeout(r, 300));
    expect((await deadlocks()) - before).toBe(1);
  }, 30_000);
});
