import { Periodic } from '../lib/periodic.js';
import type { Kysely } from 'kysely';
import type { Clock } from '../lib/clock.js';
import { MonitoringRepo, type UsageRow } from '../store/monitoring-repo.js';
import type { Database } from '../store/schema.js';

const MINUTE = 60_000;
/** How long usage rows are kept: a week of minutes is 10,080 rows per key at most. */
const KEEP_MS = 7 * 24 * 60 * MINUTE;
const PRUNE_EVERY_MS = 60 * MINUTE;

/**
 * Per-API-key usage (requests per minute, last use and address), counted in memory on the request path and
 * written in batches. A write per request would be a store write on every admin call (on SQLite, competing with
 * the message writer thread for the file); counting costs a map lookup, and one statement every interval adds
 * up every key's minutes. What a crash loses is the last interval's counts, which is acceptable for a usage
 * display (it is not billing).
 */
export class UsageMeter {
  private pending = new Map<string, UsageRow>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Pruning (in a cluster, by one node per period). */
  readonly pruning = new Periodic('prune:usage', PRUNE_EVERY_MS);

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Starts writing every `intervalMs` (the server: 10 s). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  /** One request authenticated with the key; `refused` when its rate limit answered 429. */
  record(appId: string, keyId: string, address: string, refused: boolean): void {
    const now = this.clock.now();
    const lastAddress = address.slice(0, 64);
    const minute = now - (now % MINUTE);
    const k = `${keyId}\u0000${minute}`;
    const row = this.pending.get(k);
    if (row) {
      row.requests++;
      if (refused) row.refused++;
      row.last_used_at = now;
      row.last_address = lastAddress;
    } else {
      this.pending.set(k, { app_id: appId, key_id: keyId, minute, requests: 1, refused: refused ? 1 : 0, last_used_at: now, last_address: lastAddress });
    }
  }

  /**
   * Writes what was counted since the last write (flushes run one after the other). A failed write is logged and
   * its counts are dropped rather than kept growing in memory.
   */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const rows = [...this.pending.values()];
      this.pending = new Map();
      const repo = new MonitoringRepo(this.db);
      try {
        await repo.addUsage(rows);
        const now = this.clock.now();
        if (await this.pruning.due(now)) await repo.pruneUsage(now - KEEP_MS);
      } catch (err) {
        this.onError(err);
      }
    });
    return this.flushing;
  }

  /** Stops the timer and writes what is left (before the store closes). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
