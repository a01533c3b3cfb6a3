import type { Kysely } from 'kysely';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../lib/clock.js';
import type { Database } from '../store/schema.js';
import { UsersRepo, type UserRow } from '../store/users-repo.js';

const MAX_USERS = 50_000;

/**
 * The profiles a new message is rendered with (its sender, a reply's sender), kept in memory: without it every
 * batch of sends read the users table once more, a fifth of a send's SQL time. UsersService announces every
 * committed write of a profile (`user.changed`, also for the login time the sender summary carries) and the entry is
 * dropped; a user that does not exist is kept as such until one is created. Concurrent misses share one query. A
 * load that overlaps a change is not kept; the age limit is the safety net for a write from elsewhere (in a cluster
 * the other nodes' events arrive relayed, and while they cannot nothing is kept, as for the room cache).
 */
export class UserCache {
  private readonly entries = new Map<string, { row: UserRow | undefined; at: number }>();
  private pending = new Map<string, Map<string, Array<{ resolve: (v: UserRow | undefined) => void; reject: (e: unknown) => void }>>>();
  private scheduled = false;
  private generation = 0;
  /** False while changes made elsewhere could go unheard (cluster mode without Redis): nothing is kept. */
  private keeping = true;
  private readonly repo: UsersRepo;
  hits = 0;
  misses = 0;

  constructor(
    db: Kysely<Database>,
    bus: EventBus,
    private readonly clock: Clock,
    private readonly maxAgeMs = 10_000,
  ) {
    this.repo = new UsersRepo(db);
    bus.on((e) => {
      if (e.type !== 'user.changed') return;
      this.generation++;
      for (const id of e.userIds) this.entries.delete(key(e.appId, id));
    });
  }

  /** Cluster mode: stops keeping profiles while other nodes' changes cannot be heard, and starts again from empty. */
  trust(trusted: boolean): void {
    this.keeping = trusted;
    this.generation++;
    this.entries.clear();
  }

  get(appId: string, id: string): Promise<UserRow | undefined> {
    const hit = this.entries.get(key(appId, id));
    if (hit && this.clock.now() - hit.at < this.maxAgeMs) {
      this.hits++;
      return Promise.resolve(hit.row);
    }
    this.misses++;
    return new Promise((resolve, reject) => {
      let byId = this.pending.get(appId);
      if (!byId) this.pending.set(appId, (byId = new Map()));
      const waiters = byId.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else byId.set(id, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(() => this.run());
      }
    });
  }

  /** One query per application for every miss of this turn of the event loop. */
  private run(): void {
    const batch = this.pending;
    this.pending = new Map();
    this.scheduled = false;
    const gen = this.generation;
    const at = this.clock.now();
    for (const [appId, byId] of batch) {
      this.repo.getMany(appId, [...byId.keys()]).then(
        (rows) => {
          const found = new Map(rows.map((r) => [r.id, r]));
          const keep = gen === this.generation && this.keeping;
          for (const [id, waiters] of byId) {
            const row = found.get(id);
            if (keep) {
              if (this.entries.size >= MAX_USERS) this.entries.delete(this.entries.keys().next().value!);
              this.entries.set(key(appId, id), { row, at });
            }
            for (const w of waiters) w.resolve(row);
          }
        },
        (err) => {
          for (const waiters of byId.values()) for (const w of waiters) w.reject(err);
        },
      );
    }
  }
}

function key(appId: string, id: string): string {
  return `${appId}\u0000${id}`;
}
