// Store scenario, in one process: message inserts and history pages through imkit-server's services
// (createServer(...).services, realtime delivery switched off so only the send path itself is measured), against
// raw better-sqlite3 (or raw pg) statements writing and reading the same rows.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import pg from 'pg';
import { defaultConfig } from '../../dist/config.js';
import { createServer } from '../../dist/server.js';
import { serve, ready } from '../lib/child.mjs';
import { Hist } from '../lib/hist.mjs';

const now = () => performance.now();

/** Runs `op` with `concurrency` lanes for `durationMs`; returns ops/s and per-op latency. */
async function timed(durationMs, concurrency, op) {
  const hist = new Hist();
  let n = 0;
  const start = now();
  const end = start + durationMs;
  const lane = async () => {
    while (now() < end) {
      const t = now();
      await op(n++);
      hist.add(now() - t);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const secs = (now() - start) / 1000;
  return { ops: hist.n, perSec: Math.round(hist.n / secs), latency: hist.summary() };
}

/** Same for a synchronous op (raw better-sqlite3): one lane, yielding to the event loop now and then. */
async function timedSync(durationMs, op) {
  const hist = new Hist();
  const start = now();
  const end = start + durationMs;
  let n = 0;
  while (now() < end) {
    for (let k = 0; k < 50; k++) {
      const t = now();
      op(n++);
      hist.add(now() - t);
    }
    await new Promise((r) => setImmediate(r));
  }
  const secs = (now() - start) / 1000;
  return { ops: hist.n, perSec: Math.round(hist.n / secs), latency: hist.summary() };
}

async function run({ dialect, durationMs = 1500, concurrency = 8, databaseUrl, schema, pageSize = 20 }) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imkit-bench-store-'));
  const config = defaultConfig({
    dataDir,
    databaseUrl: dialect === 'postgres' ? databaseUrl : undefined,
    databaseSchema: dialect === 'postgres' ? schema : undefined,
    logLevel: 'silent',
    port: 0,
    host: '127.0.0.1',
  });
  const server = await createServer(config);
  const out = { dialect, concurrency, pageSize };
  let rawPool;
  try {
    const created = server.bootstrap.createdDefault;
    if (!created) throw new Error('expected an empty store');
    const inject = async (method, url, body) => {
      const res = await server.http.inject({ method, url, headers: { 'IM-API-KEY': created.apiKey, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
      if (res.statusCode !== 200) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
      return JSON.parse(res.body);
    };
    const members = Array.from({ length: 10 }, (_, i) => `s${i}`);
    await inject('POST', '/admin/clients/list', { data: members.map((id) => ({ _id: id, nickname: id })) });
    await inject('POST', '/rooms', { _id: 'store', name: 'store', roomType: 'group', members });
    // Only the store and the services: no socket delivery reading the message back after each send.
    server.realtime?.delivery?.stop?.();
    const caller = { appId: created.id, userId: 's0', platform: false };
    const services = server.services;

    const insert = (i) => services.messages.send(caller, 'store', { messageType: 'text', message: `store bench message ${i}`, sentAt: Date.now() });
    let before;
    const historyPage = async () => {
      const page = await services.messages.history(caller, 'store', { limit: pageSize, ...(before ? { beforeMessage: before } : {}) });
      const last = page.data[page.data.length - 1];
      before = page.data.length === pageSize ? last._id : undefined;
    };
    // Warm-up (JIT, caches), not counted.
    const warmMs = Math.min(1000, durationMs / 2);
    await timed(warmMs, concurrency, insert);
    await timed(warmMs / 2, concurrency, historyPage);
    before = undefined;

    out.insert = await timed(durationMs, concurrency, insert);
    out.history = await timed(durationMs, concurrency, historyPage);
    out.roomMessages = out.insert.ops;

    // Baseline: the same rows, written and read with raw statements.
    if (dialect === 'sqlite') {
      const db = new Sqlite(path.join(dataDir, 'imkit.sqlite'));
      db.pragma('journal_mode = WAL');
      db.pragma('busy_timeout = 5000');
      db.pragma('synchronous = NORMAL');
      const sample = db.prepare('SELECT * FROM messages WHERE app_id = ? AND room_id = ? ORDER BY id DESC LIMIT 1').get(created.id, 'store');
      const cols = Object.keys(sample);
      const ins = db.prepare(`INSERT INTO messages (${cols.join(', ')}) VALUES (${cols.map((c) => '@' + c).join(', ')})`);
      const updRoom = db.prepare('UPDATE rooms SET last_message_id = ?, updated_at = ? WHERE app_id = ? AND id = ?');
      const badges = db.prepare('UPDATE room_members SET badge = badge + 1 WHERE app_id = ? AND room_id = ? AND user_id <> ?');
      const readBySender = db.prepare('UPDATE room_members SET last_read = ?, badge = 0 WHERE app_id = ? AND room_id = ? AND user_id = ?');
      // History first, on the same rows the services paged through; then the inserts.
      const page = db.prepare('SELECT * FROM messages WHERE app_id = ? AND room_id = ? AND id < ? ORDER BY id DESC LIMIT ?');
      let anchor = 'z';
      const rawPage = () => {
        const rows = page.all(created.id, 'store', anchor, pageSize);
        anchor = rows.length === pageSize ? rows[rows.length - 1].id : 'z';
      };
      await timedSync(warmMs / 2, rawPage);
      anchor = 'z';
      out.rawHistory = await timedSync(durationMs, rawPage);
      const rawId = (prefix, i) => prefix + i.toString(16).padStart(23, '0');
      out.rawInsert = await timedSync(durationMs, (i) => ins.run({ ...sample, id: rawId('e', i), created_at: Date.now() }));
      const send = db.transaction((row) => {
        ins.run(row);
        updRoom.run(row.id, row.created_at, row.app_id, row.room_id);
        badges.run(row.app_id, row.room_id, row.sender_id);
        readBySender.run(row.id, row.app_id, row.room_id, row.sender_id);
      });
      out.rawSendTx = await timedSync(durationMs, (i) => send({ ...sample, id: rawId('d', i), created_at: Date.now() }));
      db.close();
    } else {
      rawPool = new pg.Pool({ connectionString: databaseUrl, max: concurrency, options: `-c search_path=${schema}` });
      const { rows: [sample] } = await rawPool.query('SELECT * FROM messages WHERE app_id = $1 AND room_id = $2 ORDER BY id DESC LIMIT 1', [created.id, 'store']);
      const cols = Object.keys(sample);
      const insSql = `INSERT INTO messages (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`;
      // History first, on the same rows the services paged through; then the inserts.
      let anchor = 'z';
      out.rawHistory = await timed(durationMs, concurrency, async () => {
        const { rows } = await rawPool.query('SELECT * FROM messages WHERE app_id = $1 AND room_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4', [created.id, 'store', anchor, pageSize]);
        anchor = rows.length === pageSize ? rows[rows.length - 1].id : 'z';
      });
      const rawId = (prefix, i) => prefix + i.toString(16).padStart(23, '0');
      const values = (row) => cols.map((c) => row[c]);
      out.rawInsert = await timed(durationMs, concurrency, (i) => rawPool.query(insSql, values({ ...sample, id: rawId('e', i), created_at: Date.now() })));
      out.rawSendTx = await timed(durationMs, concurrency, async (i) => {
        const row = { ...sample, id: rawId('d', i), created_at: Date.now() };
        const c = await rawPool.connect();
        try {
          await c.query('BEGIN');
          await c.query(insSql, values(row));
          await c.query('UPDATE rooms SET last_message_id = $1, updated_at = $2 WHERE app_id = $3 AND id = $4', [row.id, row.created_at, row.app_id, row.room_id]);
          await c.query('UPDATE room_members SET badge = badge + 1 WHERE app_id = $1 AND room_id = $2 AND user_id <> $3', [row.app_id, row.room_id, row.sender_id]);
          await c.query('UPDATE room_members SET last_read = $1, badge = 0 WHERE app_id = $2 AND room_id = $3 AND user_id = $4', [row.id, row.app_id, row.room_id, row.sender_id]);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK').catch(() => {});
          throw err;
        } finally {
          c.release();
        }
      });
    }
    return out;
  } finally {
    await rawPool?.end().catch(() => {});
    await server.close().catch(() => {});
    if (dialect === 'postgres') {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => c.end());
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

serve({ run });
ready();
