// The SQLite writer's work alone: group-committed batches of new messages, as the writer thread runs them
// (AppendRepo's statements in one BEGIN IMMEDIATE transaction), on a store of 1,000 users in 100 rooms of 10, each
// batch's messages sent to random rooms as in the fan-out scenario. Each batch size runs twice, on the same file:
// with the statement journal in memory (the writer's setting, `temp_store = MEMORY`) and with SQLite's default (a
// temporary file once a statement's journal passes 64 KB), which is the baseline; each setting twice, alternated,
// the lower figure kept. Single thread, no sockets.
//
// Usage: npm run build && node bench/writer-batches.mjs [--batches 1,5,10,20,64,128] [--count 4000]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Sqlite from 'better-sqlite3';
import { defaultConfig } from '../dist/config.js';
import { createServer } from '../dist/server.js';
import { senderReads } from '../dist/chat/message-writer.js';
import { newObjectId } from '../dist/lib/ids.js';
import { AppendRepo } from '../dist/store/append-repo.js';
import { closeAgent, createRooms, createUsers } from './lib/api.mjs';
import { codeVersion, describeMachine, machine } from './lib/machine.mjs';

const { values: opts } = parseArgs({ options: { batches: { type: 'string', default: '1,5,10,20,64,128' }, count: { type: 'string', default: '4000' } } });
const sizes = opts.batches.split(',').map(Number);
const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
console.log(`writer batches — ${describeMachine(machine())}; code ${codeVersion(root).commit ?? '?'}`);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imkit-bench-writer-'));
// Set-up makes 1,100 API-key requests: above the default 1,000 a minute.
const server = await createServer(defaultConfig({ dataDir, logLevel: 'silent', port: 0, host: '127.0.0.1', rateLimitPerMinute: 1_000_000 }));
const app = server.bootstrap.createdDefault;
const url = await server.listen();
const users = Array.from({ length: 1000 }, (_, i) => `u${i}`);
await createUsers(url, app.apiKey, users);
await createRooms(url, app.apiKey, Array.from({ length: 100 }, (_, r) => ({ id: `g${r}`, members: users.slice(r * 10, r * 10 + 10) })));
closeAgent();
const repo = new AppendRepo(server.store.db, 'sqlite');
await server.close();

const file = path.join(dataDir, 'imkit.sqlite');
let clock = Date.now();

function measure(size, journalInMemory) {
  const db = new Sqlite(file);
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  db.pragma('synchronous = NORMAL');
  if (journalInMemory) db.pragma('temp_store = MEMORY');
  const cache = new Map();
  const prepare = (text) => cache.get(text) ?? cache.set(text, db.prepare(text)).get(text);
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const batch = () => {
    const rows = Array.from({ length: size }, () => {
      const room = Math.floor(Math.random() * 100);
      const now = clock++;
      return { app_id: app.id, id: newObjectId(now), room_id: `g${room}`, sender_id: `u${room * 10 + (now % 2)}`, message_type: 'text', message: '"hello from the bench"', fields: JSON.stringify({ sentAt: now + 0.5, benchStep: 1 }), reply_id: null, pinned: 0, edited_at: null, message_time: now, created_at: now, updated_at: now };
    });
    const statements = repo.plan(app.id, rows, senderReads(rows), clock);
    begin.run();
    for (const s of statements) prepare(s.sql).run(s.params);
    commit.run();
  };
  const messages = Number(opts.count);
  const n = Math.max(20, Math.round(messages / size));
  for (let i = 0; i < n / 2; i++) batch(); // warm-up: statements prepared, pages cached
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) batch();
  const cpu = process.cpuUsage(cpu0);
  const wallUs = (performance.now() - t0) * 1000;
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { cpuUsPerMsg: (cpu.user + cpu.system) / (n * size), sysUsPerMsg: cpu.system / (n * size), wallUsPerBatch: wallUs / n };
}

const f = (x) => x.toFixed(1).padStart(6);
console.log('batch  journal in memory: CPU µs/msg (system)  µs/batch | default (temp file): CPU µs/msg (system)  µs/batch | ratio');
// Each setting twice, alternated (the file grows as it goes); the lower CPU of the two is kept.
const best = (a, b) => (a.cpuUsPerMsg <= b.cpuUsPerMsg ? a : b);
for (const size of sizes) {
  const mem1 = measure(size, true);
  const file1 = measure(size, false);
  const mem = best(mem1, measure(size, true));
  const file = best(file1, measure(size, false));
  console.log(
    `${String(size).padStart(5)}  ${f(mem.cpuUsPerMsg)} (${f(mem.sysUsPerMsg)}) ${f(mem.wallUsPerBatch)}           | ${f(file.cpuUsPerMsg)} (${f(file.sysUsPerMsg)}) ${f(file.wallUsPerBatch)}          | ${(mem.cpuUsPerMsg / file.cpuUsPerMsg).toFixed(2)}`,
  );
}
fs.rmSync(dataDir, { recursive: true, force: true });
