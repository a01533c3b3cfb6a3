import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisRateLimitStore, type RedisRateLimitOptions } from '../src/auth/redis-rate-limit.js';
import { MemoryRateLimitStore, type RateDecision } from '../src/auth/rate-limit.js';
import { defaultConfig } from '../src/config.js';
import { ManualClock } from '../src/lib/clock.js';
import { createServer } from '../src/server.js';
import { DIALECTS, isolatedStore, tempDir } from './helpers.js';

/**
 * The machine's Redis (127.0.0.1:6379 unless IMKIT_TEST_REDIS_URL says otherwise). It is required: a missing Redis
 * fails these tests (in CI and elsewhere) rather than skipping them.
 */
const REDIS_URL = process.env.IMKIT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MINUTE = 60_000;
const T0 = Date.parse('2026-06-01T00:00:00Z');

/** Log lines of the stores, to count what an outage logs. */
function captureLogger(): { logger: pino.Logger; lines: () => string[] } {
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
  return { logger, lines: () => lines };
}

const opened: RedisRateLimitStore[] = [];
const prefixes: string[] = [];

function newPrefix(): string {
  const p = `imkit-test:rl:${randomBytes(6).toString('hex')}:`;
  prefixes.push(p);
  return p;
}

async function newStore(o: Partial<RedisRateLimitOptions> & { prefix: string }, mustConnect = true): Promise<RedisRateLimitStore> {
  const s = new RedisRateLimitStore({ url: REDIS_URL, nodes: () => 1, logger: captureLogger().logger, ...o });
  opened.push(s);
  if (mustConnect) {
    expect(await s.waitUntilConnected(3000), `no Redis at ${o.url ?? REDIS_URL} (set IMKIT_TEST_REDIS_URL)`).toBe(true);
  }
  return s;
}

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

/** A plain client of the machine's Redis, to look at what the stores wrote; fails at once when there is none. */
async function inspector() {
  const c = createClient({ url: REDIS_URL, socket: { reconnectStrategy: false, connectTimeout: 2000 } });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

afterAll(async () => {
  // Nothing of these tests stays in the shared Redis (the keys would expire within a minute anyway).
  const c = await inspector();
  try {
    for (const p of prefixes) for await (const keys of c.scanIterator({ MATCH: `${p}*`, COUNT: 1000 })) if (keys.length) await c.del(keys);
  } finally {
    c.destroy();
  }
});

describe('RedisRateLimitStore', () => {
  it('is an exact sliding window: 1000 allowed in any 60 s, the 1001st refused, one more once the oldest leaves', async () => {
    const s = await newStore({ prefix: newPrefix() });
    const hits = (n: number, now: number) => Promise.all(Array.from({ length: n }, () => s.hit('api:k', 1000, MINUTE, now)));
    // 500 at the same millisecond, sent together: each has its own entry, all count
    const first = await hits(500, T0);
    expect(first.every((d) => d.allowed)).toBe(true);
    expect(Math.min(...first.map((d) => d.remaining))).toBe(500);
    const half = await s.peek('api:k', 1000, MINUTE, T0 + 30_000);
    expect(half).toEqual({ allowed: true, limit: 1000, remaining: 500, resetAt: T0 + MINUTE, retryAfter: 0 });

    // the other 500 one at a time, 30 s later (a sliding window, not a fixed one)
    let last: RateDecision | undefined;
    for (let i = 0; i < 500; i++) last = await s.hit('api:k', 1000, MINUTE, T0 + 30_000);
    expect(last).toEqual({ allowed: true, limit: 1000, remaining: 0, resetAt: T0 + MINUTE, retryAfter: 0 });

    const refused = await s.hit('api:k', 1000, MINUTE, T0 + 30_000);
    expect(refused).toEqual({ allowed: false, limit: 1000, remaining: 0, resetAt: T0 + MINUTE, retryAfter: 30 });
    // refused requests are not counted: still refused 1 ms before the first 500 leave, with 1 s to wait
    expect(await s.hit('api:k', 1000, MINUTE, T0 + MINUTE - 1)).toEqual({ allowed: false, limit: 1000, remaining: 0, resetAt: T0 + MINUTE, retryAfter: 1 });

    // at T0 + 60 s the first 500 left the window: one more is allowed, and 499 after it
    const again = await s.hit('api:k', 1000, MINUTE, T0 + MINUTE);
    expect(again).toEqual({ allowed: true, limit: 1000, remaining: 499, resetAt: T0 + 30_000 + MINUTE, retryAfter: 0 });
  });

  it('two stores (two nodes) share one limit, also when they hit at once', async () => {
    const prefix = newPrefix();
    const a = await newStore({ prefix });
    const b = await newStore({ prefix });
    for (let i = 0; i < 5; i++) {
      expect((await a.hit('tok:x', 10, MINUTE, T0 + i)).allowed).toBe(true);
      expect((await b.hit('tok:x', 10, MINUTE, T0 + i)).allowed).toBe(true);
    }
    expect(await a.hit('tok:x', 10, MINUTE, T0 + 10)).toEqual({ allowed: false, limit: 10, remaining: 0, resetAt: T0 + MINUTE, retryAfter: 60 });
    expect((await b.hit('tok:x', 10, MINUTE, T0 + 10)).allowed).toBe(false);

    // 40 requests at once, half through each node, for a limit of 25: exactly 25 pass
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).hit('tok:y', 25, MINUTE, T0)));
    expect(all.filter((d) => d.allowed)).toHaveLength(25);
    expect(all.filter((d) => d.allowed).map((d) => d.remaining).sort((x, y) => x - y)).toEqual(Array.from({ length: 25 }, (_, i) => i));
  });

  it('peek counts nothing', async () => {
    const s = await newStore({ prefix: newPrefix() });
    expect(await s.peek('op', 2, 1000, T0)).toEqual({ allowed: true, limit: 2, remaining: 2, resetAt: T0 + 1000, retryAfter: 0 });
    for (let i = 0; i < 5; i++) expect((await s.peek('op', 2, 1000, T0)).remaining).toBe(2);
    await s.hit('op', 2, 1000, T0);
    expect((await s.peek('op', 2, 1000, T0 + 1)).remaining).toBe(1);
    expect((await s.hit('op', 2, 1000, T0 + 2)).allowed).toBe(true);
    const full = await s.peek('op', 2, 1000, T0 + 3);
    expect(full).toEqual({ allowed: false, limit: 2, remaining: 0, resetAt: T0 + 1000, retryAfter: 1 });
    expect(await s.peek('op', 2, 1000, T0 + 3)).toEqual(full);
    expect((await s.hit('op', 2, 1000, T0 + 1000)).allowed).toBe(true);
  });

  it('decides as MemoryRateLimitStore does, field by field, for the same sequence', async () => {
    const r = await newStore({ prefix: newPrefix() });
    const m = new MemoryRateLimitStore();
    try {
      // A fixed pseudo-random walk: three keys, limits that change (lowered and raised), hits and peeks, time
      // moving by 0 to 400 ms (several requests in one millisecond, and the window sliding past some of them).
      let seed = 42;
      const rand = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return Math.floor(seed / 2 ** 16) % n;
      };
      let now = T0;
      let refusals = 0;
      for (let i = 0; i < 600; i++) {
        now += [0, 0, 1, 1, 7, 30, 400][rand(7)]!;
        const key = `k${rand(3)}`;
        const limit = [3, 5, 8][rand(3)]!;
        const op = rand(4) === 0 ? 'peek' : 'hit';
        const want = await m[op](key, limit, 1000, now);
        const got = await r[op](key, limit, 1000, now);
        expect(got, `step ${i}: ${op} ${key} limit ${limit} at +${now - T0}`).toEqual(want);
        if (!want.allowed) refusals++;
      }
      expect(refusals).toBeGreaterThan(50); // the walk did reach the limits
    } finally {
      await m.close();
    }
  });

  it('gives each socket its own in-memory event budget', async () => {
    const s = await newStore({ prefix: newPrefix() });
    const one = s.budget(2, 10_000);
    const two = s.budget(2, 10_000);
    expect(one.take(T0)).toEqual({ allowed: true, retryAfter: 0 });
    expect(one.take(T0 + 1)).toEqual({ allowed: true, retryAfter: 0 });
    expect(one.take(T0 + 2)).toEqual({ allowed: false, retryAfter: 10 });
    expect(two.take(T0 + 2).allowed).toBe(true);
    expect(one.take(T0 + 10_000).allowed).toBe(true);
  });
});

/** A private redis-server on a spare port, in its own directory, that a test may kill and start again. */
class PrivateRedis {
  private child: ChildProcess | undefined;
  readonly dir = tempDir('imkit-redis-');
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let output = '';
    child.stdout!.on('data', (d) => (output += String(d)));
    child.stderr!.on('data', (d) => (output += String(d)));
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
      if (await accepts(this.port)) return;
      await sleep(25);
    }
    throw new Error(`redis-server did not start on port ${this.port}: ${output}`);
  }

  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async remove(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

function sparePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error(`gave up waiting until ${what}`);
}

describe('RedisRateLimitStore while Redis is away', () => {
  let redis: PrivateRedis;
  beforeAll(async () => {
    redis = new PrivateRedis(await sparePort());
    await redis.start();
  });
  afterAll(async () => redis?.remove());

  it('falls back to limit / nodes on each node without throwing, logs the outage once, and shares again once Redis is back', async () => {
    const prefix = newPrefix();
    const logA = captureLogger();
    const a = await newStore({ url: redis.url, prefix, nodes: () => 2, logger: logA.logger });
    const b = await newStore({ url: redis.url, prefix, nodes: () => 2 });
    const hitBoth = async (limit: number, now: number) => {
      const out: RateDecision[] = [];
      for (let i = 0; i < 6; i++) {
        out.push(await a.hit('api:k', limit, MINUTE, now));
        out.push(await b.hit('api:k', limit, MINUTE, now));
      }
      return out;
    };
    // shared: 10 allowed in all, whichever node
    let ds = await hitBoth(10, T0);
    expect(ds.filter((d) => d.allowed)).toHaveLength(10);
    expect(ds.every((d) => d.limit === 10)).toBe(true);

    await redis.kill();
    // Each node alone, on half the limit: 5 each, so 10 in all; nothing throws. The first hits may go to the
    // closing connection before the client noticed; they too end in memory.
    ds = await hitBoth(10, T0 + 1);
    expect(ds.filter((d) => d.allowed)).toHaveLength(10);
    expect(ds.every((d) => d.limit === 5)).toBe(true);
    expect(await a.hit('api:k', 10, MINUTE, T0 + 2)).toEqual({ allowed: false, limit: 5, remaining: 0, resetAt: T0 + 1 + MINUTE, retryAfter: 60 });
    expect((await a.peek('api:other', 10, MINUTE, T0 + 2)).limit).toBe(5);
    // many more decisions and reconnect attempts in the outage: one log line
    for (let i = 0; i < 50; i++) await a.hit(`api:n${i}`, 10, MINUTE, T0 + 3);
    await sleep(1500); // the client keeps trying to reconnect meanwhile
    expect(logA.lines().filter((l) => l.includes('Redis is unreachable'))).toHaveLength(1);
    expect(a.shared).toBe(false);

    // Redis back on the same port (empty: it keeps nothing): both nodes count together again
    await redis.start();
    await until('both stores are connected again', () => a.shared && b.shared);
    ds = await hitBoth(10, T0 + 4);
    expect(ds.filter((d) => d.allowed)).toHaveLength(10);
    expect(ds.every((d) => d.limit === 10)).toBe(true);
    expect(logA.lines().filter((l) => l.includes('Redis is reachable again'))).toHaveLength(1);
    expect(logA.lines().filter((l) => l.includes('Redis is unreachable'))).toHaveLength(1);
  }, 30_000);

  it('a Redis that stops answering: decisions are made in memory after the command timeout, then in Redis again', async () => {
    const prefix = newPrefix();
    const log = captureLogger();
    const a = await newStore({ url: redis.url, prefix, nodes: () => 3, logger: log.logger, commandTimeoutMs: 200 });
    expect(await a.hit('tok:t', 9, MINUTE, T0)).toMatchObject({ allowed: true, limit: 9, remaining: 8 });

    redis.signal('SIGSTOP'); // the connection stays open, but nothing answers
    try {
      const stalled = await a.hit('tok:t', 9, MINUTE, T0 + 1);
      expect(stalled).toMatchObject({ allowed: true, limit: 3 }); // 9 / 3 nodes, counted in memory
      expect((await a.hit('tok:t', 9, MINUTE, T0 + 2)).remaining).toBe(1);
      expect((await a.hit('tok:t', 9, MINUTE, T0 + 3)).remaining).toBe(0);
      expect((await a.hit('tok:t', 9, MINUTE, T0 + 4)).allowed).toBe(false);
      expect(a.shared).toBe(false);
      expect(log.lines().filter((l) => l.includes('Redis is unreachable'))).toHaveLength(1);
    } finally {
      redis.signal('SIGCONT');
    }
    // Redis answers again: after the retry delay a decision goes to Redis, which still holds the first hit (and
    // the one sent while it was stopped, which it ran once it woke up).
    await until('decisions are shared again', async () => (await a.peek('tok:t', 9, MINUTE, T0 + 5)).limit === 9);
    expect(a.shared).toBe(true);
    expect(await a.peek('tok:t', 9, MINUTE, T0 + 5)).toMatchObject({ allowed: true, limit: 9, remaining: 7 });
    expect(log.lines().filter((l) => l.includes('Redis is reachable again'))).toHaveLength(1);
  }, 30_000);

  it('a store that starts while Redis is away decides in memory, then in Redis once it comes', async () => {
    const port = await sparePort();
    const late = new PrivateRedis(port);
    try {
      const log = captureLogger();
      const s = await newStore({ url: late.url, prefix: newPrefix(), nodes: () => 4, logger: log.logger }, false);
      expect(await s.hit('fail:1.2.3.4', 60, MINUTE, T0)).toMatchObject({ allowed: true, limit: 15, remaining: 14 });
      await late.start();
      expect(await s.waitUntilConnected(5000)).toBe(true);
      expect(await s.hit('fail:1.2.3.4', 60, MINUTE, T0)).toMatchObject({ allowed: true, limit: 60, remaining: 59 });
    } finally {
      await late.remove();
    }
  }, 30_000);
});

describe.each(DIALECTS)('the guard over RedisRateLimitStore (%s)', (dialect) => {
  it("answers the seed's 429 body and headers, with the counters in Redis", async () => {
    const prefix = newPrefix();
    const rateLimitStore = await newStore({ prefix });
    opened.pop(); // the server closes it
    const store = isolatedStore(dialect);
    const clock = new ManualClock(T0);
    const config = defaultConfig({ ...store, logLevel: 'warn', port: 0, host: '127.0.0.1', rateLimitPerMinute: 3 });
    const server = await createServer(config, { clock, rateLimitStore, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) });
    try {
      const apiKey = server.bootstrap.createdDefault!.apiKey;
      const get = () => server.http.inject({ method: 'GET', url: '/admin/clients?limit=1', headers: { 'IM-API-KEY': apiKey } });
      for (let i = 1; i <= 3; i++) {
        const ok = await get();
        expect(ok.statusCode).toBe(200);
        expect(ok.headers['x-ratelimit-limit']).toBe('3');
        expect(ok.headers['x-ratelimit-remaining']).toBe(String(3 - i));
        clock.advance(10_000);
      }
      const refused = await get();
      expect(refused.statusCode).toBe(429);
      expect(JSON.parse(refused.body)).toEqual({
        RC: 429,
        RM: 'Too many requests, please try again later',
        error: 'RATE_LIMIT_EXCEEDED',
        message: 'Too many requests, please try again later',
        retryAfter: 30,
      });
      expect(refused.headers['retry-after']).toBe('30');
      expect(refused.headers['x-ratelimit-remaining']).toBe('0');

      const c = await inspector();
      try {
        const keys: string[] = [];
        for await (const batch of c.scanIterator({ MATCH: `${prefix}api:*` })) keys.push(...batch);
        expect(keys).toHaveLength(1);
        expect(await c.zCard(keys[0]!)).toBe(3);
      } finally {
        c.destroy();
      }
    } finally {
      await server.close();
      await store.drop();
    }
  });
});
