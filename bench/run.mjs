#!/usr/bin/env node
// imkit-server benchmarks: every scenario against a baseline measured in the same run on the same machine.
// Usage: npm run bench [-- --quick] [-- --json] [-- --postgres] [-- --cluster N] [-- --only fanout,rest,auth,censorship,connections,store,rooms,webhooks,cluster]
// See docs/performance.md for what each scenario measures and the latest figures.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { closeAgent, createRooms, createUsers, request, sendRest } from './lib/api.mjs';
import { Hist } from './lib/hist.mjs';
import { codeVersion, describeMachine, machine } from './lib/machine.mjs';
import { benchCpuMs, cpuMsOf, killAll, machineBusyMs, mainThreadCpuMsOf, mainThreadRunQueueMsOf, rssOf, serviceCpuMs, sleep, startChild } from './lib/proc.mjs';
import { ratioChart } from './lib/svg.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const SCENARIOS = ['fanout', 'rest', 'auth', 'censorship', 'connections', 'store', 'rooms', 'webhooks'];
/** Scenarios that run only when asked for (`cluster`: with --cluster N, or --only cluster). */
const OPT_IN = ['cluster'];

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    postgres: { type: 'boolean', default: false },
    'pg-url': { type: 'string', default: process.env.IMKIT_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
    cluster: { type: 'string' },
    'redis-url': { type: 'string', default: process.env.IMKIT_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
    only: { type: 'string' },
    'log-level': { type: 'string' },
    encoding: { type: 'string', default: 'plain' },
    'fanout-via': { type: 'string', default: 'socket' },
    'fanout-rate': { type: 'string' },
    client: { type: 'string', default: 'light' },
    connections: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(`npm run bench -- [--quick] [--json] [--postgres] [--cluster N] [--only ${[...SCENARIOS, ...OPT_IN].join(',')}]
  --quick            smaller scale, a minute or two (200 sockets in 20 rooms, 2,000 idle connections, 2 webhooks rounds)
  --json             the last line printed is one JSON object with the headline figures
  --postgres         also run REST send, the store and the webhooks scenarios on PostgreSQL (--pg-url, default
                     postgres://postgres@127.0.0.1:5432/test), each in a fresh schema dropped at the end
  --cluster N        also run the cluster scenario (2 to 16 nodes; --only cluster alone: 3): fan-out across N
                     imkit-server nodes on PostgreSQL (--pg-url) and Redis (--redis-url, default
                     redis://127.0.0.1:6379), senders on node 1 and the other members on nodes 2..N, against one
                     node on PostgreSQL in the same run; fresh schemas and Redis prefix, removed at the end
  --log-level L      LOG_LEVEL of the server under test (default: the server's default, info)
  --encoding E       plain (default, as the Vue SDK) or base64 (as the other SDKs) socket payloads
  --fanout-via V     socket (default: chat message events) or rest (POST /rooms/:id/message) for fan-out senders
  --fanout-rate R    fan-out and cluster: one step of the half-rate length at R msg/s on each server after a 2 s warm-up
                     at R/2, no search (with --profile, a profile of that load alone); nothing is written
  --client C         the generators' Socket.IO client: light (default, bench/lib/light-client.mjs: the same protocol,
                     a fraction of the CPU per message) or socket.io (socket.io-client 4.8)
  --connections N    idle sockets for the connections scenario (default 2,000 quick, 10,000 full)
  --no-write         do not write bench/results/
  --profile          write V8 CPU profiles of the servers under test (imkit-server and the bare Socket.IO baseline) (path printed at the end)
Scenarios (--only): fanout (socket fan-out vs bare Socket.IO), rest (REST send vs bare Fastify), auth, censorship,
  connections (memory per idle socket), store, rooms (room events), webhooks (REST send with 0, 1 and 10 webhook
  endpoints subscribed to message.created, local receivers, same run; deliveries drained afterwards),
  cluster (only with --cluster N or --only cluster: cross-node fan-out vs one node, the p99 the Redis hop adds;
  --only cluster writes bench/results/<date>[-quick]-cluster.json)
`);
  process.exit(0);
}
if (!['light', 'socket.io'].includes(opts.client)) throw new Error(`--client: light or socket.io, not ${opts.client}`);
const clientName = opts.client === 'light' ? 'light Socket.IO client' : 'socket.io-client';
const only = new Set(opts.only ? opts.only.split(',').map((s) => s.trim()) : SCENARIOS);
for (const s of only) if (!SCENARIOS.includes(s) && !OPT_IN.includes(s)) throw new Error(`unknown scenario ${s} (known: ${[...SCENARIOS, ...OPT_IN].join(', ')})`);
/** Nodes of the cluster scenario (0: not run). */
const clusterNodes = opts.cluster !== undefined ? Number(opts.cluster) : only.has('cluster') ? 3 : 0;
if (opts.cluster !== undefined && !(Number.isInteger(clusterNodes) && clusterNodes >= 2 && clusterNodes <= 16)) throw new Error(`--cluster: a number of nodes from 2 to 16, not ${opts.cluster}`);
if (clusterNodes && !opts.only) only.add('cluster');
/** Where the cluster scenario's nodes meet (printed without credentials). */
const redisLabel = (() => {
  try {
    const u = new URL(opts['redis-url']);
    return `${u.protocol}//${u.host}`;
  } catch {
    throw new Error('--redis-url: redis://host:port');
  }
})();

const QUICK = {
  fanout: { users: 200, roomSize: 10, sendersPerRoom: 2, stepMs: 700, warmMs: 1000, halfMs: 1200, drainMs: 1500, startRate: 2000, factor: 2, maxRate: 64_000, peakSteps: 1, refine: 1 },
  rest: { users: 20, connections: 32, durationSec: 1, warmSec: 1 },
  auth: { durationSec: 1 },
  censorship: { pairs: 2, runSec: 0.6 },
  connections: { n: 2000, settleMs: 500 },
  store: { durationMs: 300 },
  webhooks: { rounds: 2, users: 20, connections: 32, durationSec: 1, warmSec: 1, drainSec: 8 },
  workers: 2,
  watchdogMs: 240_000,
};
const FULL = {
  fanout: { users: 1000, roomSize: 10, sendersPerRoom: 2, stepMs: 3000, warmMs: 0, halfMs: 10_000, drainMs: 5000, startRate: 1000, factor: 2, maxRate: 128_000, peakSteps: 2, refine: 3 },
  rest: { users: 20, connections: 32, durationSec: 5, warmSec: 3 },
  auth: { durationSec: 3 },
  censorship: { pairs: 3, runSec: 2 },
  connections: { n: 10_000, settleMs: 2000 },
  store: { durationMs: 3000 },
  webhooks: { rounds: 3, users: 20, connections: 32, durationSec: 3, warmSec: 2, drainSec: 30 },
  workers: 2,
  watchdogMs: 30 * 60_000,
};
const P = opts.quick ? QUICK : FULL;
// The cluster scenario sets up two stores and runs two more searches.
if (only.has('cluster')) P.watchdogMs += opts.quick ? 600_000 : 30 * 60_000;
if (opts.connections) P.connections.n = Number(opts.connections);
/** Deliveries must all arrive and p99 stay under this for a rate step to count as kept up. */
const P99_LIMIT_MS = 250;

const M = machine();
const out = (line = '') => process.stdout.write(line + '\n');
const fmt = (n, d = 0) => (n === null || n === undefined || Number.isNaN(n) ? '-' : Number(n).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'imkit-bench-'));
const logs = [];
const profileDir = path.join(os.tmpdir(), `imkit-bench-profiles-${Date.now().toString(36)}`);

/** PostgreSQL schemas and Redis key prefixes made by a running scenario: removed by it, or on the way out. */
const pendingSchemas = new Set();
const pendingRedisPrefixes = new Set();
/** After the children were killed: drop what a scenario left (bounded, so that a dead PostgreSQL cannot hold the exit). */
async function cleanUpPending() {
  const work = Promise.allSettled([...[...pendingSchemas].map((s) => dropSchema(s)), ...[...pendingRedisPrefixes].map((p) => deleteRedisKeys(p))]);
  await Promise.race([work, sleep(10_000)]);
}

const watchdog = setTimeout(() => {
  process.stderr.write(`bench: still running after ${P.watchdogMs / 1000} s; stopping (logs in ${tmpRoot})\n`);
  killAll();
  void cleanUpPending().finally(() => process.exit(1));
}, P.watchdogMs);
watchdog.unref();
process.on('SIGINT', () => {
  killAll();
  void cleanUpPending().finally(() => process.exit(130));
});

function serverEnv(extra = {}) {
  return {
    LOG_LEVEL: opts['log-level'] ?? '',
    IMKIT_RATE_LIMIT: '1000000',
    // Every load generator connects from 127.0.0.1: the per-address socket cap would refuse the idle-connection
    // scenario's thousands of sockets (the total cap, from the open-file limit, still applies).
    IMKIT_MAX_SOCKETS_PER_IP: '0',
    ...extra,
  };
}

/** With --profile, V8 CPU profile flags for a server under test (imkit-server or a baseline). */
let profiles = 0;
function profileArgs(name) {
  // (Node 20 takes --cpu-prof-name literally: no ${pid} in it; a counter keeps two servers of one name apart.)
  return opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${++profiles}.cpuprofile`] : [];
}

async function startImkit(name, env) {
  const dataDir = path.join(tmpRoot, name);
  fs.mkdirSync(dataDir, { recursive: true });
  const logFile = path.join(tmpRoot, `${name}.log`);
  logs.push(logFile);
  const s = await startChild('imkit-server.mjs', { env: { IMKIT_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', ...env }, execArgv: ['--expose-gc', ...profileArgs(name)], logFile });
  return s;
}

async function startWorkers(n, name = 'socket-clients.mjs') {
  return Promise.all(Array.from({ length: n }, () => startChild(name, { execArgv: ['--max-old-space-size=4096'] })));
}

// ------------------------------------------------------------------------------------------ fan-out

/**
 * Rooms of `roomSize` users, the first `sendersPerRoom` of each sending, and each generator process's share of the
 * sockets. With `nodeUrls` (the cluster scenario) each socket says which node it connects to: the senders the first,
 * the other members of each room spread over the rest in turn.
 */
function fanoutPlan(users, nodeUrls) {
  const { roomSize, sendersPerRoom } = P.fanout;
  const rooms = [];
  for (let r = 0; r * roomSize < users.length; r++) rooms.push({ id: `g${r}`, members: users.slice(r * roomSize, (r + 1) * roomSize).map((u) => u.user) });
  // user i -> worker i % W: every room has members (and senders) in every worker.
  const W = P.workers;
  const lists = Array.from({ length: W }, () => []);
  const senders = Array.from({ length: W }, () => []);
  users.forEach((u, i) => {
    const w = i % W;
    const room = `g${Math.floor(i / roomSize)}`;
    const k = i % roomSize;
    if (k < sendersPerRoom) senders[w].push(lists[w].length);
    const entry = { user: u.user, token: u.token, room };
    if (nodeUrls) entry.url = k < sendersPerRoom ? nodeUrls[0] : nodeUrls[1 + ((k - sendersPerRoom) % (nodeUrls.length - 1))];
    lists[w].push(entry);
  });
  return { rooms, lists, senders };
}

async function runStep(ctx, step, rate, durationMs) {
  const { workers, plan, serverPid, via, base, clientKey } = ctx;
  const totalSenders = plan.senders.reduce((a, s) => a + s.length, 0);
  await Promise.all(workers.map((w) => w.call('measureStart', { step, durationMs })));
  const writer0 = ctx.server ? await ctx.server.call('writer') : undefined;
  // Every process of the server under test (the cluster scenario: each node's), the first one first.
  const pids = ctx.serverPids ?? [serverPid];
  const cpu0 = pids.map(cpuMsOf);
  const main0 = pids.map(mainThreadCpuMsOf);
  const queued0 = pids.map(mainThreadRunQueueMsOf);
  const genCpu0 = workers.map((w) => cpuMsOf(w.pid));
  const busy0 = machineBusyMs();
  const t0 = performance.now();
  const sends = await Promise.all(
    workers.map((w, i) =>
      plan.senders[i].length
        ? w.call('send', { rate: (rate * plan.senders[i].length) / totalSenders, durationMs, senders: plan.senders[i], via, restBase: base, clientKey, maxInFlight: 2000 }, durationMs + 30_000)
        : { sent: 0, acked: 0, ackErrors: 0, skipped: 0, unacked: 0 },
    ),
  );
  const wall = performance.now() - t0;
  const cpuEach = pids.map((pid, i) => ((cpuMsOf(pid) - cpu0[i]) / wall) * 100);
  const mainEach = pids.map((pid, i) => ((mainThreadCpuMsOf(pid) - main0[i]) / wall) * 100);
  const queued1 = pids.map(mainThreadRunQueueMsOf);
  const waitedEach = pids.map((_, i) => (queued0[i] !== null && queued1[i] !== null ? Math.round(((queued1[i] - queued0[i]) / wall) * 100) : null));
  const cpu = cpuEach.reduce((a, x) => a + x, 0);
  const mainCpu = mainEach.reduce((a, x) => a + x, 0);
  const genCpu = (workers.reduce((a, w, i) => a + (cpuMsOf(w.pid) - genCpu0[i]), 0) / wall) * 100;
  // Everything else the machine did meanwhile (this orchestrator, and any other process: a busy machine skews results).
  const otherCpu = ((machineBusyMs() - busy0) / wall) * 100 - cpu - genCpu;
  const acked = sends.reduce((a, s) => a + s.acked, 0);
  const writer1 = ctx.server ? await ctx.server.call('writer') : undefined;
  const expected = acked * P.fanout.roomSize;
  // Drain: wait (bounded) for the deliveries of this step still on their way.
  let cols;
  let last = -1;
  let stable = 0;
  const deadline = performance.now() + P.fanout.drainMs;
  for (;;) {
    cols = await Promise.all(workers.map((w) => w.call('collect')));
    const got = cols.reduce((a, c) => a + c.stepDelivered, 0);
    if (got >= expected || performance.now() > deadline) break;
    stable = got === last ? stable + 1 : 0;
    if (stable >= 5) break;
    last = got;
    await sleep(100);
  }
  const hist = new Hist();
  for (const c of cols) hist.merge(c.hist);
  const delivered = cols.reduce((a, c) => a + c.stepDelivered, 0);
  // The light client reads the timestamps from the frames' bytes and checks one frame in 64 in full.
  const undecodable = cols.reduce((a, c) => a + c.undecodable, 0);
  const mismatched = cols.reduce((a, c) => a + (c.mismatched ?? 0), 0);
  if (undecodable || mismatched) throw new Error(`generators: ${undecodable} chat message frames without sentAt/benchStep, ${mismatched} read differently than JSON.parse reads them`);
  const inWindow = cols.reduce((a, c) => a + c.inWindow, 0);
  const lat = hist.summary();
  const ackHist = new Hist();
  for (const x of sends) if (x.ackHist) ackHist.merge(x.ackHist);
  const ack = ackHist.summary();
  const r = {
    targetPerSec: rate,
    sentPerSec: Math.round(acked / (durationMs / 1000)),
    deliveredPerSec: Math.round(inWindow / (durationMs / 1000)),
    completeness: expected ? Math.round((delivered / expected) * 1000) / 1000 : 0,
    p50Ms: lat.p50,
    p99Ms: lat.p99,
    maxMs: lat.max,
    ackP50Ms: ack.p50,
    ackP99Ms: ack.p99,
    ackErrors: sends.reduce((a, s) => a + s.ackErrors, 0),
    skipped: sends.reduce((a, s) => a + s.skipped, 0),
    // With several processes (nodes of a cluster): the sum of them, and `nodes` below for each one.
    serverCpuPct: Math.round(cpu),
    // The event loop's thread alone (the rest: the SQLite writer and checkpoint threads, V8's GC helpers, libuv).
    serverMainThreadCpuPct: Math.round(mainCpu),
    // The share of the step the event loop's thread was runnable but waiting for a core (other threads and
    // processes had both): time its work, and every message's latency, grew by. With several processes, the
    // most any of them waited.
    serverMainThreadRunQueuePct: waitedEach.some((x) => x === null) ? null : Math.max(...waitedEach),
    generatorsCpuPct: Math.round(genCpu),
    otherCpuPct: Math.max(0, Math.round(otherCpu)),
  };
  if (pids.length > 1) r.nodes = pids.map((_, i) => ({ cpuPct: Math.round(cpuEach[i]), mainThreadCpuPct: Math.round(mainEach[i]), waitedPct: waitedEach[i] }));
  if (writer0 && writer1 && writer1.batches > writer0.batches) r.messagesPerBatch = round((writer1.messages - writer0.messages) / (writer1.batches - writer0.batches), 1);
  // On SQLite: the share of batches settled from the writer thread's shared counter at the end of a turn (the rest
  // waited for the thread's message, read in a poll phase).
  const th0 = writer0?.thread;
  const th1 = writer1?.thread;
  if (th0 && th1 && th1.transactions > th0.transactions) r.settledAtTurnEndPct = Math.round((100 * (th1.settledAtTurnEnd - th0.settledAtTurnEnd)) / (th1.transactions - th0.transactions));
  const firstError = sends.flatMap((s) => s.firstError ?? [])[0];
  if (firstError) r.firstError = firstError;
  // Sends due: rate x duration, less what each generator's whole-message rounding leaves out (at ten messages per
  // second split over the generators, a 0.7 s step is due 6 where 7 were asked for: more than 5% short).
  const due = sends.reduce((a, s) => a + s.sent + s.skipped, 0);
  r.keptUp = acked >= 0.95 * Math.min(rate * (durationMs / 1000), due) && r.deliveredPerSec >= 0.9 * r.sentPerSec * P.fanout.roomSize && r.completeness >= 0.99 && (r.p99Ms ?? Infinity) <= P99_LIMIT_MS;
  return r;
}

/**
 * After a step that fell behind: wait (at most `maxMs`, default 5 s) until the backlog of deliveries has stopped
 * arriving. Tells how long it waited, and whether deliveries had stopped (false: the bound was reached).
 */
async function settle(workers, maxMs = 5000) {
  let last = -1;
  const t0 = performance.now();
  const deadline = t0 + maxMs;
  while (performance.now() < deadline) {
    const cols = await Promise.all(workers.map((w) => w.call('collect')));
    const got = cols.reduce((a, c) => a + c.stepDelivered + c.otherDelivered, 0);
    if (got === last) return { ms: performance.now() - t0, quiet: true };
    last = got;
    await sleep(250);
  }
  return { ms: performance.now() - t0, quiet: false };
}

function printStep(label, r) {
  out(
    `  ${label.padEnd(10)} target ${fmt(r.targetPerSec).padStart(7)} msg/s  sent ${fmt(r.sentPerSec).padStart(7)}/s  delivered ${fmt(r.deliveredPerSec).padStart(8)}/s  ` +
      `complete ${(r.completeness * 100).toFixed(1).padStart(5)}%  p50 ${fmt(r.p50Ms, 1).padStart(6)}  p99 ${fmt(r.p99Ms, 1).padStart(7)}  max ${fmt(r.maxMs, 0).padStart(6)} ms  ack p99 ${fmt(r.ackP99Ms, 1).padStart(7)} ms  ` +
      `cpu: server ${String(r.serverCpuPct).padStart(3)}% (${r.nodes ? `nodes ${r.nodes.map((n) => `${n.cpuPct}%`).join(' + ')}, ` : ''}main thread${r.nodes ? 's' : ''} ${String(r.serverMainThreadCpuPct).padStart(3)}%${r.serverMainThreadRunQueuePct !== null ? `, waited ${String(r.serverMainThreadRunQueuePct).padStart(2)}%` : ''}) generators ${String(r.generatorsCpuPct).padStart(3)}% other ${String(r.otherCpuPct).padStart(3)}%${r.messagesPerBatch ? `  ${fmt(r.messagesPerBatch, 1)} msg/batch` : ''}${r.settledAtTurnEndPct !== undefined ? ` (${r.settledAtTurnEndPct}% at turn end)` : ''}${r.keptUp ? '' : '  <- fell behind'}${r.backlogMs !== undefined ? ` (backlog arriving for ${fmt(r.backlogMs)} ms more${r.backlogDrained ? '' : ', still arriving at the bound'})` : ''}${r.firstError ? `  (${r.firstError})` : ''}`,
  );
}

/**
 * Finds a server's fan-out capacity, the same way for imkit-server and for the baseline:
 * 1. the send rate goes up by `factor` while each step keeps up (every send acknowledged, 90% of the deliveries
 *    inside the step, all of them by the end, p99 <= P99_LIMIT_MS);
 * 2. past the first step that fell behind, it goes on up (at most `peakSteps` steps) while the delivered rate still
 *    grows by 5% or more: what a server delivers once overloaded, its peak;
 * 3. then `refine` bisections (geometric) between the highest rate kept up and the lowest that was not.
 * `sustained` is the highest delivered rate of a step that kept up; `peak` the highest of any step. (Stopping at
 * the first failure, as this did before, made the result hang on whether a server happened to pass the x2 step
 * below its limit: runs of nearly the same code measured between 0.45 and 0.93 of the baseline.) Latency is then measured at half
 * of the peak.
 */
async function fanoutAgainst(label, ctx) {
  const F = P.fanout;
  if (opts['fanout-rate']) {
    // One long step at a fixed rate (for --profile): no search, nothing written. A 2 s step at half the rate comes
    // first, not counted: a server's first second (JIT, caches, prepared statements) would weigh on the p99.
    const rate = Number(opts['fanout-rate']);
    await ctx.exclusive(async () => {
      await runStep(ctx, 1, Math.max(1, Math.round(rate / 2)), 2000);
      await settle(ctx.workers, ctx.settleMs);
    });
    const r = await ctx.exclusive(() => runStep(ctx, 2, rate, F.halfMs));
    printStep(label, r);
    return { steps: [r], maxDeliveredPerSec: r.deliveredPerSec, maxSentPerSec: r.sentPerSec, sustainedDeliveredPerSec: r.keptUp ? r.deliveredPerSec : 0, half: r };
  }
  const steps = [];
  let stepNo = 1;
  let lastOk;
  let firstBad;
  // A step that fell behind waits, still holding the machine, until its backlog has been delivered.
  const step = async (rate, durationMs = F.stepMs) => {
    const r = await ctx.exclusive(async () => {
      await sleep(200);
      const x = await runStep(ctx, stepNo++, rate, durationMs);
      if (!x.keptUp) {
        const st = await settle(ctx.workers, ctx.settleMs);
        // With a bound of its own (the cluster scenario), how long the backlog took to stop arriving.
        if (ctx.settleMs) Object.assign(x, { backlogMs: Math.round(st.ms), backlogDrained: st.quiet });
      }
      return x;
    });
    steps.push(r);
    printStep(label, r);
    if (r.keptUp && (!lastOk || rate > lastOk) && (!firstBad || rate < firstBad)) lastOk = rate;
    if (!r.keptUp && (!firstBad || rate < firstBad)) firstBad = rate;
    return r;
  };
  const best = () => Math.max(...steps.map((x) => x.deliveredPerSec));
  // A short run starts with a step that is not counted, so that neither server is measured before its JIT warmed up.
  if (F.warmMs) {
    await ctx.exclusive(async () => {
      await runStep(ctx, stepNo++, F.startRate / 2, F.warmMs);
      await settle(ctx.workers, ctx.settleMs);
    });
  }

  let rate = F.startRate;
  while (rate <= F.maxRate && !(await step(rate)).keptUp) {
    // Behind at the start rate: step down to 70% of what was delivered, until a rate is kept up (at most 3 times).
    if (steps.length > 3) break;
    rate = Math.max(10, Math.round(Math.min(rate / F.factor, (best() / F.roomSize) * 0.7)));
  }
  while (lastOk && !firstBad && lastOk * F.factor <= F.maxRate) await step(lastOk * F.factor);
  // Past the limit: the peak of what is delivered while overloaded.
  for (let k = 0, top = Math.max(...steps.map((x) => x.targetPerSec)); firstBad && k < F.peakSteps && top * F.factor <= F.maxRate; k++) {
    const before = best();
    top *= F.factor;
    const r = await step(top);
    if (r.deliveredPerSec < before * 1.05) break;
  }
  for (let k = 0; k < F.refine && lastOk && firstBad && firstBad / lastOk > 1.05; k++) await step(Math.round(Math.sqrt(lastOk * firstBad)));

  const kept = steps.filter((x) => x.keptUp);
  const peakDeliveredPerSec = best();
  const sustainedDeliveredPerSec = kept.length ? Math.max(...kept.map((x) => x.deliveredPerSec)) : 0;
  // The latency step: at half of this server's own peak, unless the caller sets one rate for two setups (the
  // cluster scenario: half of the single node's peak for both, told through `onPeak` and awaited in `halfRate`).
  ctx.onPeak?.(peakDeliveredPerSec);
  const halfRate = ctx.halfRate ? await ctx.halfRate() : Math.max(1, Math.round(peakDeliveredPerSec / F.roomSize / 2));
  const half = await ctx.exclusive(async () => {
    await sleep(200);
    return runStep(ctx, stepNo++, halfRate, F.halfMs);
  });
  printStep(`${label}-half`, half);
  return {
    steps,
    maxDeliveredPerSec: peakDeliveredPerSec,
    maxSentPerSec: Math.round(peakDeliveredPerSec / F.roomSize),
    sustainedDeliveredPerSec,
    half,
  };
}

async function connectAll(workers, plan, args) {
  const t0 = performance.now();
  const res = await Promise.all(workers.map((w, i) => w.call('connect', { client: opts.client, ...args, list: plan.lists[i] }, 300_000)));
  const failed = res.reduce((a, r) => a + r.failed, 0);
  if (failed) throw new Error(`${failed} sockets failed to connect: ${res.flatMap((r) => r.errors).slice(0, 3).join('; ')}`);
  return { connected: res.reduce((a, r) => a + r.connected, 0), ms: performance.now() - t0 };
}

/**
 * Runs one async function at a time, in the order they were queued: the two servers' searches queue their steps
 * here and so take turns, one step each.
 */
function turns() {
  let last = Promise.resolve();
  return (fn) => {
    const run = last.then(fn);
    last = run.catch(() => {});
    return run;
  };
}

async function scenarioFanout(S, users, template) {
  const F = P.fanout;
  const plan = fanoutPlan(users);
  // One set of generator processes per server: both servers keep their sockets, and their steps alternate.
  const workers = await startWorkers(P.workers);
  const bareWorkers = await startWorkers(P.workers);
  const via = opts['fanout-via'];
  const result = {
    users: users.length,
    rooms: plan.rooms.length,
    roomSize: F.roomSize,
    senders: plan.senders.reduce((a, s) => a + s.length, 0),
    sendVia: via,
    encoding: opts.encoding,
    stepSeconds: F.stepMs / 1000,
    halfSeconds: F.halfMs / 1000,
    generatorProcesses: P.workers,
  };
  try {
    out(`\nFan-out: ${users.length} sockets in ${plan.rooms.length} rooms of ${F.roomSize}, ${result.senders} senders (${via}), ${opts.encoding} payloads, ${clientName}; rate stepped x${F.factor} from ${fmt(F.startRate)} msg/s, ${F.stepMs / 1000} s per step`);
    const c1 = await connectAll(workers, plan, { url: S.info.url, kind: 'imkit', clientKey: S.info.clientKey, encoding: opts.encoding });
    out(`  imkit-server: ${c1.connected} sockets authenticated in ${fmt(c1.ms)} ms`);
    const bare = await startChild('bare-io.mjs', { env: { BENCH_TEMPLATE: JSON.stringify(template), BENCH_ENCODING: opts.encoding }, execArgv: profileArgs('bare-io') });
    try {
      const c2 = await connectAll(bareWorkers, plan, { url: bare.info.url, kind: 'bare', encoding: opts.encoding });
      out(`  bare Socket.IO baseline: ${c2.connected} sockets joined in ${fmt(c2.ms)} ms (senders emit chat message over the socket)`);
      // The two searches take turns step by step, so that a slower or faster spell of the machine (runs on this VM
      // vary by up to 40% in CPU per message within minutes) falls on both servers rather than on one of them.
      const exclusive = turns();
      [result.imkit, result.baseline] = await Promise.all([
        fanoutAgainst('imkit', { server: S, workers, plan, serverPid: S.pid, via, base: S.info.url, clientKey: S.info.clientKey, exclusive }),
        fanoutAgainst('bare', { workers: bareWorkers, plan, serverPid: bare.pid, via: 'socket', exclusive }),
      ]);
    } finally {
      await Promise.all([...workers, ...bareWorkers].map((w) => w.call('close').catch(() => {})));
      await bare.stop();
    }
    result.ratio = round(result.imkit.maxDeliveredPerSec / result.baseline.maxDeliveredPerSec, 3);
    result.sustainedRatio = result.baseline.sustainedDeliveredPerSec ? round(result.imkit.sustainedDeliveredPerSec / result.baseline.sustainedDeliveredPerSec, 3) : null;
    out(
      `  => peak delivered: imkit ${fmt(result.imkit.maxDeliveredPerSec)}/s (${fmt(result.imkit.maxSentPerSec)} msg/s sent), bare ${fmt(result.baseline.maxDeliveredPerSec)}/s: ratio ${result.ratio}; ` +
        `kept up: imkit ${fmt(result.imkit.sustainedDeliveredPerSec)}/s, bare ${fmt(result.baseline.sustainedDeliveredPerSec)}/s: ratio ${result.sustainedRatio ?? '-'}; ` +
        `p99 at half of the peak: imkit ${fmt(result.imkit.half.p99Ms, 1)} ms, bare ${fmt(result.baseline.half.p99Ms, 1)} ms`,
    );
  } finally {
    await Promise.all([...workers, ...bareWorkers].map((w) => w.stop()));
  }
  return result;
}

// ------------------------------------------------------------------------------------------ cluster fan-out

/** A database or Redis URL without its credentials, for printing. */
function hostOf(url) {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '?';
  }
}

/**
 * What the cluster's p99 minus the single node's says: below zero, the hop is lost in the run's noise; when the
 * cluster fell behind at that rate, the difference is a backlog.
 */
function hopText(addedMs, keptUp = true) {
  if (addedMs === null || addedMs === undefined) return 'the Redis hop: not measured';
  if (!keptUp) return `the cluster fell behind at that rate: its ${fmt(addedMs, 1)} ms more is a backlog, not the hop`;
  return addedMs >= 0 ? `the Redis hop adds ${fmt(addedMs, 1)} ms` : `the cluster was ${fmt(-addedMs, 1)} ms faster: the hop's cost is below this run's noise`;
}

/** Until every node's GET /healthz reports Redis up and all the nodes (bounded: 30 s). */
async function waitForCluster(urls) {
  const deadline = performance.now() + 30_000;
  let seen = [];
  for (;;) {
    seen = await Promise.all(urls.map((u) => request(u, 'GET', '/healthz', { timeoutMs: 5_000 }).then((r) => r.body?.result?.cluster, (err) => ({ error: err.message }))));
    if (seen.every((c) => c?.redis === 'up' && c.nodes === urls.length)) return;
    if (performance.now() > deadline) throw new Error(`the ${urls.length} nodes did not all see each other within 30 s (GET /healthz cluster: ${JSON.stringify(seen)}); is Redis up at ${redisLabel}?`);
    await sleep(200);
  }
}

/**
 * Cluster fan-out (issue 18, docs/cluster.md): the fan-out scenario's users and rooms on N imkit-server nodes that
 * share one PostgreSQL schema and one Redis, the senders' sockets on node 1 and the other members' spread over nodes
 * 2..N, so that every message reaches them through Redis (each node relays its committed events to the others and
 * every node delivers to its own sockets). Against one node on PostgreSQL alone (another schema, no Redis), in the
 * same run, with its own sockets and generator processes. Both go through the fan-out scenario's search
 * (`fanoutAgainst`), taking turns step by step; the latency step is at the same rate for both, half of the single
 * node's peak, so that the difference in p99 is what the hop to the other nodes adds.
 */
/** How long each setup of the cluster scenario may wait for a backlog to drain after a step that fell behind. */
const CLUSTER_SETTLE_MS = 20_000;

async function scenarioCluster() {
  const F = P.fanout;
  const N = clusterNodes;
  const via = opts['fanout-via'];
  const stamp = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const singleSchema = `bench_cl_single_${stamp}`;
  const clusterSchema = `bench_cl_nodes_${stamp}`;
  const prefix = `imkit-bench-${stamp}`;
  pendingSchemas.add(singleSchema);
  pendingSchemas.add(clusterSchema);
  pendingRedisPrefixes.add(prefix);
  // Every server serves the same application with the same API key. The client key is made by the server that
  // creates the application on its empty schema (the single node, and the cluster's first node); the cluster's other
  // nodes find the application in the store, so the first node's key is the key of every node.
  const common = serverEnv({
    DATABASE_URL: opts['pg-url'],
    IMKIT_APP_ID: 'bench',
    IMKIT_API_KEY: randomBytes(24).toString('base64url'),
    IMKIT_USER_RATE_LIMIT: '100000',
    IMKIT_SOCKET_EVENT_LIMIT: '100000',
  });
  const nodeEnv = { ...common, IMKIT_DATABASE_SCHEMA: clusterSchema, REDIS_URL: opts['redis-url'], IMKIT_CLUSTER_PREFIX: prefix };
  const senders = F.sendersPerRoom * Math.ceil(F.users / F.roomSize);
  const sameNodeShare = F.sendersPerRoom / F.roomSize;
  out(
    `\nCluster fan-out: ${N} imkit-server nodes on PostgreSQL (${hostOf(opts['pg-url'])}, one fresh schema) and Redis (${redisLabel}, prefix ${prefix}) ` +
      `vs 1 node on PostgreSQL (another fresh schema, no Redis); the fan-out plan: ${F.users} sockets in rooms of ${F.roomSize}, ${senders} senders (${via}), ${opts.encoding} payloads, ${clientName}`,
  );
  out(
    `  cluster: the senders' sockets on node 1, the other members' on nodes 2..${N}: ${Math.round((1 - sameNodeShare) * 100)}% of the deliveries cross nodes ` +
      `(the senders' own copies, ${Math.round(sameNodeShare * 100)}%, are same-node deliveries); single node: every socket on it`,
  );
  const servers = [];
  const workers = [];
  const result = {
    nodes: N,
    redis: redisLabel,
    users: F.users,
    rooms: Math.ceil(F.users / F.roomSize),
    roomSize: F.roomSize,
    senders,
    sendVia: via,
    encoding: opts.encoding,
    crossNodeShare: round(1 - sameNodeShare, 3),
    settleLimitSec: CLUSTER_SETTLE_MS / 1000,
    stepSeconds: F.stepMs / 1000,
    halfSeconds: F.halfMs / 1000,
    generatorProcesses: 2 * P.workers,
  };
  const settled = (list) => {
    const ok = list.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    servers.push(...ok);
    const failed = list.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return ok;
  };
  try {
    const t0 = performance.now();
    // The single node, and the cluster's first node alone (it migrates the schema and creates the application).
    const [single, first] = settled(await Promise.allSettled([startImkit('cluster-single', { ...common, IMKIT_DATABASE_SCHEMA: singleSchema }), startImkit('cluster-node1', nodeEnv)]));
    if (!first.info.appCreated || !first.info.clientKey) throw new Error('cluster node 1 did not create the application on its schema');
    const clientKey = first.info.clientKey;
    const nodes = [first, ...settled(await Promise.allSettled(Array.from({ length: N - 1 }, (_, i) => startImkit(`cluster-node${i + 2}`, nodeEnv))))];
    const urls = nodes.map((n) => n.info.url);
    await waitForCluster(urls);
    out(`  ${N} nodes up, each counting ${N} in GET /healthz, ${fmt(performance.now() - t0)} ms after the first two servers were started`);

    const t1 = performance.now();
    const ids = Array.from({ length: F.users }, (_, i) => `u${i}`);
    const [singleUsers, clusterUsers] = await Promise.all([createUsers(single.info.url, single.info.apiKey, ids), createUsers(urls[0], first.info.apiKey, ids)]);
    const singlePlan = fanoutPlan(singleUsers);
    const clusterPlan = fanoutPlan(clusterUsers, urls);
    await Promise.all([createRooms(single.info.url, single.info.apiKey, singlePlan.rooms), createRooms(urls[0], first.info.apiKey, clusterPlan.rooms)]);
    out(`  set-up: ${F.users} users and ${singlePlan.rooms.length} rooms on each store over the REST API in ${fmt(performance.now() - t1)} ms`);

    // One set of generator processes per setup, as in the fan-out scenario.
    const singleWorkers = await startWorkers(P.workers);
    workers.push(...singleWorkers);
    const clusterWorkers = await startWorkers(P.workers);
    workers.push(...clusterWorkers);
    const c1 = await connectAll(singleWorkers, singlePlan, { url: single.info.url, kind: 'imkit', clientKey: single.info.clientKey, encoding: opts.encoding });
    const c2 = await connectAll(clusterWorkers, clusterPlan, { url: urls[0], kind: 'imkit', clientKey, encoding: opts.encoding });
    // Every socket is where the plan put it (authenticated with node 1's client key on every node).
    const planned = urls.map((u) => clusterPlan.lists.flat().filter((e) => e.url === u).length);
    const held = (await Promise.all(nodes.map((n) => n.call('sockets')))).map((x) => x.engine);
    if (held.some((n, i) => n !== planned[i])) throw new Error(`sockets per node: ${held.join(', ')}, planned ${planned.join(', ')}`);
    result.socketsPerNode = held;
    out(`  single node: ${c1.connected} sockets authenticated in ${fmt(c1.ms)} ms; cluster: ${c2.connected} in ${fmt(c2.ms)} ms, ${held.map((n, i) => `node ${i + 1}: ${n}`).join(', ')}`);

    // The two searches take turns step by step (as in the fan-out scenario); the cluster's latency step waits for
    // the single node's peak, to run at the same rate.
    const exclusive = turns();
    let peakOf;
    let peakFailed;
    const singlePeak = new Promise((resolve, reject) => {
      peakOf = resolve;
      peakFailed = reject;
    });
    singlePeak.catch(() => {});
    // A cluster that fell behind drains its backlog through Redis and the other nodes, which may take longer than the
    // fan-out scenario's 5 s: each setup waits up to CLUSTER_SETTLE_MS after such a step, so that the next step (the
    // latency step above all) does not start with the last one's messages still arriving.
    const settleMs = CLUSTER_SETTLE_MS;
    [result.single, result.cluster] = await Promise.all([
      fanoutAgainst('single', { settleMs, server: single, workers: singleWorkers, plan: singlePlan, serverPid: single.pid, via, base: single.info.url, clientKey: single.info.clientKey, exclusive, onPeak: peakOf }).catch((err) => {
        peakFailed(err);
        throw err;
      }),
      fanoutAgainst('cluster', {
        settleMs,
        server: first,
        workers: clusterWorkers,
        plan: clusterPlan,
        serverPid: first.pid,
        serverPids: nodes.map((n) => n.pid),
        via,
        base: urls[0],
        clientKey,
        exclusive,
        halfRate: async () => Math.max(1, Math.round((await singlePeak) / F.roomSize / 2)),
      }),
    ]);
  } finally {
    await Promise.all(workers.map((w) => w.call('close').catch(() => {})));
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(servers.map((s) => s.stop()));
    const cleanup = await Promise.allSettled([dropSchema(singleSchema), dropSchema(clusterSchema), deleteRedisKeys(prefix)]);
    for (const c of cleanup) if (c.status === 'rejected') out(`  WARNING: clean-up: ${c.reason?.message ?? c.reason}`);
  }
  const { single: one, cluster: many } = result;
  result.ratio = round(many.maxDeliveredPerSec / one.maxDeliveredPerSec, 3);
  result.sustainedRatio = one.sustainedDeliveredPerSec ? round(many.sustainedDeliveredPerSec / one.sustainedDeliveredPerSec, 3) : null;
  result.halfRatePerSec = one.half.targetPerSec;
  result.p50AddedMs = round(many.half.p50Ms - one.half.p50Ms, 1);
  result.p99AddedMs = round(many.half.p99Ms - one.half.p99Ms, 1);
  // CPU of every server process at the shared latency step and at each setup's step of highest delivery.
  const peakStep = (x) => x.steps.reduce((a, b) => (b.deliveredPerSec > a.deliveredPerSec ? b : a));
  result.cpuPct = {
    half: { single: one.half.serverCpuPct, nodes: many.half.nodes?.map((n) => n.cpuPct) ?? null },
    peak: { single: peakStep(one).serverCpuPct, nodes: peakStep(many).nodes?.map((n) => n.cpuPct) ?? null },
  };
  const cpuList = (l) => (l ? l.map((c, i) => `node ${i + 1} ${c}%`).join(', ') : '-');
  out(
    `  => peak delivered: ${N} nodes ${fmt(many.maxDeliveredPerSec)}/s, 1 node ${fmt(one.maxDeliveredPerSec)}/s: ratio ${result.ratio}; ` +
      `kept up: ${N} nodes ${fmt(many.sustainedDeliveredPerSec)}/s, 1 node ${fmt(one.sustainedDeliveredPerSec)}/s: ratio ${result.sustainedRatio ?? '-'}`,
  );
  out(
    `     at ${fmt(result.halfRatePerSec)} msg/s for both (half of the single node's peak): p50 / p99 ${fmt(many.half.p50Ms, 1)} / ${fmt(many.half.p99Ms, 1)} ms across nodes, ` +
      `${fmt(one.half.p50Ms, 1)} / ${fmt(one.half.p99Ms, 1)} ms on one node: ${hopText(result.p99AddedMs, many.half.keptUp)}${many.half.keptUp ? ` at p99 (${fmt(result.p50AddedMs, 1)} ms at p50)` : ''}` +
      `${one.half.keptUp ? '' : '; the single node did NOT keep up at that rate'}`,
  );
  out(`     server CPU at that step: ${cpuList(result.cpuPct.half.nodes)} (single node ${result.cpuPct.half.single}%); at each one's peak: ${cpuList(result.cpuPct.peak.nodes)} (single node ${result.cpuPct.peak.single}%)`);
  out(`     PostgreSQL and Redis count as "other"; on ${M.cores} cores the ${N} nodes, the single node, PostgreSQL, Redis and ${result.generatorProcesses} generator processes share them: the ratio is the hop's cost, not the scaling of more machines`);
  return result;
}

// ------------------------------------------------------------------------------------------ REST send and auth

async function loadRun(gen, args) {
  return gen.call('run', args, (args.durationSec + 60) * 1000);
}

function summarizeLoad(r) {
  return {
    perSec: Math.round(r.perSec),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    requests: r.requests,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    ...(r.non2xx ? { statusCodes: r.statusCodes } : {}),
  };
}

/** One HTTP load generator process shared by the REST, auth and censorship scenarios (stopped at the end). */
let httpGen;
async function httpLoad() {
  httpGen ??= await startChild('http-load.mjs');
  return httpGen;
}

/** Unmeasured load first: the server's throughput still climbs for a few seconds after it starts serving a route. */
async function warmUp(gen, url, variants, seconds) {
  await loadRun(gen, { url, variants, connections: P.rest.connections, durationSec: seconds });
}

async function maxThenHalf(gen, url, variants, R) {
  const max = summarizeLoad(await loadRun(gen, { url, variants, connections: R.connections, durationSec: R.durationSec }));
  await sleep(300);
  const half = summarizeLoad(await gen.call('paced', { url, variants, rate: max.perSec / 2, durationSec: R.durationSec, maxConnections: 64 }, (R.durationSec + 60) * 1000));
  return { max, half };
}

function restVariants(S, users, roomSize, count) {
  // `count` users, two per room: several users in several rooms.
  const picked = [];
  for (let r = 0; picked.length < count; r++) {
    for (let k = 0; k < 2 && picked.length < count; k++) {
      const u = users[r * roomSize + k];
      if (!u) break;
      picked.push({ ...u, room: `g${r}` });
    }
    if (r * roomSize >= users.length) break;
  }
  return picked.map((u) => ({
    method: 'POST',
    path: `/rooms/${u.room}/message`,
    headers: { 'IM-CLIENT-KEY': S.info.clientKey, 'IM-Authorization': u.token },
    body: { messageType: 'text', message: 'hello from the bench' },
  }));
}

async function scenarioRest(S, users, template, label = 'SQLite') {
  const R = P.rest;
  const variants = restVariants(S, users, P.fanout.roomSize, R.users);
  const rooms = new Set(variants.map((v) => v.path)).size;
  out(`\nREST send (${label}): POST /rooms/:id/message, ${variants.length} users in ${rooms} rooms, max: autocannon, ${R.connections} connections; at half of it: evenly paced open loop; ${R.durationSec} s per run after ${R.warmSec} s of warm-up (1 generator process)`);
  const gen = await httpLoad();
  {
    await warmUp(gen, S.info.url, variants, R.warmSec);
    const cpu0 = cpuMsOf(S.pid);
    const t0 = performance.now();
    const imkit = await maxThenHalf(gen, S.info.url, variants, R);
    const cpu = Math.round(((cpuMsOf(S.pid) - cpu0) / (performance.now() - t0)) * 100);
    printLoad(`imkit ${label}`, imkit);
    if (imkit.max.non2xx || imkit.max.errors) out(`  WARNING: ${imkit.max.non2xx} non-2xx, ${imkit.max.errors} errors: ${JSON.stringify(imkit.max.statusCodes ?? {})}`);
    const result = { users: variants.length, rooms, connections: R.connections, durationSec: R.durationSec, imkit: { ...imkit, serverCpuPct: cpu } };
    if (label === 'SQLite') {
      const bare = await startChild('bare-fastify.mjs', { env: { BENCH_TEMPLATE: JSON.stringify(template) } });
      try {
        await warmUp(gen, bare.info.url, variants, R.warmSec / 2);
        result.baseline = await maxThenHalf(gen, bare.info.url, variants, R);
      } finally {
        await bare.stop();
      }
      printLoad('bare Fastify', result.baseline);
      result.ratio = round(result.imkit.max.perSec / result.baseline.max.perSec, 3);
      out(`  => imkit ${fmt(imkit.max.perSec)} persisted msg/s vs bare route ${fmt(result.baseline.max.perSec)} req/s: ratio ${result.ratio}; p99 at half rate ${fmt(imkit.half.p99Ms, 1)} ms`);
    }
    return result;
  }
}

function printLoad(label, { max, half }) {
  out(`  ${label.padEnd(14)} max ${fmt(max.perSec).padStart(7)} req/s (p50 ${fmt(max.p50Ms, 1)} p99 ${fmt(max.p99Ms, 1)} ms)   at half (${fmt(max.perSec / 2)} req/s): p50 ${fmt(half.p50Ms, 1)} p99 ${fmt(half.p99Ms, 1)} max ${fmt(half.maxMs, 0)} ms${max.non2xx ? `  [${max.non2xx} non-2xx]` : ''}`);
}

async function scenarioAuth(S, users) {
  const A = P.auth;
  const conns = P.rest.connections;
  out(`\nAuth: GET /me/pref (client key + token checked, then one small read) vs GET /healthz (public, no credentials), ${A.durationSec} s each`);
  const gen = await httpLoad();
  {
    const me = users.slice(0, 20).map((u) => ({ method: 'GET', path: '/me/pref', headers: { 'IM-CLIENT-KEY': S.info.clientKey, 'IM-Authorization': u.token } }));
    const health = [{ method: 'GET', path: '/healthz', headers: {} }];
    const a = summarizeLoad(await loadRun(gen, { url: S.info.url, variants: me, connections: conns, durationSec: A.durationSec }));
    await sleep(300);
    const b = summarizeLoad(await loadRun(gen, { url: S.info.url, variants: health, connections: conns, durationSec: A.durationSec }));
    const costUs = Math.round(1e6 / a.perSec - 1e6 / b.perSec);
    const ratio = round(a.perSec / b.perSec, 3);
    out(`  GET /me/pref ${fmt(a.perSec)} req/s (p99 ${fmt(a.p99Ms, 1)} ms), GET /healthz ${fmt(b.perSec)} req/s (p99 ${fmt(b.p99Ms, 1)} ms): ratio ${ratio}, about ${costUs} µs of server time per authenticated request`);
    return { route: 'GET /me/pref', me: a, healthz: b, ratio, authCostUs: costUs };
  }
}

// ------------------------------------------------------------------------------------------ censorship

/** `n` distinct keywords, deterministic: 80% lower-case words of 6-12 letters, 20% CJK words of 2-4 characters. */
function keywordList(n) {
  // xorshift32 in 32-bit integer arithmetic (a float LCG loses precision and can cycle forever)
  let seed = 42;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const out = new Set();
  for (let tries = 0; out.size < n; tries++) {
    if (tries > n * 100) throw new Error(`keywordList: only ${out.size} distinct keywords after ${tries} draws`);
    if (rnd() < 0.8) {
      const len = 6 + Math.floor(rnd() * 7);
      out.add(Array.from({ length: len }, () => String.fromCharCode(97 + Math.floor(rnd() * 26))).join(''));
    } else {
      const len = 2 + Math.floor(rnd() * 3);
      out.add(Array.from({ length: len }, () => String.fromCodePoint(0x4e00 + Math.floor(rnd() * 0x5000))).join(''));
    }
  }
  return [...out];
}

/**
 * Censorship with a 10,000-keyword list (mask mode): REST send without, then with the list, back to back on the
 * same server, and the automaton alone (build time, time per message).
 */
async function scenarioCensorship(S, users) {
  const R = P.rest;
  if (!fs.existsSync(path.join(root, 'dist', 'chat', 'censor.js'))) {
    out('\ncensorship: not implemented yet (issue 5)');
    return { implemented: false };
  }
  const keywords = keywordList(10_000);
  const C = P.censorship;
  out(`\nCensorship: REST send without a keyword list and with ${fmt(keywords.length)} keywords (mask mode, POST /config / DELETE /config/censorship), alternated ${C.pairs} times, ${C.runSec} s each; then the automaton alone`);
  const variants = restVariants(S, users, P.fanout.roomSize, R.users);
  const gen = await httpLoad();
  const admin = { 'IM-API-KEY': S.info.apiKey };
  const runs = { without: [], with: [] };
  if (!only.has('rest')) await warmUp(gen, S.info.url, variants, R.warmSec);
  // Alternating cancels the drift of the server's throughput (it moves by +-20% from one second to the next).
  for (let i = 0; i < C.pairs; i++) {
    runs.without.push(summarizeLoad(await loadRun(gen, { url: S.info.url, variants, connections: R.connections, durationSec: C.runSec })));
    const set = await request(S.info.url, 'POST', '/config', { headers: admin, body: { censorship: { keywords, mode: 'mask' } } });
    if (set.status !== 200) throw new Error(`POST /config censorship: ${set.status} ${set.raw.slice(0, 200)}`);
    if (i === 0) {
      // Proof that it is on: a message holding a keyword comes back masked.
      const probe = await sendRest(S.info.url, S.info.clientKey, users[0].token, 'g0', { messageType: 'text', message: `probe ${keywords[0]} probe` });
      if (probe.result.message !== `probe ${'*'.repeat(Array.from(keywords[0]).length)} probe`) {
        throw new Error(`censorship did not mask the probe message: ${JSON.stringify(probe.result.message)}`);
      }
    }
    runs.with.push(summarizeLoad(await loadRun(gen, { url: S.info.url, variants, connections: R.connections, durationSec: C.runSec })));
    const del = await request(S.info.url, 'DELETE', '/config/censorship', { headers: admin });
    if (del.status !== 200) throw new Error(`DELETE /config/censorship: ${del.status} ${del.raw.slice(0, 200)}`);
  }
  const mean = (list) => Math.round(list.reduce((a, r) => a + r.perSec, 0) / list.length);
  const result = { keywords: keywords.length, mode: 'mask', pairs: C.pairs, runSec: C.runSec, withoutPerSec: mean(runs.without), withPerSec: mean(runs.with), runs };
  result.ratio = round(result.withPerSec / result.withoutPerSec, 3);
  result.costUs = Math.round(1e6 / result.withPerSec - 1e6 / result.withoutPerSec);
  out(`  REST send: ${fmt(result.withoutPerSec)} req/s without, ${fmt(result.withPerSec)} req/s with the list (runs: ${runs.without.map((r) => fmt(r.perSec)).join(', ')} / ${runs.with.map((r) => fmt(r.perSec)).join(', ')}): ratio ${result.ratio}, ${result.costUs} µs per message, within noise unless large; the automaton line below is the cost itself`);
  // The automaton alone, in this process: what one message costs it, free of HTTP and storage noise.
  try {
    const { Censor } = await import(path.join(root, 'dist', 'chat', 'censor.js'));
    let t = performance.now();
    const censor = new Censor(keywords);
    const buildMs = performance.now() - t;
    const clean = 'Hi! Are we still meeting at the cafe near the station at 7? 我們七點在車站附近的咖啡店見面嗎？ See you there :)';
    const dirty = `${clean} ${keywords[1]} ${keywords[keywords.length - 1]}`;
    const N = 50_000;
    for (let i = 0; i < 5000; i++) censor.mask(i % 2 ? clean : dirty);
    t = performance.now();
    for (let i = 0; i < N; i++) censor.mask(clean);
    const cleanUs = ((performance.now() - t) * 1000) / N;
    t = performance.now();
    for (let i = 0; i < N; i++) censor.mask(dirty);
    const dirtyUs = ((performance.now() - t) * 1000) / N;
    result.automaton = { buildMs: round(buildMs, 1), maskUsPerMessage: round(cleanUs, 2), maskUsPerMessageWithHits: round(dirtyUs, 2), messageChars: Array.from(clean).length };
    out(`  automaton alone: built in ${fmt(buildMs, 1)} ms; mask() ${fmt(cleanUs, 2)} µs per ${result.automaton.messageChars}-character message without a keyword, ${fmt(dirtyUs, 2)} µs with two`);
  } catch (err) {
    out(`  automaton alone: not measured (${err.message})`);
  }
  return result;
}

// ------------------------------------------------------------------------------------------ webhooks

const median = (list) => {
  const xs = list.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!xs.length) return null;
  const m = xs.length >> 1;
  return xs.length % 2 ? xs[m] : (xs[m - 1] + xs[m]) / 2;
};
const WEBHOOK_CONFIGS = [
  { key: 'none', endpoints: 0, label: 'none' },
  { key: 'one', endpoints: 1, label: '1 endpoint' },
  { key: 'ten', endpoints: 10, label: '10 endpoints' },
];

/**
 * Webhooks (issue 16): REST send (POST /rooms/:id/message, autocannon as in the REST scenario) with no webhook
 * endpoint, with 1 and with 10 endpoints subscribed to message.created, the receivers local node:http servers
 * (bench/children/webhook-receivers.mjs) answering 200 at once. Every measurement gets a fresh server and store
 * (warmed up before its endpoints are added, so that only the measured sends make deliveries), and the
 * configurations take turns round by round (none, 1, 10, none, 1, 10, ...) so that a slow spell of the machine falls
 * on all of them. After the load: how long the dispatcher took to get every delivery to the receivers (bounded).
 */
async function scenarioWebhooks(dialect) {
  const W = P.webhooks;
  const label = dialect === 'sqlite' ? 'SQLite' : 'Postgres';
  out(
    `\nWebhooks (${label}): REST send (POST /rooms/:id/message, ${W.users} users in ${W.users / 2} rooms, autocannon ${W.connections} connections, ${W.durationSec} s per run after ${W.warmSec} s of warm-up) ` +
      `with no endpoint, 1 and 10 endpoints subscribed to message.created (local receivers answering 200 at once); a fresh server per run, configurations alternated over ${W.rounds} rounds; ` +
      `then up to ${W.drainSec} s for the deliveries to arrive`,
  );
  const receivers = await startChild('webhook-receivers.mjs');
  const gen = await httpLoad();
  const runs = Object.fromEntries(WEBHOOK_CONFIGS.map((c) => [c.key, []]));
  try {
    const { urls } = await receivers.call('start', { n: Math.max(...WEBHOOK_CONFIGS.map((c) => c.endpoints)) });
    for (let round = 1; round <= W.rounds; round++) {
      for (const c of WEBHOOK_CONFIGS) {
        const r = await webhookRun(dialect, c, round, urls, receivers, gen);
        runs[c.key].push(r);
        printWebhookRun(round, c, r);
      }
    }
  } finally {
    await httpGen?.stop();
    httpGen = undefined;
    await receivers.call('close').catch(() => {});
    await receivers.stop();
  }
  const result = { dialect, users: W.users, rooms: W.users / 2, connections: W.connections, durationSec: W.durationSec, warmSec: W.warmSec, rounds: W.rounds, drainLimitSec: W.drainSec, configs: {} };
  for (const c of WEBHOOK_CONFIGS) {
    const list = runs[c.key];
    const sum = (k) => list.reduce((a, r) => a + (r[k] ?? 0), 0);
    const s = {
      endpoints: c.endpoints,
      perSec: Math.round(median(list.map((r) => r.perSec))),
      p50Ms: median(list.map((r) => r.p50Ms)),
      p99Ms: median(list.map((r) => r.p99Ms)),
      serverCpuPct: Math.round(median(list.map((r) => r.serverCpuPct))),
      non2xx: sum('non2xx'),
      errors: sum('errors'),
      sent: sum('sent'),
      stored: sum('stored'),
      runs: list,
    };
    if (c.endpoints) {
      Object.assign(s, {
        expectedDeliveries: sum('expected'),
        deliveriesReceived: sum('received'),
        duplicateDeliveries: sum('duplicates'),
        unsignedDeliveries: sum('unsigned'),
        // deliveries received / (messages stored x endpoints), over every run
        deliveredShare: sum('expected') ? round(sum('received') / sum('expected'), 4) : null,
        allDrained: list.every((r) => r.drained),
        // from the end of the load to the last delivery, the slowest run (null: a run did not drain in time)
        drainMs: list.every((r) => r.drained) ? Math.max(...list.map((r) => r.drainMs)) : null,
        receiversCpuPct: Math.round(median(list.map((r) => r.receiversCpuPct))),
        // deliveries per second from the first to the last one received, the median run
        deliveriesPerSec: Math.round(median(list.map((r) => r.deliveriesPerSec))),
      });
    }
    result.configs[c.key] = s;
  }
  const { none, one, ten } = result.configs;
  result.ratioOne = round(one.perSec / none.perSec, 3);
  result.ratioTen = round(ten.perSec / none.perSec, 3);
  // The same, round by round (each against the none run of its own round): how much of the ratio is noise.
  result.roundRatiosOne = runs.one.map((r, i) => round(r.perSec / runs.none[i].perSec, 3));
  result.roundRatiosTen = runs.ten.map((r, i) => round(r.perSec / runs.none[i].perSec, 3));
  out(
    `  => sends/s (median of ${W.rounds}): none ${fmt(none.perSec)}, 1 endpoint ${fmt(one.perSec)} (ratio ${result.ratioOne ?? '-'}; by round ${result.roundRatiosOne.join(', ')}), ` +
      `10 endpoints ${fmt(ten.perSec)} (ratio ${result.ratioTen ?? '-'}; by round ${result.roundRatiosTen.join(', ')})`,
  );
  for (const s of [one, ten]) {
    out(
      `     ${String(s.endpoints).padStart(2)} endpoint${s.endpoints > 1 ? 's' : ' '}: ${fmt(s.deliveriesReceived)} of ${fmt(s.expectedDeliveries)} deliveries received (${fmt((s.deliveredShare ?? 0) * 100, 1)}%) ` +
        `${s.allDrained ? `all drained, at most ${fmt(s.drainMs)} ms after the load` : `NOT all drained within ${W.drainSec} s`}; dispatcher ~${fmt(s.deliveriesPerSec)} deliveries/s` +
        `${s.duplicateDeliveries ? `, ${fmt(s.duplicateDeliveries)} duplicates` : ''}${s.unsignedDeliveries ? `, ${fmt(s.unsignedDeliveries)} without signature headers` : ''}`,
    );
  }
  const bad = WEBHOOK_CONFIGS.filter((c) => result.configs[c.key].non2xx || result.configs[c.key].errors);
  for (const c of bad) out(`  WARNING: ${c.label}: ${result.configs[c.key].non2xx} non-2xx answers, ${result.configs[c.key].errors} errors/timeouts (${JSON.stringify(result.configs[c.key].runs.map((r) => r.statusCodes ?? {}))})`);
  return result;
}

/** One measurement: a fresh server, users and rooms, warm-up, `c.endpoints` endpoints, the load, then the drain. */
async function webhookRun(dialect, c, round, urls, receivers, gen) {
  const W = P.webhooks;
  const schema = dialect === 'postgres' ? `bench_wh_${Date.now().toString(36)}_${c.endpoints}_${round}` : undefined;
  const S = await startImkit(
    `webhooks-${dialect}-${c.key}-${round}`,
    serverEnv({ IMKIT_USER_RATE_LIMIT: '100000', IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', ...(schema ? { DATABASE_URL: opts['pg-url'], IMKIT_DATABASE_SCHEMA: schema } : {}) }),
  );
  try {
    const users = await createUsers(S.info.url, S.info.apiKey, Array.from({ length: W.users }, (_, i) => `w${i}`));
    const rooms = [];
    for (let r = 0; r * 2 < users.length; r++) rooms.push({ id: `g${r}`, members: users.slice(r * 2, r * 2 + 2).map((u) => u.user) });
    await createRooms(S.info.url, S.info.apiKey, rooms);
    const variants = restVariants(S, users, 2, W.users);
    // Warm-up before any endpoint exists: its messages make no deliveries.
    await loadRun(gen, { url: S.info.url, variants, connections: W.connections, durationSec: W.warmSec });
    await sleep(300);
    for (const url of urls.slice(0, c.endpoints)) {
      const res = await request(S.info.url, 'POST', '/admin/webhooks', { headers: { 'IM-API-KEY': S.info.apiKey }, body: { url, events: ['message.created'] } });
      if (res.status !== 200 || res.body?.RC !== 0 || !res.body?.result?.id) throw new Error(`POST /admin/webhooks ${url}: ${res.status} ${res.raw.slice(0, 300)}`);
    }
    await receivers.call('reset');
    const stored0 = (await S.call('writer')).messages;
    const cpu0 = cpuMsOf(S.pid);
    const rcpu0 = cpuMsOf(receivers.pid);
    const t0 = performance.now();
    const load = summarizeLoad(await loadRun(gen, { url: S.info.url, variants, connections: W.connections, durationSec: W.durationSec }));
    const loadEndAt = performance.timeOrigin + performance.now();
    const wall = performance.now() - t0;
    const r = {
      round,
      endpoints: c.endpoints,
      ...load,
      sent: load.requests - load.non2xx,
      serverCpuPct: Math.round(((cpuMsOf(S.pid) - cpu0) / wall) * 100),
    };
    if (c.endpoints) r.receiversCpuPct = Math.round(((cpuMsOf(receivers.pid) - rcpu0) / wall) * 100);
    // The drain: until every stored message has reached every endpoint, or the time is up.
    const deadline = performance.now() + W.drainSec * 1000;
    let counts;
    let stored;
    let lastSeen = -1;
    let stillSince = performance.now();
    for (;;) {
      stored = (await S.call('writer')).messages - stored0;
      if (!c.endpoints) break;
      counts = await receivers.call('counts');
      if (counts.distinct >= stored * c.endpoints || performance.now() > deadline) break;
      if (counts.distinct !== lastSeen) {
        lastSeen = counts.distinct;
        stillSince = performance.now();
      } else if (performance.now() - stillSince > 1000) {
        // Nothing for a second: stop early if the server has nothing left to send (the rest failed or was refused).
        const { backlog } = await S.call('webhooks');
        if (!backlog.events && !Object.values(backlog.byStatus).some((n) => Number(n) > 0)) break;
        stillSince = performance.now();
      }
      await sleep(100);
    }
    r.stored = stored;
    if (c.endpoints) {
      const wh = await S.call('webhooks');
      r.expected = stored * c.endpoints;
      r.received = counts.distinct;
      r.duplicates = counts.requests - counts.distinct;
      r.unsigned = counts.unsigned;
      r.drained = counts.distinct >= r.expected;
      r.drainMs = r.drained && counts.lastAt !== null ? Math.max(0, Math.round(counts.lastAt - loadEndAt)) : null;
      r.deliveriesPerSec = counts.lastAt !== null && counts.lastAt > counts.firstAt ? Math.round(counts.requests / ((counts.lastAt - counts.firstAt) / 1000)) : null;
      r.dispatcher = wh.stats;
      r.backlogAtEnd = wh.backlog;
    }
    return r;
  } finally {
    await S.stop();
    if (schema) await dropSchema(schema);
  }
}

function printWebhookRun(round, c, r) {
  const deliveries = c.endpoints
    ? `  deliveries ${fmt(r.received)}/${fmt(r.expected)}${r.drained ? `, drained ${fmt(r.drainMs)} ms after the load` : `, NOT drained (backlog ${JSON.stringify(r.backlogAtEnd)})`} (~${fmt(r.deliveriesPerSec)}/s; receivers cpu ${r.receiversCpuPct}% during the load)` +
      `${r.dispatcher.retried || r.dispatcher.failed || r.dispatcher.refused ? `  dispatcher ${JSON.stringify(r.dispatcher)}` : ''}${r.duplicates ? `  ${r.duplicates} duplicates` : ''}`
    : '';
  out(
    `  round ${round} ${c.label.padEnd(12)} ${fmt(r.perSec).padStart(6)} sends/s (p50 ${fmt(r.p50Ms, 1)} p99 ${fmt(r.p99Ms, 1)} ms), ${fmt(r.stored)} stored, server cpu ${r.serverCpuPct}%${r.non2xx || r.errors ? `  [${r.non2xx} non-2xx, ${r.errors} errors]` : ''}${deliveries}`,
  );
}

// ------------------------------------------------------------------------------------------ connections

async function scenarioConnections() {
  let n = P.connections.n;
  const W = P.workers;
  const warnings = [];
  if (M.fdLimit && n + 500 > M.fdLimit) {
    const capped = Math.max(100, M.fdLimit - 500);
    warnings.push(`ulimit -n is ${M.fdLimit}: capped at ${capped} connections instead of ${n} (raise it with ulimit -n before npm run bench)`);
    n = capped;
  }
  for (const w of warnings) out(`WARNING: ${w}`);
  out(`\nConnections: ${fmt(n)} idle sockets (websocket, conf + auth2), ${W} client processes, ${clientName}`);
  const S = await startImkit('connections', serverEnv());
  const workers = await startWorkers(W);
  try {
    const t0 = performance.now();
    const users = await createUsers(S.info.url, S.info.apiKey, Array.from({ length: n }, (_, i) => `c${i}`));
    const setupMs = performance.now() - t0;
    const lists = Array.from({ length: W }, () => []);
    users.forEach((u, i) => lists[i % W].push({ ...u, room: `c${Math.floor(i / 10)}` }));
    const plan = { lists };

    const measure = async (server, kind, args) => {
      await server.call('gc');
      await sleep(150);
      const mem0 = await server.call('gc');
      const before = rssOf(server.pid);
      const c = await connectAll(workers, plan, args);
      await sleep(P.connections.settleMs);
      await server.call('gc');
      await sleep(150);
      const mem1 = await server.call('gc');
      const after = rssOf(server.pid);
      const per = (k) => Math.round((mem1[k] - mem0[k]) / c.connected);
      // Then every socket closes: what the server keeps of them afterwards (issue 15: memory must come back).
      await Promise.all(workers.map((w) => w.call('close')));
      await sleep(P.connections.settleMs);
      await server.call('gc');
      await sleep(150);
      const mem2 = await server.call('gc');
      const closed = rssOf(server.pid);
      return {
        heapKeptAfterCloseBytesPerConnection: Math.round((mem2.heapUsed - mem0.heapUsed) / c.connected),
        rssAfterCloseMB: round(closed / 2 ** 20, 1),
        connected: c.connected,
        connectMs: Math.round(c.ms),
        connectsPerSec: Math.round(c.connected / (c.ms / 1000)),
        rssBeforeMB: round(before / 2 ** 20, 1),
        rssAfterMB: round(after / 2 ** 20, 1),
        bytesPerConnection: Math.round((after - before) / c.connected),
        // Where it went, from process.memoryUsage() after a full GC: the JS heap, and ArrayBuffers (socket buffers, typed arrays).
        heapBytesPerConnection: per('heapUsed'),
        arrayBufferBytesPerConnection: per('arrayBuffers'),
      };
    };
    const imkit = await measure(S, 'imkit', { url: S.info.url, kind: 'imkit', clientKey: S.info.clientKey, encoding: 'base64' });
    const count = await S.call('sockets');
    imkit.serverSockets = count.engine;
    out(`  imkit-server: ${fmt(imkit.connected)} authenticated in ${fmt(imkit.connectMs)} ms (${fmt(imkit.connectsPerSec)}/s); RSS ${imkit.rssBeforeMB} -> ${imkit.rssAfterMB} MB = ${fmt(imkit.bytesPerConnection)} bytes per connection (JS heap ${fmt(imkit.heapBytesPerConnection)}, ArrayBuffers ${fmt(imkit.arrayBufferBytesPerConnection)}); users created in ${fmt(setupMs)} ms`);
    out(`    all closed: RSS ${imkit.rssAfterCloseMB} MB, JS heap kept ${fmt(imkit.heapKeptAfterCloseBytesPerConnection)} bytes per closed connection`);
    await S.stop();

    const bare = await startChild('bare-io.mjs', { env: { BENCH_TEMPLATE: '{}' }, execArgv: ['--expose-gc'] });
    let baseline;
    try {
      baseline = await measure(bare, 'bare', { url: bare.info.url, kind: 'bare' });
    } finally {
      await Promise.all(workers.map((w) => w.call('close').catch(() => {})));
      await bare.stop();
    }
    out(`  bare Socket.IO: ${fmt(baseline.connected)} joined in ${fmt(baseline.connectMs)} ms; RSS ${baseline.rssBeforeMB} -> ${baseline.rssAfterMB} MB = ${fmt(baseline.bytesPerConnection)} bytes per connection (JS heap ${fmt(baseline.heapBytesPerConnection)}, ArrayBuffers ${fmt(baseline.arrayBufferBytesPerConnection)})`);
    out(`    all closed: RSS ${baseline.rssAfterCloseMB} MB, JS heap kept ${fmt(baseline.heapKeptAfterCloseBytesPerConnection)} bytes per closed connection`);
    const ratio = round(baseline.bytesPerConnection / imkit.bytesPerConnection, 3);
    out(`  => ${fmt(imkit.bytesPerConnection / 1024, 1)} KB per authenticated socket vs ${fmt(baseline.bytesPerConnection / 1024, 1)} KB bare (baseline/imkit ${ratio})`);
    return { requested: P.connections.n, n, warnings, userSetupMs: Math.round(setupMs), imkit, baseline, ratio };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await S.stop();
  }
}

// ------------------------------------------------------------------------------------------ store

/**
 * Room events (issue 15): a rename, a leave and a join in a room of 1,000 members with 100 online
 * (bench/room-events.mjs, in a process of its own), against the same changes in a room of 100 members with 10 online
 * measured in this run: statements per change must not grow with the room, and the time grows with the sockets
 * online, not with the members.
 */
async function scenarioRooms() {
  out('\nRoom events: rename, leave and join in a room of 1,000 members (100 online) vs 100 members (10 online), SQL statements and ms per change (bench/room-events.mjs)');
  const reps = opts.quick ? '3' : '5';
  const runOne = (members, online) =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, [path.join(here, 'room-events.mjs'), '--members', String(members), '--online', String(online), '--reps', reps], { maxBuffer: 16 * 1024 * 1024, timeout: 300_000 }, (err, stdout) => {
        if (err) return reject(err);
        const last = stdout.trim().split('\n').pop();
        resolve(JSON.parse(last));
      });
    });
  const small = await runOne(100, 10);
  const big = await runOne(1000, 100);
  const changes = ['rename', 'leave', 'join'];
  for (const c of changes) {
    out(`  ${c.padEnd(7)} 1,000 members: ${String(big[c].statements).padStart(3)} statements ${fmt(big[c].ms, 1).padStart(7)} ms   100 members: ${String(small[c].statements).padStart(3)} statements ${fmt(small[c].ms, 1).padStart(7)} ms   missed events ${big[c].missed + small[c].missed}, dropped sockets ${big[c].dropped + small[c].dropped}`);
  }
  const statements = Math.max(...changes.map((c) => big[c].statements));
  const ms = Math.max(...changes.map((c) => big[c].ms));
  const statementRatio = Math.round((statements / Math.max(...changes.map((c) => small[c].statements))) * 100) / 100;
  out(`  => most statements per change at 1,000 members: ${statements} (x${statementRatio} of 100 members); slowest change ${fmt(ms, 1)} ms`);
  return { small, big, statements, ms, statementRatio };
}

async function scenarioStore(dialect) {
  const D = P.store;
  out(`\nStore (${dialect}): services.messages.send / .history in-process (8 concurrent callers, one room, no socket delivery) vs raw ${dialect === 'sqlite' ? 'better-sqlite3' : 'pg'} statements on the same rows, ${D.durationMs / 1000} s each`);
  const child = await startChild('store.mjs');
  try {
    const r = await child.call('run', { dialect, durationMs: D.durationMs, concurrency: 8, databaseUrl: opts['pg-url'], schema: `bench_store_${Date.now().toString(36)}` }, 300_000);
    r.insertRatio = round(r.insert.perSec / r.rawSendTx.perSec, 3);
    r.historyRatio = round(r.history.perSec / r.rawHistory.perSec, 3);
    out(`  insert: ${fmt(r.insert.perSec)} msg/s (p99 ${fmt(r.insert.latency.p99, 1)} ms) vs raw send transaction ${fmt(r.rawSendTx.perSec)}/s (ratio ${r.insertRatio}), raw INSERT alone ${fmt(r.rawInsert.perSec)}/s`);
    out(`  history: ${fmt(r.history.perSec)} pages/s of ${r.pageSize} (p99 ${fmt(r.history.latency.p99, 1)} ms) vs raw SELECT ${fmt(r.rawHistory.perSec)}/s (ratio ${r.historyRatio})`);
    return r;
  } finally {
    await child.stop();
  }
}

// ------------------------------------------------------------------------------------------ main

const round = (v, d) => (Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : null);

async function main() {
  const started = Date.now();
  const date = new Date().toISOString().slice(0, 10);
  const results = { date, startedAt: new Date().toISOString(), mode: opts.quick ? 'quick' : 'full', code: codeVersion(root), machine: M, logLevel: opts['log-level'] ?? 'info (server default)', options: { postgres: opts.postgres, cluster: only.has('cluster') ? clusterNodes : null, ...(only.has('cluster') ? { redis: redisLabel } : {}), encoding: opts.encoding, client: opts.client, fanoutVia: opts['fanout-via'], only: opts.only ?? null }, scenarios: {}, errors: {} };
  out(`imkit-server benchmark (${results.mode}) — ${new Date().toISOString()}`);
  out(`Machine: ${describeMachine(M)}`);
  out(`Every load generator is a separate process on this same machine: it shares the ${M.cores} cores with the server under test.`);
  // How busy the machine is before the bench starts anything (the load average would still count npm run build).
  const b0 = machineBusyMs();
  await sleep(300);
  M.otherCpuPctAtStart = Math.round(((machineBusyMs() - b0) / 300) * 100);
  out(`Other processes used ${M.otherCpuPctAtStart}% CPU (of ${M.cores * 100}%) just before the run${M.otherCpuPctAtStart > 20 ? ': WARNING, the machine is busy, figures will be lower and noisier' : ''}.`);
  out(`Code: commit ${results.code.commit ?? '?'}${results.code.srcFilesChanged ? ` with ${results.code.srcFilesChanged} uncommitted change(s) under src/` : ''}`);
  out(`Server: dist/ (npm run build), LOG_LEVEL ${results.logLevel}, a fresh SQLite store per run in ${tmpRoot}`);

  // The PostgreSQL and Redis servers a scenario works with are part of what it measures, not other load.
  const servicePorts = (name) => {
    const port = (url, dflt) => Number(new URL(url).port || dflt);
    if (name === 'cluster') return [port(opts['pg-url'], 5432), port(opts['redis-url'], 6379)];
    return name.endsWith('Postgres') ? [port(opts['pg-url'], 5432)] : [];
  };
  const run = async (name, fn) => {
    const ports = servicePorts(name);
    const busy0 = machineBusyMs();
    const ours0 = benchCpuMs();
    const services0 = ports.length ? serviceCpuMs(ports) : null;
    const t0 = performance.now();
    try {
      results.scenarios[name] = await fn();
      // CPU that processes other than the bench used meanwhile: on a shared machine the figures above are lower.
      const ms = performance.now() - t0;
      const services1 = services0 === null ? null : serviceCpuMs(ports);
      const services = services1 === null ? 0 : Math.max(0, services1 - services0);
      const other = Math.max(0, Math.round(((machineBusyMs() - busy0 - (benchCpuMs() - ours0) - services) / ms) * 100));
      results.scenarios[name].otherCpuPct = other;
      const servicesNote = services1 === null ? '' : `; the ${ports.length > 1 ? 'PostgreSQL and Redis servers' : 'PostgreSQL server'} it works with used ${Math.round((services / ms) * 100)}%, not counted there`;
      if (services1 !== null) results.scenarios[name].serviceCpuPct = Math.round((services / ms) * 100);
      out(`  (other processes used ${other}% CPU of ${M.cores * 100}% during this scenario${other > 20 ? ': the machine was busy, these figures are low' : ''}${servicesNote})`);
    } catch (err) {
      results.errors[name] = String(err?.message ?? err);
      out(`  ERROR in ${name}: ${err?.stack ?? err}`);
    }
  };

  if (only.has('fanout') || only.has('rest') || only.has('auth') || only.has('censorship')) {
    const S = await startImkit('main', serverEnv({ IMKIT_USER_RATE_LIMIT: '100000', IMKIT_SOCKET_EVENT_LIMIT: '100000' }));
    try {
      const t0 = performance.now();
      const users = await createUsers(S.info.url, S.info.apiKey, Array.from({ length: P.fanout.users }, (_, i) => `u${i}`));
      const plan = fanoutPlan(users);
      await createRooms(S.info.url, S.info.apiKey, plan.rooms);
      out(`Set-up: ${users.length} users and ${plan.rooms.length} rooms over the REST API in ${fmt(performance.now() - t0)} ms (${S.info.store})`);
      const sample = await sendRest(S.info.url, S.info.clientKey, users[0].token, 'g0', { messageType: 'text', message: 'hello from the bench' });
      const { sentAt: _s, benchStep: _b, ...template } = sample.result;
      if (only.has('fanout')) await run('fanout', () => scenarioFanout(S, users, template));
      if (only.has('rest')) await run('rest', () => scenarioRest(S, users, template));
      if (only.has('auth')) await run('auth', () => scenarioAuth(S, users));
      if (only.has('censorship')) await run('censorship', () => scenarioCensorship(S, users));
    } finally {
      await httpGen?.stop();
      httpGen = undefined;
      await S.stop();
    }
  }
  if (only.has('connections')) await run('connections', scenarioConnections);
  if (only.has('store')) await run('store', () => scenarioStore('sqlite'));
  if (only.has('rooms')) await run('rooms', scenarioRooms);
  if (only.has('webhooks')) await run('webhooks', () => scenarioWebhooks('sqlite'));
  if (opts.postgres) {
    if (only.has('rest')) {
      await run('restPostgres', async () => {
        const schema = `bench_rest_${Date.now().toString(36)}`;
        const S = await startImkit('postgres', serverEnv({ DATABASE_URL: opts['pg-url'], IMKIT_DATABASE_SCHEMA: schema, IMKIT_USER_RATE_LIMIT: '100000' }));
        try {
          const users = await createUsers(S.info.url, S.info.apiKey, Array.from({ length: P.rest.users * 5 }, (_, i) => `u${i}`));
          await createRooms(S.info.url, S.info.apiKey, fanoutPlan(users).rooms);
          return await scenarioRest(S, users, null, 'Postgres');
        } finally {
          await httpGen?.stop();
          httpGen = undefined;
          await S.stop();
          await dropSchema(schema);
        }
      });
    }
    if (only.has('store')) await run('storePostgres', () => scenarioStore('postgres'));
    if (only.has('webhooks')) await run('webhooksPostgres', () => scenarioWebhooks('postgres'));
  }
  if (only.has('cluster')) await run('cluster', scenarioCluster);
  const c = results.scenarios.censorship;
  results.censorship = !only.has('censorship')
    ? 'censorship: not run'
    : c?.implemented === false
      ? 'censorship: not implemented yet (issue 5)'
      : c
        ? `censorship: ${fmt(c.keywords)} keywords, REST send ratio ${c.ratio ?? '-'} (${c.costUs ?? '-'} µs per message); automaton ${c.automaton?.maskUsPerMessage ?? '-'} µs per message`
        : 'censorship: failed (see above)';
  results.durationSec = Math.round((Date.now() - started) / 100) / 10;

  const s = results.scenarios;
  results.headline = {
    fanoutRatio: s.fanout?.ratio ?? null,
    fanoutMaxDeliveredPerSec: s.fanout?.imkit.maxDeliveredPerSec ?? null,
    fanoutBaselineDeliveredPerSec: s.fanout?.baseline.maxDeliveredPerSec ?? null,
    fanoutSustainedRatio: s.fanout?.sustainedRatio ?? null,
    fanoutSustainedDeliveredPerSec: s.fanout?.imkit.sustainedDeliveredPerSec ?? null,
    fanoutBaselineSustainedDeliveredPerSec: s.fanout?.baseline.sustainedDeliveredPerSec ?? null,
    fanoutP99Ms: s.fanout?.imkit.half.p99Ms ?? null,
    fanoutBaselineP99Ms: s.fanout?.baseline.half.p99Ms ?? null,
    restSendPerSec: s.rest?.imkit.max.perSec ?? null,
    restSendP99Ms: s.rest?.imkit.half.p99Ms ?? null,
    restBaselinePerSec: s.rest?.baseline?.max.perSec ?? null,
    restRatio: s.rest?.ratio ?? null,
    restSendPostgresPerSec: s.restPostgres?.imkit.max.perSec ?? null,
    restSendPostgresP99Ms: s.restPostgres?.imkit.half.p99Ms ?? null,
    bytesPerConnection: s.connections?.imkit.bytesPerConnection ?? null,
    baselineBytesPerConnection: s.connections?.baseline.bytesPerConnection ?? null,
    connections: s.connections?.imkit.connected ?? null,
    connectMs: s.connections?.imkit.connectMs ?? null,
    authRatio: s.auth?.ratio ?? null,
    authCostUs: s.auth?.authCostUs ?? null,
    storeInsertPerSec: s.store?.insert.perSec ?? null,
    storeInsertRatio: s.store?.insertRatio ?? null,
    storeHistoryPagesPerSec: s.store?.history.perSec ?? null,
    storeHistoryRatio: s.store?.historyRatio ?? null,
    storePostgresInsertPerSec: s.storePostgres?.insert.perSec ?? null,
    censorshipRatio: s.censorship?.ratio ?? null,
    censorshipCostUs: s.censorship?.costUs ?? null,
    censorshipMaskUs: s.censorship?.automaton?.maskUsPerMessage ?? null,
    roomEventStatements: s.rooms?.statements ?? null,
    roomEventStatementRatio: s.rooms?.statementRatio ?? null,
    roomEventMs: s.rooms?.ms ?? null,
    webhooksNoneSendPerSec: s.webhooks?.configs.none.perSec ?? null,
    webhooksOneRatio: s.webhooks?.ratioOne ?? null,
    webhooksTenRatio: s.webhooks?.ratioTen ?? null,
    webhooksTenDeliveredShare: s.webhooks?.configs.ten.deliveredShare ?? null,
    webhooksPostgresOneRatio: s.webhooksPostgres?.ratioOne ?? null,
    webhooksPostgresTenRatio: s.webhooksPostgres?.ratioTen ?? null,
    clusterNodes: s.cluster?.nodes ?? null,
    clusterRatio: s.cluster?.ratio ?? null,
    clusterSustainedRatio: s.cluster?.sustainedRatio ?? null,
    clusterMaxDeliveredPerSec: s.cluster?.cluster.maxDeliveredPerSec ?? null,
    clusterSingleMaxDeliveredPerSec: s.cluster?.single.maxDeliveredPerSec ?? null,
    clusterSustainedDeliveredPerSec: s.cluster?.cluster.sustainedDeliveredPerSec ?? null,
    clusterSingleSustainedDeliveredPerSec: s.cluster?.single.sustainedDeliveredPerSec ?? null,
    clusterHalfRatePerSec: s.cluster?.halfRatePerSec ?? null,
    clusterP50Ms: s.cluster?.cluster.half.p50Ms ?? null,
    clusterP99Ms: s.cluster?.cluster.half.p99Ms ?? null,
    clusterSingleP50Ms: s.cluster?.single.half.p50Ms ?? null,
    clusterSingleP99Ms: s.cluster?.single.half.p99Ms ?? null,
    clusterP99AddedMs: s.cluster?.p99AddedMs ?? null,
    clusterHalfKeptUp: s.cluster?.cluster.half.keptUp ?? null,
    clusterCrossNodeShare: s.cluster?.crossNodeShare ?? null,
  };
  results.targets = targets(results);
  printSummary(results);

  // `--only cluster` (an opt-in scenario, not part of the default run) writes a file of its own.
  const clusterOnly = only.size === 1 && only.has('cluster') && !opts['fanout-rate'];
  if ((opts.only || opts['fanout-rate']) && !clusterOnly && !opts['no-write']) out(`Partial run (${opts.only ? '--only' : '--fanout-rate'}): bench/results/ left as it was.`);
  else if (!opts['no-write']) {
    const dir = path.join(here, 'results');
    fs.mkdirSync(dir, { recursive: true });
    const name = `${date}${opts.quick ? '-quick' : ''}${clusterOnly ? '-cluster' : ''}`;
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(results, null, 1) + '\n');
    fs.writeFileSync(path.join(dir, `${name}.svg`), chart(results, clusterOnly));
    out(`Wrote bench/results/${name}.json and bench/results/${name}.svg`);
  }
  if (opts.profile) out(`CPU profiles of the servers under test: ${profileDir} (open in Chrome DevTools > Performance)`);
  closeAgent();
  fs.rmSync(tmpRoot, { recursive: true, force: true });
  if (opts.json) out(JSON.stringify({ mode: results.mode, date, commit: results.code.commit, machine: `${M.cores} cores ${M.model}, ${M.memoryGB} GB, Node ${M.node}`, ...results.headline, errors: Object.keys(results.errors).length ? results.errors : undefined }));
}

async function dropSchema(schema) {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: opts['pg-url'] });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    pendingSchemas.delete(schema);
  } finally {
    await c.end();
  }
}

/** Deletes the Redis keys under a cluster prefix (the rate limits' logs; they would expire within a minute anyway). */
async function deleteRedisKeys(prefix) {
  const { createClient } = await import('redis');
  const c = createClient({ url: opts['redis-url'], socket: { connectTimeout: 2_000, reconnectStrategy: false } });
  c.on('error', () => {});
  await c.connect();
  try {
    let n = 0;
    for await (const keys of c.scanIterator({ MATCH: `${prefix}:*`, COUNT: 500 })) {
      if (keys.length) n += await c.del(keys);
    }
    pendingRedisPrefixes.delete(prefix);
    return n;
  } finally {
    await c.close().catch(() => c.destroy());
  }
}

/** The targets of issue 6, met or not. */
function targets(r) {
  const h = r.headline;
  const t = [];
  const add = (name, value, ok, target) => t.push({ name, target, value, met: value === null ? null : ok });
  add('fan-out peak delivered vs bare Socket.IO', h.fanoutRatio, h.fanoutRatio >= 0.8, '>= 0.8');
  add('fan-out delivered kept up vs bare Socket.IO', h.fanoutSustainedRatio, h.fanoutSustainedRatio >= 0.8, '>= 0.8');
  add('fan-out p99 at half of peak rate (ms)', h.fanoutP99Ms, h.fanoutP99Ms < 50, '< 50');
  add('REST send on SQLite (persisted msg/s)', h.restSendPerSec, h.restSendPerSec >= 5000, '>= 5,000');
  add('REST send p99 at half of max (ms)', h.restSendP99Ms, h.restSendP99Ms < 20, '< 20');
  if (r.scenarios.restPostgres) add('REST send on Postgres (persisted msg/s)', h.restSendPostgresPerSec, h.restSendPostgresPerSec >= 2500, '>= 2,500');
  const atFull = r.scenarios.connections?.imkit.connected >= 10_000;
  add(`RSS per idle authenticated socket (bytes${atFull ? '' : ', below 10,000 sockets'})`, h.bytesPerConnection, h.bytesPerConnection < 30 * 1024, '< 30 KB at 10,000');
  return t;
}

function printSummary(r) {
  out(`\nSummary (${r.mode}, ${r.durationSec} s) — ${describeMachine(r.machine)}; load generators share the cores`);
  const rows = [['target (issue 6)', 'wanted', 'measured', '']];
  for (const t of r.targets) rows.push([t.name, t.target, t.value === null ? '-' : fmt(t.value, t.value < 100 ? 2 : 0), t.met === null ? 'not measured' : t.met ? 'met' : 'MISSED']);
  const w = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)));
  for (const row of rows) out('  ' + row.map((c, i) => String(c).padEnd(w[i])).join('  '));
  const h = r.headline;
  out(`  ratios vs baselines: fan-out ${h.fanoutRatio ?? '-'} (peak), ${h.fanoutSustainedRatio ?? '-'} (kept up), REST send ${h.restRatio ?? '-'}, GET /me/pref vs /healthz ${h.authRatio ?? '-'}, censorship on/off ${h.censorshipRatio ?? '-'}, store insert ${h.storeInsertRatio ?? '-'}, history ${h.storeHistoryRatio ?? '-'}, memory (bare/imkit) ${r.scenarios.connections?.ratio ?? '-'}, room-event statements 1,000 vs 100 members ${h.roomEventStatementRatio ?? '-'}, REST send with 1 / 10 webhook endpoints vs none ${h.webhooksOneRatio ?? '-'} / ${h.webhooksTenRatio ?? '-'}`);
  out(`  ${r.censorship}`);
  if (r.scenarios.cluster) {
    const c = r.scenarios.cluster;
    out(
      `  cluster (${c.nodes} nodes, senders on node 1, ${fmt(c.crossNodeShare * 100)}% of deliveries cross nodes) vs 1 node, both on PostgreSQL: peak ${h.clusterRatio ?? '-'}, kept up ${h.clusterSustainedRatio ?? '-'}; ` +
        `p99 at ${fmt(h.clusterHalfRatePerSec)} msg/s ${fmt(h.clusterP99Ms, 1)} vs ${fmt(h.clusterSingleP99Ms, 1)} ms: ${hopText(h.clusterP99AddedMs, h.clusterHalfKeptUp)}`,
    );
  }
  for (const [k, v] of Object.entries(r.errors)) out(`  ERROR ${k}: ${v}`);
}

function chart(r, clusterOnly = false) {
  const s = r.scenarios;
  let bars = [
    { label: 'fan-out peak delivered/s vs bare Socket.IO', ratio: s.fanout?.ratio, target: 0.8, note: s.fanout ? `${fmt(s.fanout.imkit.maxDeliveredPerSec)} vs ${fmt(s.fanout.baseline.maxDeliveredPerSec)}/s` : 'not run' },
    { label: 'fan-out kept-up delivered/s vs bare', ratio: s.fanout?.sustainedRatio ?? undefined, target: 0.8, note: s.fanout ? `${fmt(s.fanout.imkit.sustainedDeliveredPerSec)} vs ${fmt(s.fanout.baseline.sustainedDeliveredPerSec)}/s` : 'not run' },
    { label: 'REST send req/s vs bare Fastify', ratio: s.rest?.ratio, note: s.rest ? `${fmt(s.rest.imkit.max.perSec)} vs ${fmt(s.rest.baseline.max.perSec)}/s` : 'not run' },
    { label: 'REST send vs 5,000 msg/s target', ratio: s.rest ? s.rest.imkit.max.perSec / 5000 : undefined, target: 1, note: s.rest ? `${fmt(s.rest.imkit.max.perSec)}/s` : 'not run' },
    { label: 'censorship 10,000 words on/off', ratio: s.censorship?.ratio, note: s.censorship?.withPerSec ? `${fmt(s.censorship.withPerSec)} vs ${fmt(s.censorship.withoutPerSec)}/s` : 'not run' },
    { label: 'GET /me/pref vs GET /healthz', ratio: s.auth?.ratio, note: s.auth ? `${fmt(s.auth.me.perSec)} vs ${fmt(s.auth.healthz.perSec)}/s` : 'not run' },
    { label: 'socket memory: bare / imkit', ratio: s.connections?.ratio, note: s.connections ? `${fmt(s.connections.imkit.bytesPerConnection / 1024, 1)} vs ${fmt(s.connections.baseline.bytesPerConnection / 1024, 1)} KB` : 'not run' },
    { label: 'store insert vs raw SQLite tx', ratio: s.store?.insertRatio, note: s.store ? `${fmt(s.store.insert.perSec)} vs ${fmt(s.store.rawSendTx.perSec)}/s` : 'not run' },
    { label: 'history page vs raw SELECT', ratio: s.store?.historyRatio, note: s.store ? `${fmt(s.store.history.perSec)} vs ${fmt(s.store.rawHistory.perSec)}/s` : 'not run' },
  ];
  if (s.webhooks) {
    const w = s.webhooks.configs;
    bars.push({ label: 'REST send, 1 webhook endpoint vs none', ratio: s.webhooks.ratioOne, note: `${fmt(w.one.perSec)} vs ${fmt(w.none.perSec)}/s` });
    bars.push({ label: 'REST send, 10 webhook endpoints vs none', ratio: s.webhooks.ratioTen, note: `${fmt(w.ten.perSec)} vs ${fmt(w.none.perSec)}/s` });
  }
  if (s.storePostgres) bars.push({ label: 'Postgres insert vs raw pg tx', ratio: s.storePostgres.insertRatio, note: `${fmt(s.storePostgres.insert.perSec)} vs ${fmt(s.storePostgres.rawSendTx.perSec)}/s` });
  const c = s.cluster;
  const clusterBars = c
    ? [
        { label: `cluster fan-out peak, ${c.nodes} nodes vs 1`, ratio: c.ratio, note: `${fmt(c.cluster.maxDeliveredPerSec)} vs ${fmt(c.single.maxDeliveredPerSec)}/s` },
        { label: `cluster fan-out kept up, ${c.nodes} nodes vs 1`, ratio: c.sustainedRatio ?? undefined, note: `${fmt(c.cluster.sustainedDeliveredPerSec)} vs ${fmt(c.single.sustainedDeliveredPerSec)}/s` },
      ]
    : [];
  bars = clusterOnly ? clusterBars : [...bars, ...clusterBars];
  const m = r.machine;
  const lines = clusterOnly ? [] : r.targets.map((t) => ({ text: `${t.met === null ? 'not measured' : t.met ? 'met   ' : 'MISSED'}  ${t.name}: ${t.value === null ? '-' : fmt(t.value, t.value < 100 ? 2 : 0)} (wanted ${t.target})`, met: t.met }));
  if (c) lines.push({ text: `cluster: p99 at ${fmt(c.halfRatePerSec)} msg/s ${fmt(c.cluster.half.p99Ms, 1)} ms across nodes vs ${fmt(c.single.half.p99Ms, 1)} ms on one node (${hopText(c.p99AddedMs, c.cluster.half.keptUp)}); ${fmt(c.crossNodeShare * 100)}% of deliveries cross nodes` });
  if (!clusterOnly) lines.push({ text: r.censorship });
  return ratioChart(
    `imkit-server vs baselines in the same run (${r.mode}, ${r.date}, commit ${r.code.commit ?? '?'}${r.code.srcFilesChanged ? ' + uncommitted changes' : ''})`,
    `${m.cores} cores ${m.model}, ${m.memoryGB} GB, Node ${m.node}; other processes ${m.otherCpuPctAtStart}% CPU at start; load generators share the cores`,
    bars,
    lines,
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${err?.stack ?? err}\n(logs: ${logs.join(', ') || tmpRoot})\n`);
    killAll();
    void cleanUpPending().finally(() => process.exit(1));
  },
);
