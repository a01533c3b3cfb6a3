import { Periodic } from '../lib/periodic.js';
import type { Kysely } from 'kysely';
import { invalidRequest } from '../errors.js';
import { iso, type Clock } from '../lib/clock.js';
import { newObjectId } from '../lib/ids.js';
import { AuditRepo, type AuditRow } from '../store/audit-repo.js';
import type { PlannedStatement } from '../store/append-repo.js';
import type { Database } from '../store/schema.js';
import { storableText } from '../lib/text.js';

export interface AuditActor {
  type: AuditRow['actor_type'];
  /** An API key's id, or who the operator is ("cli"). */
  id: string;
  fingerprint?: string | null;
  last4?: string | null;
}

export interface AuditEntry {
  appId: string;
  actor: AuditActor;
  ip?: string;
  /** What was done, e.g. `clients.create`, `rooms.members.delete`, `api_key.revoke`. */
  action: string;
  /** The route pattern (`DELETE /rooms/:id`), when it came over HTTP. */
  route?: string;
  /** What it was done to: the route's path parameters and a body's `_id` (never content, never a secret). */
  target?: string;
  outcome: AuditRow['outcome'];
}

/**
 * The audit log (docs/security.md): what API keys and operators did. Entries are kept in memory and written
 * together every `flushMs` (200 ms) in one statement, off each request's path: a write per request would put one
 * on every admin call, and on SQLite each write on the event loop's connection can wait for the message writer
 * thread. What a crash loses is the last fraction of a second of entries. Entries older than the retention are
 * deleted once an hour.
 */
export class AuditLog {
  private queue: AuditRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Pruning once an hour (in a cluster, by one node per hour). */
  readonly pruning = new Periodic('prune:audit', 3_600_000);
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly retentionMs: number,
    private readonly onError: (err: unknown) => void = () => {},
    /**
     * SQLite: runs the writes as one transaction on the writer thread (Store.runBatch), whose commits a write on
     * the event loop's connection would wait for, blocking the loop meanwhile. Unset: written on the pool.
     */
    private readonly runBatch?: (statements: PlannedStatement[]) => Promise<void>,
  ) {}

  start(flushMs = 200): void {
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
  }

  record(e: AuditEntry): void {
    const now = this.clock.now();
    this.queue.push({
      app_id: e.appId,
      id: newObjectId(now),
      at: now,
      actor_type: e.actor.type,
      actor_id: e.actor.id,
      actor_fingerprint: e.actor.fingerprint ?? null,
      actor_last4: e.actor.last4 ?? null,
      ip: e.ip ?? null,
      // The route and target carry the caller's path parameters and ids: one NUL would make PostgreSQL refuse the
      // whole batch, again at every retry (found by the fuzzer).
      action: storableText(e.action.slice(0, 100)),
      route: storableText(e.route?.slice(0, 200)) ?? null,
      target: storableText(e.target?.slice(0, 500)) ?? null,
      outcome: e.outcome,
    });
  }

  /** Writes what is waiting (and prunes once an hour); entries that fail to be written are kept for the next try. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      const rows = this.queue;
      this.queue = [];
      const repo = new AuditRepo(this.db);
      const now = this.clock.now();
      const prune = await this.pruning.due(now);
      try {
        if (this.runBatch) {
          const statements = repo.plan(rows, prune ? now - this.retentionMs : undefined);
          if (statements.length) await this.runBatch(statements);
        } else {
          if (rows.length) await repo.insert(rows);
          if (prune) await repo.prune(now - this.retentionMs);
        }
      } catch (err) {
        if (prune) this.pruning.again();
        this.queue = rows.concat(this.queue);
        this.onError(err);
      }
    });
    return this.flushing;
  }

  /** `GET /admin/audit`: newest first, `before` = the previous page's last `_id`. */
  async list(appId: string, q: { limit?: number; before?: string; actor?: string; action?: string; target?: string }): Promise<{ data: Record<string, unknown>[]; totalCount: number }> {
    if (q.before !== undefined && !/^[0-9a-f]{24}$/.test(q.before)) throw invalidRequest('Invalid query parameter before: an entry _id');
    await this.flush();
    const { rows, total } = await new AuditRepo(this.db).list(appId, { limit: q.limit ?? 50, before: q.before, actor: q.actor, action: q.action, target: q.target });
    return { data: rows.map(render), totalCount: total };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}

function render(r: AuditRow): Record<string, unknown> {
  return {
    _id: r.id,
    at: iso(r.at),
    atMS: r.at,
    actor: { type: r.actor_type, id: r.actor_id, fingerprint: r.actor_fingerprint, last4: r.actor_last4 },
    ip: r.ip,
    action: r.action,
    route: r.route,
    target: r.target,
    outcome: r.outcome,
  };
}

/** `POST /rooms/:id/members` -> `rooms.members.create`: the path's words without parameters, and what the method does. */
export function actionOf(method: string, url: string): string {
  const words = url.split('/').filter((s) => s && !s.startsWith(':') && s !== 'admin');
  const verb = method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'DELETE' ? 'delete' : 'read';
  return `${words.join('.') || 'root'}.${verb}`;
}
