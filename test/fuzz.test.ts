import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteDef } from '../src/http/route.js';
import {
  anyJson,
  anyString,
  checkAnswer,
  type Creds,
  type FuzzAnswer,
  type FuzzContext,
  type FuzzRequest,
  type FuzzTarget,
  httpCaseArb,
  type HttpCase,
  nested,
  type Pools,
  rawHttp,
  socketTarget,
} from './fuzz-harness.js';
import { DIALECTS, freePort, isolatedStore, startServerProcess, startTestServer, type TestServer } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

/**
 * The protocol fuzzer (issue #21, docs/operations.md, Fuzzing). The property: no request and no socket event gets a
 * 5xx or crashes the process; the server keeps serving (GET /healthz, a control message sent and read back, a
 * control socket that still receives), and the store stays valid (PRAGMA integrity_check on SQLite, every JSON
 * column parses on both). Sized by FUZZ_RUNS / FUZZ_SOCKET_RUNS / FUZZ_CHILD_RUNS (npm run fuzz sets them), replayed
 * with FUZZ_SEED and FUZZ_PATH.
 */
const env = process.env;
const RUNS = Number(env.FUZZ_RUNS ?? 1500);
const SOCKET_RUNS = Number(env.FUZZ_SOCKET_RUNS ?? Math.ceil(RUNS / 4));
const CHILD_RUNS = Number(env.FUZZ_CHILD_RUNS ?? Math.ceil(RUNS / 5));
// The bounded run of `npm test` (FUZZ_RUNS unset) uses one fixed seed, so CI runs the same cases every time and a
// failure there is a change's, not a new draw's; `npm run fuzz` draws a new seed each run unless given one.
const SEED = env.FUZZ_SEED !== undefined ? Number(env.FUZZ_SEED) : env.FUZZ_RUNS === undefined ? 20261206 : undefined;
const PATH = env.FUZZ_PATH;
/** Only one part when replaying: "http", "socket" or "child" (FUZZ_ONLY). */
const ONLY = env.FUZZ_ONLY;
/** The liveness and store checks run every this many cases, and after the last. */
const CHECK_EVERY = 40;
const budget = (runs: number, msPerCase: number) => 60_000 + runs * msPerCase;

// Settings that would otherwise refuse the fuzzer itself: it sends hundreds of bad credentials a second.
const LIMITS = { authFailuresPerMinute: 10_000_000, rateLimitPerMinute: 10_000_000, userRateLimitPerMinute: 10_000_000, socketEventsPer10s: 10_000_000 };

/** Errors the process reports outside any request: each is a finding. */
const processErrors: string[] = [];
const onRejection = (err: unknown) => processErrors.push(`unhandled rejection: ${String((err as Error)?.stack ?? err)}`);
const onException = (err: unknown) => processErrors.push(`uncaught exception: ${String((err as Error)?.stack ?? err)}`);

function injectTarget(t: TestServer, base: () => string | undefined): FuzzTarget {
  return {
    async send(req: FuzzRequest): Promise<FuzzAnswer> {
      const dup = new Set<string>();
      const headers: Record<string, string> = {};
      let raw = req.raw === true;
      for (const [k, v] of req.headers) {
        const key = k.toLowerCase();
        if (dup.has(key)) raw = true;
        dup.add(key);
        headers[key] = v;
      }
      const url = base();
      if (raw && url) {
        const u = new URL(url);
        return rawHttp(u.hostname, Number(u.port), req);
      }
      const res = await t.server.http.inject({ method: req.method as 'GET', url: req.url, headers, payload: req.body });
      return { status: res.statusCode, headers: res.headers, raw: res.body };
    },
  };
}

async function call(target: FuzzTarget, method: string, url: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; body: any; raw: string }> {
  const h: Array<[string, string]> = Object.entries(headers);
  if (body !== undefined) h.push(['content-type', 'application/json']);
  const a = await target.send({ method, url, headers: h, body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)) });
  let parsed: any;
  try {
    parsed = JSON.parse(a.raw);
  } catch {
    parsed = undefined;
  }
  return { status: a.status, body: parsed, raw: a.raw };
}

async function must(target: FuzzTarget, method: string, url: string, headers: Record<string, string>, body?: unknown): Promise<any> {
  const res = await call(target, method, url, headers, body);
  if (res.status !== 200) throw new Error(`fixture ${method} ${url}: ${res.status} ${res.raw.slice(0, 300)}`);
  return res.body.result;
}

/**
 * The fuzzed application's objects (their ids fill the pools) and a control room the fuzzer never names: ctl-sender
 * posts there and ctl-observer's socket receives.
 */
class Fixture {
  readonly pools: Pools = { users: [], rooms: [], messages: [], files: [], batches: [], webhooks: [], keys: [], tags: ['work', 'home'] };
  readonly creds: Creds;
  observerToken = '';
  private roomSeq = 0;
  private controlSeq = 0;

  constructor(
    readonly target: FuzzTarget,
    apiKey: string,
    clientKey: string,
  ) {
    this.creds = { apiKey, clientKey, token: '', userId: 'fz-a' };
  }

  get admin(): Record<string, string> {
    return { 'IM-API-KEY': this.creds.apiKey };
  }

  async setUp(): Promise<void> {
    const t = this.target;
    for (const u of ['fz-a', 'fz-b', 'fz-c']) {
      const r = await must(t, 'POST', '/admin/clients', this.admin, { _id: u, nickname: u, issueAccessToken: true });
      if (u === 'fz-a') this.creds.token = r.token;
      this.pools.users.push(u);
    }
    await this.newRoom();
    await must(t, 'POST', '/rooms/createAndJoin', { ...this.admin, 'IM-CLIENT-ID': 'fz-a' }, { roomType: 'direct', invitee: 'fz-b' }).then((r) => this.pools.rooms.push(r._id));
    const batch = await must(t, 'POST', '/messages/batch', this.admin, { messageType: 'text', message: 'batch', sender: 'fz-a', paras: [{ room: this.pools.rooms[0] }] });
    this.pools.batches.push(batch.batchID);
    const key = await must(t, 'POST', '/admin/api-keys', this.admin, { name: 'fuzzed' });
    this.pools.keys.push(key.fingerprint);
    const b = 'fixture-boundary';
    const upload = Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="extra"\r\n\r\n{"roomId":"${this.pools.rooms[0]}"}\r\n--${b}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--${b}--\r\n`);
    const up = await t.send({ method: 'POST', url: '/files/chatserver-upload', headers: [['IM-API-KEY', this.creds.apiKey], ['IM-CLIENT-ID', 'fz-a'], ['content-type', `multipart/form-data; boundary=${b}`]], body: upload });
    if (up.status !== 200) throw new Error(`fixture upload: ${up.status} ${up.raw}`);
    this.pools.files.push(JSON.parse(up.raw).result._id);
    for (const u of ['ctl-sender', 'ctl-observer']) {
      const r = await must(t, 'POST', '/admin/clients', this.admin, { _id: u, nickname: u, issueAccessToken: true });
      if (u === 'ctl-observer') this.observerToken = r.token;
    }
    await must(t, 'POST', '/rooms', this.admin, { _id: 'ctl-room', name: 'control', roomType: 'group', members: ['ctl-sender', 'ctl-observer'], owner: 'ctl-sender' });
  }

  /** A group room of the three fuzzed users with a message, as pools.rooms[0]. */
  private async newRoom(): Promise<void> {
    const id = `fz-room-${this.roomSeq++}`;
    await must(this.target, 'POST', '/rooms', this.admin, { _id: id, name: 'fuzzed', roomType: 'group', members: ['fz-a', 'fz-b', 'fz-c'], owner: 'fz-a', roomTags: ['work'] });
    const m = await must(this.target, 'POST', `/rooms/${id}/message`, { 'IM-CLIENT-KEY': this.creds.clientKey, 'IM-Authorization': this.creds.token }, { messageType: 'text', message: 'hello' });
    this.pools.rooms.unshift(id);
    this.pools.messages.unshift(m._id);
  }

  /**
   * Puts back what the fuzzer may legitimately have undone (fz-a's token revoked, the user or room deleted, the room
   * frozen), so that most cases still reach the handlers.
   */
  async repair(): Promise<void> {
    const t = this.target;
    const me = await call(t, 'GET', '/me', { 'IM-CLIENT-KEY': this.creds.clientKey, 'IM-Authorization': this.creds.token });
    if (me.status !== 200) {
      for (const u of this.pools.users.slice(0, 3)) {
        const r = await must(t, 'POST', '/admin/clients', this.admin, { _id: u, nickname: u, issueAccessToken: true });
        if (u === 'fz-a') this.creds.token = r.token;
      }
    }
    const room = await call(t, 'GET', `/rooms/${this.pools.rooms[0]}`, { ...this.admin, 'IM-CLIENT-ID': 'fz-a' });
    if (room.status !== 200 || room.body?.result?.status === 0) {
      for (const u of ['fz-b', 'fz-c']) await must(t, 'POST', '/admin/clients', this.admin, { _id: u, nickname: u });
      await this.newRoom();
    }
  }

  /** The control: a message sent in the control room is read back (and, when given, reaches the observer's socket). */
  async control(observer?: TestClient): Promise<string | undefined> {
    const t = this.target;
    const text = `control ${this.controlSeq++} ${Date.now()}`;
    const health = await call(t, 'GET', '/healthz', {});
    if (health.status !== 200) return `GET /healthz answered ${health.status}`;
    const sent = await call(t, 'POST', '/rooms/ctl-room/message', { ...this.admin, 'IM-CLIENT-ID': 'ctl-sender' }, { messageType: 'text', message: text });
    if (sent.status !== 200) return `the control message was refused: ${sent.status} ${sent.raw.slice(0, 200)}`;
    const read = await call(t, 'GET', '/rooms/ctl-room/messages?limit=5', { ...this.admin, 'IM-CLIENT-ID': 'ctl-observer' });
    if (read.status !== 200 || !read.raw.includes(text)) return `the control message was not read back: ${read.status} ${read.raw.slice(0, 200)}`;
    if (observer) {
      const got = await observer.next('chat message', (p) => p?.message === text, 5000).catch(() => undefined);
      if (!got) return 'the control socket did not receive the control message';
      observer.events.length = 0;
    }
    return undefined;
  }
}

/** What is wrong with the store (undefined when nothing): SQLite's integrity check, and every JSON column parses. */
async function storeProblems(t: TestServer): Promise<string | undefined> {
  const db = t.server.store.db;
  if (t.server.store.dialect === 'sqlite') {
    const rows = (await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db)).rows;
    if (rows.length !== 1 || rows[0]!.integrity_check !== 'ok') return `integrity_check: ${JSON.stringify(rows.slice(0, 5))}`;
  } else {
    const r = (await sql<{ n: number }>`select count(*)::int as n from rooms`.execute(db)).rows;
    if (!(r[0]!.n >= 0)) return 'PostgreSQL did not answer a count';
  }
  const columns: Array<[string, string[]]> = [
    ['users', ['extra']],
    ['rooms', ['extra', 'room_tags']],
    ['messages', ['message', 'fields']],
    ['room_prefs', ['data']],
    ['user_prefs', ['data']],
  ];
  for (const [table, cols] of columns) {
    const rows = (await sql<Record<string, string>>`select ${sql.join(cols.map((c) => sql.ref(c)))} from ${sql.table(table)}`.execute(db)).rows;
    for (const row of rows) {
      for (const c of cols) {
        try {
          JSON.parse(row[c]!);
        } catch {
          return `${table}.${c} holds text that is not JSON: ${String(row[c]).slice(0, 100)}`;
        }
      }
    }
  }
  return undefined;
}

interface RunReport {
  tried: number;
  statuses: Map<number, number>;
  failed: boolean;
}

/**
 * Runs the HTTP property `runs` times against `target`, with the liveness checks every CHECK_EVERY cases. Throws
 * fast-check's report (seed, path, the smallest failing case found) on failure.
 */
async function fuzzHttp(name: string, routes: RouteDef[], ctx: FuzzContext, fx: Fixture, runs: number, extraCheck: () => Promise<string | undefined>): Promise<RunReport> {
  const statuses = new Map<number, number>();
  let n = 0;
  const property = fc.asyncProperty(httpCaseArb(routes, ctx), async (c: HttpCase) => {
    const answer = await fx.target.send(c.request);
    if (env.FUZZ_VERBOSE) console.log(`case ${c.label} -> ${answer.status}`);
    statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    const problem = checkAnswer(c, answer, ctx);
    if (problem) throw new Error(`${c.label}: ${problem}`);
    if (++n % CHECK_EVERY === 0) {
      const after = (await fx.control()) ?? (await extraCheck()) ?? processErrors[0];
      if (after) throw new Error(`after ${c.label}: ${after}`);
      await fx.repair();
    }
  });
  const details = await fc.check(property, { numRuns: runs, seed: SEED, path: PATH, endOnFailure: false, interruptAfterTimeLimit: budget(runs, 100) - 30_000 });
  const tried = details.numRuns;
  console.log(`fuzz ${name}: ${tried} cases (seed ${details.seed}), statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  if (details.failed) {
    throw new Error(`fuzz ${name} failed after ${tried} cases. Replay: npm run fuzz -- --only ${name.split(' ')[0]} --seed ${details.seed} --path ${details.counterexamplePath}\n${String((details.errorInstance as Error)?.stack ?? details.errorInstance).slice(0, 3000)}\n${fc.defaultReportMessage(details)}`);
  }
  const end = (await fx.control()) ?? (await extraCheck()) ?? processErrors[0];
  if (end) throw new Error(`fuzz ${name}: at the end: ${end}`);
  return { tried, statuses, failed: false };
}

/** Socket events: the gateway's client events (and unknown names) with generated argument lists. */
interface SocketCase {
  event: string;
  args: unknown[];
  ack: boolean;
}

function socketCaseArb(fx: Fixture, ctx: FuzzContext): fc.Arbitrary<SocketCase> {
  const room = fc.oneof(fc.nat().map((i) => fx.pools.rooms[i % fx.pools.rooms.length]!), anyString);
  const protoObject = fc.constantFrom('{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '{"room":{"__proto__":null}}').map((s) => JSON.parse(s) as unknown);
  const big = fc.constantFrom(ctx.bodyLimitBytes - 100, ctx.bodyLimitBytes + 10, 70_000).map((n) => 'b'.repeat(n));
  const value = fc.oneof(
    { weight: 6, arbitrary: anyJson },
    { weight: 1, arbitrary: protoObject },
    { weight: 1, arbitrary: fc.constantFrom(ctx.maxJsonDepth - 1, ctx.maxJsonDepth + 1, 500).map(nested) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 32 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: big },
  );
  const message = fc.record(
    {
      room,
      roomId: room,
      messageType: fc.oneof(fc.constantFrom('text', 'image', 'file', 'sticker', 'audio', 'video', 'location'), anyString),
      message: value,
      custom: value,
      replyTo: fc.nat().map((i) => fx.pools.messages[i % fx.pools.messages.length]!),
      mentions: fc.oneof(fc.array(anyString, { maxLength: 3 }), value),
    },
    { requiredKeys: ['room', 'messageType', 'message'] },
  );
  const auth2Headers = fc.oneof(
    fc.constant({ CLIENT_KEY: fx.creds.clientKey, Authorization: fx.creds.token }),
    fc.dictionary(fc.constantFrom('CLIENT_KEY', 'IM-CLIENT-KEY', 'Authorization', 'IM-Authorization', '__proto__', 'constructor'), fc.oneof(anyString, value), { maxKeys: 4 }),
    value,
  );
  const perEvent: Record<string, fc.Arbitrary<unknown[]>> = {
    conf: fc.oneof(fc.tuple(fc.record({ encoding: fc.oneof(fc.constantFrom('base64', 'json', 'plain'), anyString) })), fc.array(value, { maxLength: 3 })),
    auth2: fc.oneof(fc.tuple(fc.oneof(fc.constant(fx.creds.token), anyString, value), auth2Headers), fc.array(value, { maxLength: 3 })),
    auth: fc.oneof(fc.tuple(fc.oneof(fc.constant(fx.creds.token), anyString)), fc.array(value, { maxLength: 3 })),
    'chat message': fc.oneof({ weight: 3, arbitrary: fc.tuple(message) }, { weight: 1, arbitrary: fc.array(value, { maxLength: 3 }) }, { weight: 1, arbitrary: fc.tuple(message, value) }),
    typing: fc.oneof(fc.tuple(room, fc.oneof(anyString, value)), fc.array(value, { maxLength: 3 })),
  };
  const known = Object.entries(perEvent).map(([event, args]) => fc.record({ event: fc.constant(event), args, ack: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }) }));
  const unknown = fc.record({ event: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'message', 'join', 'leave', 'x'.repeat(2000), ''), fc.string({ maxLength: 12 })).filter((e) => !RESERVED.has(e)), args: fc.array(value, { maxLength: 3 }), ack: fc.boolean() });
  return fc.oneof({ weight: 8, arbitrary: fc.oneof(...known) }, { weight: 1, arbitrary: unknown });
}

/** Names socket.io-client refuses to emit. */
const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);
const KNOWN_EVENTS = new Set(['conf', 'auth2', 'auth', 'chat message', 'typing']);

function decodeAck(v: unknown): any {
  if (typeof v === 'string') {
    try {
      return JSON.parse(Buffer.from(v, 'base64').toString('utf8'));
    } catch {
      return v;
    }
  }
  return v;
}

async function fuzzSockets(name: string, base: string, ctx: FuzzContext, fx: Fixture, runs: number, extraCheck: () => Promise<string | undefined>): Promise<void> {
  const observer = await TestClient.connect(base, 'bundle');
  expect((await observer.login(fx.observerToken, fx.creds.clientKey)).RC).toBe(0);
  let client: TestClient | undefined;
  const fresh = async () => {
    client?.close();
    client = await TestClient.connect(base, 'bundle');
    let ack = await client.login(fx.creds.token, fx.creds.clientKey);
    if (ack.RC !== 0) {
      // The HTTP fuzzing before, or an event, may have revoked fz-a's token or deleted the user: put them back.
      await fx.repair();
      ack = await client.login(fx.creds.token, fx.creds.clientKey);
    }
    if (ack.RC !== 0) throw new Error(`the fuzzing socket could not log in: ${JSON.stringify(ack)}`);
  };
  let n = 0;
  let disconnects = 0;
  const acks = new Map<string, number>();
  try {
    await fresh();
    const property = fc.asyncProperty(socketCaseArb(fx, ctx), async (c: SocketCase) => {
      if (!client || client.disconnected) {
        disconnects++;
        await fx.repair();
        await fresh();
      }
      const s = client!;
      const label = `${JSON.stringify(c.event).slice(0, 60)}(${c.args.map((a) => JSON.stringify(a)?.slice(0, 80)).join(', ')})${c.ack ? ' with ack' : ''}`;
      const answer = new Promise<unknown[] | 'disconnected'>((resolve) => {
        const onDisconnect = () => resolve('disconnected');
        s.socket.once('disconnect', onDisconnect);
        const done = (...res: unknown[]) => {
          s.socket.off('disconnect', onDisconnect);
          resolve(res);
        };
        // An unknown event is ignored, with or without an ack: the conf after it says the socket is still served.
        if (c.ack && KNOWN_EVENTS.has(c.event)) s.socket.emit(c.event, ...c.args, done);
        else {
          s.socket.emit(c.event, ...c.args, ...(c.ack ? [() => undefined] : []));
          // Whether the server still serves this socket: a conf after the event is answered (events run in order).
          s.socket.emit('conf', { encoding: 'base64' }, done);
        }
      });
      const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 10_000).unref());
      const got = await Promise.race([answer, timer]);
      if (got === 'timeout') throw new Error(`${label}: no answer within 10 s`);
      if (got !== 'disconnected') {
        const body = decodeAck(got[0]);
        const rc = typeof body === 'object' && body !== null ? (body as { RC?: unknown }).RC : undefined;
        if (c.ack && KNOWN_EVENTS.has(c.event) && typeof rc !== 'number') throw new Error(`${label}: an ack without an RC: ${JSON.stringify(got).slice(0, 300)}`);
        if (typeof rc === 'number' && rc >= 500) throw new Error(`${label}: RC ${rc}: ${JSON.stringify(body).slice(0, 300)}`);
        acks.set(String(rc), (acks.get(String(rc)) ?? 0) + 1);
      }
      // A login event may have logged the socket out or in as someone else: back to the fuzzed user.
      if (c.event === 'auth2' || c.event === 'auth' || c.event === 'conf') await fresh();
      s.events.length = 0;
      if (++n % CHECK_EVERY === 0) {
        const after = (await fx.control(observer)) ?? (await extraCheck()) ?? processErrors[0];
        if (after) throw new Error(`after ${label}: ${after}`);
      }
    });
    const details = await fc.check(property, { numRuns: runs, seed: SEED, path: PATH, endOnFailure: false, interruptAfterTimeLimit: budget(runs, 150) - 30_000 });
    console.log(`fuzz ${name}: ${details.numRuns} cases (seed ${details.seed}), ${disconnects} disconnects, ack RCs ${JSON.stringify(Object.fromEntries(acks))}`);
    if (details.failed) {
      throw new Error(`fuzz ${name} failed after ${details.numRuns} cases. Replay: npm run fuzz -- --only socket --seed ${details.seed} --path ${details.counterexamplePath}\n${String((details.errorInstance as Error)?.stack ?? details.errorInstance).slice(0, 3000)}\n${fc.defaultReportMessage(details)}`);
    }
    const end = (await fx.control(observer)) ?? (await extraCheck()) ?? processErrors[0];
    if (end) throw new Error(`fuzz ${name}: at the end: ${end}`);
  } finally {
    client?.close();
    observer.close();
  }
}

beforeAll(() => {
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
});
afterAll(() => {
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
});

describe.each(DIALECTS)('protocol fuzzing, in process (%s)', (dialect) => {
  let t: TestServer;
  let base: string | undefined;
  let fx: Fixture;
  let ctx: FuzzContext;
  const errorLogs = () => t.logs.filter((l) => /"level":(50|60)/.test(l));
  const extraCheck = async () => (await storeProblems(t)) ?? (errorLogs().length ? `the server logged an error: ${errorLogs()[0]!.slice(0, 4000)}` : undefined);

  beforeAll(async () => {
    t = await startTestServer(dialect, LIMITS);
    // Webhooks the fuzzer registers would be delivered to generated URLs: the dispatcher stays off here (the
    // child-process run keeps it).
    await t.server.dispatcher.stop();
    base = await t.server.listen();
    fx = new Fixture(injectTarget(t, () => base), t.apiKey, t.clientKey);
    await fx.setUp();
    ctx = { pools: fx.pools, creds: fx.creds, maxJsonDepth: t.config.maxJsonDepth, bodyLimitBytes: t.config.bodyLimitBytes };
  });
  afterAll(async () => {
    await t?.close();
  });

  it.runIf(!ONLY || ONLY === 'http')(`HTTP: ${RUNS} generated requests over every route: no 5xx, the server keeps serving, the store stays valid`, { timeout: budget(RUNS, 100) }, async () => {
    const report = await fuzzHttp(`http (${dialect})`, t.server.routes, ctx, fx, RUNS, extraCheck);
    expect(report.tried).toBeGreaterThan(0);
    // The fuzzer reached the handlers, not only the credential check: some answers succeeded, some were refused.
    expect(report.statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect([...report.statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThan(1);
  });

  it.runIf(!ONLY || ONLY === 'socket')(`sockets: ${SOCKET_RUNS} generated client events: answered or ignored, never a crash, other sockets still served`, { timeout: budget(SOCKET_RUNS, 150) }, async () => {
    await fuzzSockets(`socket (${dialect})`, base!, ctx, fx, SOCKET_RUNS, extraCheck);
  });
});

describe.each(DIALECTS)('protocol fuzzing, against dist/main.js (%s)', (dialect) => {
  let child: ChildProcess | undefined;
  let exited: string | undefined;
  const store = isolatedStore(dialect);
  const apiKey = 'fuzz-child-api-key-0123456789abcdef';
  const clientKey = 'fuzz-child-client-key-0123456789abcdef';

  afterAll(async () => {
    child?.kill('SIGKILL');
    await store.drop();
  });

  it.runIf(!ONLY || ONLY === 'child')(`${CHILD_RUNS} generated requests over real sockets: the process neither crashes nor answers 5xx`, { timeout: budget(CHILD_RUNS, 150) }, async () => {
    const port = await freePort();
    child = await startServerProcess(port, {
      IMKIT_DATA_DIR: store.dataDir,
      DATABASE_URL: store.databaseUrl,
      IMKIT_DATABASE_SCHEMA: store.databaseSchema,
      IMKIT_APP_ID: 'fuzz',
      IMKIT_API_KEY: apiKey,
      IMKIT_CLIENT_KEY: clientKey,
      LOG_LEVEL: 'error',
      IMKIT_RATE_LIMIT: '1000000',
      IMKIT_USER_RATE_LIMIT: '1000000',
      IMKIT_AUTH_FAILURE_LIMIT: '1000000',
      IMKIT_SOCKET_EVENT_LIMIT: '1000000',
    });
    child.once('exit', (code, signal) => (exited = `the server process exited (code ${code}, signal ${signal})`));
    const target = socketTarget('127.0.0.1', port);
    const fx = new Fixture(target, apiKey, clientKey);
    await fx.setUp();
    const ctx: FuzzContext = { pools: fx.pools, creds: fx.creds, maxJsonDepth: 32, bodyLimitBytes: 1024 * 1024 };
    // The route table of a server built like the child (same code): only the definitions are used.
    const t = await startTestServer('sqlite');
    const routes = t.server.routes;
    await t.close();
    await fuzzHttp(`child (${dialect})`, routes, ctx, fx, CHILD_RUNS, async () => exited);
    await fuzzSockets(`child sockets (${dialect})`, `http://127.0.0.1:${port}`, ctx, fx, Math.ceil(CHILD_RUNS / 4), async () => exited);
    expect(exited).toBeUndefined();
    child.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
    if (dialect === 'sqlite') {
      const file = fs.readdirSync(store.dataDir).find((f) => f.endsWith('.db') || f.endsWith('.sqlite'));
      expect(file, 'the SQLite file').toBeDefined();
      const db = new Database(path.join(store.dataDir, file!), { readonly: true });
      try {
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      } finally {
        db.close();
      }
    }
  });
});
