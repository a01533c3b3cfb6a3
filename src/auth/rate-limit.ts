/**
 * Rate-limit counters behind one interface: the in-process store below, or the Redis store shared by every node
 * of a cluster (src/auth/redis-rate-limit.ts). Every limit of the server comes from it, the socket event budget
 * included. The limit is a sliding window log: a request is allowed when fewer than `limit` requests were allowed
 * in the last `windowMs`, so the 1001st request inside any 60 seconds is refused, exactly. Refused requests are
 * not recorded (a client that keeps retrying is not locked out for longer).
 */
export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Epoch ms when the oldest counted request leaves the window (one more slot frees up then). */
  resetAt: number;
  /** Whole seconds to wait before a retry can succeed (0 when allowed). */
  retryAfter: number;
}

export interface RateLimitStore {
  /** Counts a request if it is allowed. */
  hit(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision>;
  /** Answers whether a request would be allowed, counting nothing. */
  peek(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision>;
  /**
   * A new budget for one socket's events. A socket lives on one node, so its budget stays in that node's memory
   * whatever the store, and goes with the socket.
   */
  budget(limit: number, windowMs: number): EventBudget;
  close(): Promise<void>;
}

interface Log {
  /** Timestamps of the allowed requests still in the window, oldest first, from `head` on. */
  times: number[];
  head: number;
}

/**
 * In-process store: per key, the timestamps of the requests allowed in the window (8 bytes each, so memory
 * follows the traffic, not the configured limit).
 */
export class MemoryRateLimitStore implements RateLimitStore {
  private readonly logs = new Map<string, Log>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly sweepEveryMs = 60_000) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), this.sweepEveryMs);
    this.sweeper.unref();
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

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.logs.clear();
  }

  private decide(key: string, limit: number, windowMs: number, now: number, record: boolean): RateDecision {
    let log = this.logs.get(key);
    if (!log) {
      if (!record) return { allowed: true, limit, remaining: limit, resetAt: now + windowMs, retryAfter: 0 };
      log = { times: [], head: 0 };
      this.logs.set(key, log);
    }
    const t = log.times;
    while (log.head < t.length && t[log.head]! <= now - windowMs) log.head++;
    if (log.head > 1024 && log.head * 2 > t.length) {
      t.splice(0, log.head);
      log.head = 0;
    }
    const size = t.length - log.head;
    if (size >= limit) {
      // The request that must leave the window before one more fits (the limit may have been lowered).
      const resetAt = t[t.length - limit]! + windowMs;
      return { allowed: false, limit, remaining: 0, resetAt, retryAfter: Math.max(1, Math.ceil((resetAt - now) / 1000)) };
    }
    if (record) t.push(now);
    const used = t.length - log.head;
    const resetAt = (used > 0 ? t[log.head]! : now) + windowMs;
    return { allowed: true, limit, remaining: limit - used, resetAt, retryAfter: 0 };
  }

  private sweep(now: number): void {
    for (const [key, log] of this.logs) {
      const newest = log.times.length > log.head ? log.times[log.times.length - 1]! : 0;
      // Keys are swept by wall time; a test clock far in the past or future only delays their removal.
      if (newest < now - 10 * 60_000) this.logs.delete(key);
    }
  }
}

/**
 * A sliding-window log of one socket's events: an event is allowed when fewer than `limit` were allowed in the
 * last `windowMs`. Synchronous and held by the socket's state rather than kept in a store keyed by socket id,
 * whose entries outlived their sockets by up to the store's sweep interval (and a per-socket budget has nothing
 * to share across nodes).
 */
export class EventBudget {
  private readonly times: number[] = [];
  private head = 0;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  take(now: number): { allowed: boolean; retryAfter: number } {
    const t = this.times;
    while (this.head < t.length && t[this.head]! <= now - this.windowMs) this.head++;
    if (this.head > 64 && this.head * 2 > t.length) {
      t.splice(0, this.head);
      this.head = 0;
    }
    if (t.length - this.head >= this.limit) {
      const resetAt = t[t.length - this.limit]! + this.windowMs;
      return { allowed: false, retryAfter: Math.max(1, Math.ceil((resetAt - now) / 1000)) };
    }
    t.push(now);
    return { allowed: true, retryAfter: 0 };
  }
}
