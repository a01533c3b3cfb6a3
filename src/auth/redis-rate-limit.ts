import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { createClient, defineScript, ErrorReply } from 'redis';
import { EventBudget, MemoryRateLimitStore, type RateDecision, type RateLimitStore } from './rate-limit.js';

/**
 * The sliding window log of one key, atomically: drop what left the window, count, add when there is room.
 * KEYS[1] the log (a sorted set: score = time in ms, member = a unique id); ARGV: now, window ms, limit, and the
 * member to add ('' to count nothing). Answers {allowed 0/1, entries in the window, time that decides resetAt}:
 * when allowed, the oldest entry (now when none); when refused, the entry that must leave before one more fits.
 *
 * Written here rather than taken from a library: rate-limiter-flexible's Redis limiter counts a fixed window
 * (INCRBY + PEXPIRE), which lets about twice the limit through across a window boundary; rolling-rate-limiter
 * reads the whole log on every hit, records refused requests and takes its own clock; sliding-window-rate-limiter
 * needs ioredis. None gives an exact sliding window over node-redis with the caller's clock.
 */
const SLIDING_LOG_SCRIPT = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local size = redis.call('ZCARD', KEYS[1])
if size >= limit then
  local blocking = redis.call('ZRANGE', KEYS[1], size - limit, size - limit, 'WITHSCORES')
  return {0, size, tonumber(blocking[2]) or now}
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  size = size + 1
end
local oldest = now
if size > 0 then oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) end
return {1, size, oldest}
`;

// node-redis sends the script by EVALSHA and, on NOSCRIPT (a restarted or flushed Redis), once by EVAL, which
// loads it again.
const SLIDING_LOG = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: SLIDING_LOG_SCRIPT,
  parseCommand(parser, key: string, now: number, windowMs: number, limit: number, member: string) {
    parser.pushKey(key);
    parser.push(String(now), String(windowMs), String(limit), member);
  },
  transformReply: (reply: unknown) => reply,
});

/** The script's answer, checked: a Redis that answers something else is treated as one that failed. */
function slidingLogReply(reply: unknown): { allowed: boolean; size: number; at: number } {
  if (!Array.isArray(reply) || reply.length !== 3 || !reply.every((n) => typeof n === 'number')) {
    throw new Error('unexpected answer from the rate-limit script');
  }
  const [allowed, size, at] = reply as number[];
  return { allowed: allowed === 1, size: size!, at: at! };
}

export interface RedisRateLimitOptions {
  /** redis[s]://[[user][:password]@]host[:port][/db] */
  url: string;
  /** Prepended to every key (default `imkit:rl:`); nodes sharing limits use the same prefix. */
  prefix?: string;
  /** Live nodes of the cluster: while Redis is unreachable each node allows limit / nodes() on its own. */
  nodes: () => number;
  logger: Logger;
  /** How long one connection attempt may take (default 1000 ms); attempts repeat for as long as Redis is away. */
  connectTimeoutMs?: number;
  /** How long a decision waits for Redis before it is made in memory instead (default 250 ms). */
  commandTimeoutMs?: number;
}

/** After a command failed or timed out on a connection that looks alive, Redis is tried again this much later. */
const RETRY_AFTER_FAILURE_MS = 1000;
/** Commands waiting in the client at once; past this a decision is made in memory at once. */
const MAX_QUEUED_COMMANDS = 1000;

function connectClient(o: { url: string; connectTimeoutMs: number }) {
  return createClient({
    url: o.url,
    scripts: { slidingLog: SLIDING_LOG },
    // A command while disconnected fails at once instead of waiting for the connection (and piling up).
    disableOfflineQueue: true,
    commandsQueueMaxLength: MAX_QUEUED_COMMANDS,
    socket: {
      connectTimeout: o.connectTimeoutMs,
      // Never give up: whatever the cause, try again after at most about a second (the default stops on some).
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) + Math.floor(Math.random() * 100),
    },
  });
}
type Client = ReturnType<typeof connectClient>;

/**
 * Rate limits shared by every node of a cluster through Redis (docs/auth.md, Rate limits in a cluster): the same
 * exact sliding window log as MemoryRateLimitStore, one sorted set per key, decided by one Lua script so that two
 * nodes hitting the same key at once cannot both take the last slot. Time is the `now` the caller passes (its
 * Clock), so node clocks should agree (NTP); a node whose clock is ahead by d keeps its entries d longer.
 *
 * While Redis is unreachable (not connected, or a command fails or takes longer than `commandTimeoutMs`) every
 * decision is made by an in-memory store with the limit divided among the live nodes, so a request never waits on
 * Redis longer than that and never fails because of it; the outage is logged once, and so is its end. The client
 * reconnects by itself, and decisions go back to Redis once it is connected. Requests allowed in memory during an
 * outage are not in Redis afterwards.
 */
export class RedisRateLimitStore implements RateLimitStore {
  private readonly client: Client;
  private readonly fallback = new MemoryRateLimitStore();
  private readonly prefix: string;
  private readonly commandTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  /** Makes member ids unique across nodes and processes; `seq` within this one (two hits in one ms both count). */
  private readonly instance = randomBytes(6).toString('base64url');
  private seq = 0;
  /** Redis is considered away: logged once when this turns true, and once when it turns false again. */
  private outage = false;
  /** While away but connected (a command failed or timed out): one command at a time tries Redis, not before this. */
  private probing = false;
  private retryAt = 0;
  private lastReplyErrorLog = -Infinity;
  private closed = false;

  constructor(private readonly opts: RedisRateLimitOptions) {
    this.prefix = opts.prefix ?? 'imkit:rl:';
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 250;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1000;
    this.client = connectClient({ url: opts.url, connectTimeoutMs: this.connectTimeoutMs });
    // Without a listener an 'error' event would end the process; node-redis emits one per failed attempt.
    this.client.on('error', (err: Error) => this.wentAway(err));
    this.client.on('ready', () => this.cameBack());
    this.client.connect().catch((err: unknown) => {
      if (!this.closed) this.wentAway(err);
    });
  }

  async hit(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision> {
    return this.decide(key, limit, windowMs, now, true);
  }

  async peek(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision> {
    return this.decide(key, limit, windowMs, now, false);
  }

  budget(limit: number, windowMs: number): EventBudget {
    return new EventBudget(limit, windowMs);
  }

  /** Whether decisions go to Redis now (connected, and no failed command since). */
  get shared(): boolean {
    return this.client.isReady && !this.outage;
  }

  /** Resolves true once connected to Redis, false after `timeoutMs` (default: the connect timeout) without. */
  waitUntilConnected(timeoutMs = this.connectTimeoutMs): Promise<boolean> {
    if (this.client.isReady) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(this.client.isReady), timeoutMs);
      this.client.on('ready', onReady);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.client.isOpen) this.client.destroy();
    await this.fallback.close();
  }

  private async decide(key: string, limit: number, windowMs: number, now: number, record: boolean): Promise<RateDecision> {
    if (this.client.isReady && !this.closed && (!this.outage || (!this.probing && performance.now() >= this.retryAt))) {
      const probe = this.outage;
      if (probe) this.probing = true;
      try {
        const member = record ? `${now.toString(36)}.${this.instance}.${(this.seq++).toString(36)}` : '';
        const { allowed, size, at } = slidingLogReply(await this.bounded(this.client.slidingLog(this.prefix + key, now, windowMs, limit, member)));
        if (this.outage) this.cameBack();
        return allowed
          ? { allowed: true, limit, remaining: Math.max(0, limit - size), resetAt: at + windowMs, retryAfter: 0 }
          : { allowed: false, limit, remaining: 0, resetAt: at + windowMs, retryAfter: Math.max(1, Math.ceil((at + windowMs - now) / 1000)) };
      } catch (err) {
        if (err instanceof ErrorReply) {
          // Redis answered, with an error about this command (say a key of another type under the prefix): this
          // decision is made in memory, and the connection stays in use.
          if (performance.now() - this.lastReplyErrorLog > 60_000) {
            this.lastReplyErrorLog = performance.now();
            this.opts.logger.error({ err }, 'rate limit: Redis refused the command; this decision was made on this node alone');
          }
        } else {
          this.retryAt = performance.now() + RETRY_AFTER_FAILURE_MS;
          this.wentAway(err);
        }
      } finally {
        if (probe) this.probing = false;
      }
    }
    return this.local(key, limit, windowMs, now, record);
  }

  /** The decision of this node alone, on its share of the limit. */
  private local(key: string, limit: number, windowMs: number, now: number, record: boolean): Promise<RateDecision> {
    let nodes = 1;
    try {
      const n = Math.floor(this.opts.nodes());
      if (Number.isFinite(n) && n > 1) nodes = n;
    } catch {
      // The count of nodes is unknown: this node takes the whole limit.
    }
    const share = Math.max(1, Math.floor(limit / nodes));
    return record ? this.fallback.hit(key, share, windowMs, now) : this.fallback.peek(key, share, windowMs, now);
  }

  /** The command's answer, or a rejection after `commandTimeoutMs` (the command itself may still complete). */
  private bounded<T>(command: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from Redis within ${this.commandTimeoutMs} ms`)), this.commandTimeoutMs);
    });
    command.catch(() => undefined); // a late failure after the timeout is no unhandled rejection
    return Promise.race([command, timeout]).finally(() => clearTimeout(timer));
  }

  private wentAway(err: unknown): void {
    if (this.outage || this.closed) return;
    this.outage = true;
    this.opts.logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'rate limit: Redis is unreachable; until it returns each node counts on its own, allowing limit / nodes',
    );
  }

  private cameBack(): void {
    this.retryAt = 0;
    if (!this.outage || this.closed) return;
    this.outage = false;
    this.opts.logger.info('rate limit: Redis is reachable again; limits are shared by every node again');
  }
}
