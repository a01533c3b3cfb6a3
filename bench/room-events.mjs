// Room events in a big room: what one rename, one leave and one join cost the server, in SQL statements and in
// milliseconds, in a room of 1,000 members of whom 100 have a socket open. Each change is measured from the REST
// call until every socket online has received its `room` event and realtime delivery has nothing left queued (the
// members offline are whatever the server still does for them). The server runs in this process (so that its
// statements can be counted on its Kysely instance, bench/lib/sql-count.mjs); the sockets are minimal Socket.IO
// clients (bench/lib/light-client.mjs) that count `room` frames without parsing them, so the clients' share of the
// one process stays small. The leaving and joining member is offline; the rename is made by the owner. The room
// has one message, so each event carries a last message.
//
// Usage: npm run build && node bench/room-events.mjs [--members 1000] [--online 100] [--reps 5] [--postgres]
//        [--pg-url URL] [--dist DIR]
// --dist runs another build of the server (e.g. the code before a change, built in a worktree of its own).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { closeAgent, createUsers, request } from './lib/api.mjs';
import { LightSocket } from './lib/light-client.mjs';
import { codeVersion, describeMachine, machine } from './lib/machine.mjs';
import { statementCounter } from './lib/sql-count.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const { values: opts } = parseArgs({
  options: {
    members: { type: 'string', default: '1000' },
    online: { type: 'string', default: '100' },
    reps: { type: 'string', default: '5' },
    postgres: { type: 'boolean', default: false },
    'pg-url': { type: 'string', default: process.env.IMKIT_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
    dist: { type: 'string', default: path.join(here, '..', 'dist') },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(`node bench/room-events.mjs [--members N] [--online N] [--reps N] [--postgres] [--pg-url URL] [--dist DIR]
  --members N   members of the room (default 1000, the default IMKIT_MAX_ROOM_MEMBERS)
  --online N    of them with a socket open (default 100)
  --reps N      each change is made N times; the median is reported (default 5)
  --postgres    on PostgreSQL (--pg-url, default postgres://postgres@127.0.0.1:5432/test) in a fresh schema, else SQLite
  --dist DIR    the server build to run (default: this checkout's dist/, built by npm run build)
`);
  process.exit(0);
}
const N = Number(opts.members);
const ONLINE = Number(opts.online);
const REPS = Number(opts.reps);
if (!(N >= 3 && ONLINE >= 1 && ONLINE <= N - 2 && REPS >= 1)) throw new Error('need --members >= 3, 1 <= --online <= members - 2, --reps >= 1');

const dist = path.resolve(opts.dist);
const { defaultConfig } = await import(pathToFileURL(path.join(dist, 'config.js')).href);
const { createServer } = await import(pathToFileURL(path.join(dist, 'server.js')).href);
const dialect = opts.postgres ? 'postgres' : 'sqlite';
console.log(`room events — ${describeMachine(machine())}`);
console.log(`code ${codeVersion(path.join(dist, '..')).commit ?? '?'} (${dist}); ${dialect}; a room of ${N} members, ${ONLINE} online; median of ${REPS}`);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imkit-bench-room-events-'));
const schema = `bench_${Date.now().toString(36)}`;
const server = await createServer(
  defaultConfig({
    dataDir,
    databaseUrl: opts.postgres ? opts['pg-url'] : undefined,
    databaseSchema: opts.postgres ? schema : undefined,
    logLevel: 'warn',
    port: 0,
    host: '127.0.0.1',
    rateLimitPerMinute: 1_000_000,
    maxRoomMembers: Math.max(N, 1000),
  }),
);
const sockets = [];
try {
  const app = server.bootstrap.createdDefault;
  const url = await server.listen();
  const admin = { 'IM-API-KEY': app.apiKey };
  const ok = async (method, p, headers, body) => {
    // A change to a big room may hold the event loop for long on older builds: its answer waits as long.
    const res = await request(url, method, p, { headers, body, timeoutMs: 600_000 });
    if (res.status !== 200) throw new Error(`${method} ${p}: ${res.status} ${res.raw.slice(0, 300)}`);
    return res.body.result;
  };
  const ids = Array.from({ length: N }, (_, i) => `m${String(i).padStart(5, '0')}`);
  for (let i = 0; i < N; i += 1000) await ok('POST', '/admin/clients/list', admin, { data: ids.slice(i, i + 1000).map((id) => ({ _id: id, nickname: `Member ${id}` })) });
  // Tokens for the owner, the members online and the one who leaves and joins again (the last, offline).
  const owner = ids[0];
  const mover = ids[N - 1];
  const tokens = new Map((await createUsers(url, app.apiKey, [...ids.slice(0, ONLINE), mover])).map((u) => [u.user, u.token]));
  const as = (u) => ({ 'IM-CLIENT-KEY': app.clientKey, 'IM-Authorization': tokens.get(u) });
  await ok('POST', '/rooms', admin, { _id: 'big', name: 'big', roomType: 'group', members: ids, owner });
  // A room event carries the room's last message, as it does in a room in use.
  await ok('POST', '/rooms/big/message', as(owner), { messageType: 'text', message: 'hello, everyone' });

  // Sockets of the first ONLINE members (the owner among them), half base64 and half plain as the SDKs differ.
  const ROOM_FRAME = Buffer.from('42["room",');
  let wake = () => {};
  class CountingSocket extends LightSocket {
    rooms = 0;
    onFrame(buf) {
      if (buf.length > ROOM_FRAME.length && buf.compare(ROOM_FRAME, 0, ROOM_FRAME.length, 0, ROOM_FRAME.length) === 0) {
        this.rooms++;
        wake();
        return;
      }
      super.onFrame(buf);
    }
  }
  for (const [i, u] of ids.slice(0, ONLINE).entries()) {
    const s = await new CountingSocket(url).ready;
    sockets.push(s);
    const ack = await new Promise((resolve) => {
      s.emit('conf', { encoding: i % 2 ? 'base64' : 'json' }, () => s.emit('auth2', tokens.get(u), { CLIENT_KEY: app.clientKey, Authorization: tokens.get(u) }, resolve));
    });
    const res = typeof ack === 'string' ? JSON.parse(Buffer.from(ack, 'base64').toString('utf8')) : ack;
    if (res?.RC !== 0) throw new Error(`auth2 ${u}: ${JSON.stringify(res).slice(0, 200)}`);
  }

  const counter = statementCounter(server.store.db);
  // The delivery's per-room queues (a private field at the type level only); empty once every event is delivered.
  const delivery = server.realtime.delivery;
  const idle = async () => {
    while (delivery.queues.size > 0) await new Promise((r) => setTimeout(r, 1));
  };
  // Each socket online must receive one `room` event per change. A server that holds its event loop long enough
  // misses Socket.IO's heartbeats, and a socket it dropped never does: it counts as `missed`.
  const allReceived = (targets) =>
    new Promise((resolve) => {
      const check = () => {
        if (sockets.every((s, i) => s.rooms >= targets[i] || !s.connected)) {
          clearInterval(timer);
          resolve();
        }
      };
      const timer = setInterval(check, 5);
      wake = check;
      check();
    });

  const measure = async (change) => {
    await idle();
    const targets = sockets.map((s) => s.rooms + 1);
    counter.reset();
    const t0 = performance.now();
    await change();
    await allReceived(targets);
    await idle();
    const ms = performance.now() - t0;
    const missed = sockets.filter((s, i) => s.rooms < targets[i]).length;
    return { statements: counter.caused().length, ms, missed, disconnected: sockets.filter((s) => !s.connected).length };
  };

  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const results = { rename: [], leave: [], join: [] };
  // One unmeasured round first: prepared statements, caches and the JIT settle.
  for (let r = 0; r <= REPS; r++) {
    const round = {
      rename: await measure(() => ok('PUT', '/rooms/big', as(owner), { name: `big ${r}` })),
      leave: await measure(() => ok('POST', '/rooms/big/delete/members', as(mover), { members: [mover] })),
      join: await measure(() => ok('POST', '/rooms/big/join', as(mover), {})),
    };
    process.stderr.write(`round ${r}${r === 0 ? ' (warm-up)' : ''}: ${JSON.stringify(round)}\n`);
    if (r === 0) continue;
    for (const k of Object.keys(results)) results[k].push(round[k]);
  }
  console.log('change   SQL statements   ms (median; min-max)   room events missed   sockets dropped');
  const json = {};
  for (const [k, rows] of Object.entries(results)) {
    const st = rows.map((x) => x.statements);
    const ms = rows.map((x) => x.ms);
    const missed = rows.reduce((n, x) => n + x.missed, 0);
    const dropped = Math.max(...rows.map((x) => x.disconnected));
    json[k] = { statements: median(st), ms: Math.round(median(ms) * 10) / 10, missed, dropped };
    console.log(`${k.padEnd(8)} ${String(median(st)).padStart(14)}   ${`${median(ms).toFixed(1)} (${Math.min(...ms).toFixed(1)}-${Math.max(...ms).toFixed(1)})`.padEnd(25)} ${String(missed).padStart(18)}   ${String(dropped).padStart(15)}`);
  }
  console.log(JSON.stringify({ dialect, members: N, online: ONLINE, reps: REPS, ...json }));
} finally {
  for (const s of sockets) s.disconnect();
  closeAgent();
  await server.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  if (opts.postgres) {
    const client = new pg.Client({ connectionString: opts['pg-url'] });
    await client.connect();
    await client.query(`drop schema if exists ${schema} cascade`);
    await client.end();
  }
}
