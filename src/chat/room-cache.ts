import type { Kysely } from 'kysely';
import type { DomainEvent, EventBus } from '../events/bus.js';
import type { Clock } from '../lib/clock.js';
import { ModerationRepo } from '../store/moderation-repo.js';
import { RoomsRepo, type MemberRow, type RoomRow } from '../store/rooms-repo.js';
import type { Database } from '../store/schema.js';

/**
 * What the message paths ask of a room on every send and every delivery: the room's own settings, who is in it
 * with which role, and who is banned until when. Only those facts are current: a member's badge, last read and
 * properties, and the room's last message and update time, are as they were when the snapshot was loaded.
 */
export interface RoomSnapshot {
  room: RoomRow;
  members: Map<string, MemberRow>;
  /** user id -> end of the ban (epoch ms) or null for a ban without end. */
  bans: Map<string, number | null>;
}

/** Events after which a room's membership, roles, settings or bans may differ from its snapshot. */
const INVALIDATING: ReadonlySet<DomainEvent['type']> = new Set([
  'room.created', 'room.updated', 'room.deleted', 'members.added', 'members.removed', 'member.updated', 'room.ban',
]);

const MAX_ROOMS = 20_000;

/**
 * Room snapshots kept in memory so that sending and delivering a message does not read the room, its members and
 * its bans from the store each time (three queries, a third of a send's SQL). Every service that changes those
 * facts announces it with a domain event after commit; the cache drops the room's snapshot when it sees the event.
 * A load that was under way when an event arrived is not kept (it may have read the old rows). The time limit is a
 * safety net for a change that reaches the store from elsewhere; in a cluster the other nodes' events
 * arrive relayed (docs/cluster.md), and while they cannot (Redis lost) nothing is kept (`trust`).
 */
export class RoomCache {
  private readonly entries = new Map<string, { snap: RoomSnapshot; at: number }>();
  private readonly loading = new Map<string, Promise<RoomSnapshot | undefined>>();
  private generation = 0;
  /** False while changes made elsewhere could go unheard (cluster mode without Redis): every get reads the store. */
  private keeping = true;
  hits = 0;
  misses = 0;

  constructor(
    private readonly db: Kysely<Database>,
    bus: EventBus,
    private readonly clock: Clock,
    private readonly maxAgeMs = 10_000,
  ) {
    bus.on((e) => {
      if (INVALIDATING.has(e.type) && 'roomId' in e) this.invalidate(e.appId, e.roomId);
    });
  }

  async get(appId: string, roomId: string): Promise<RoomSnapshot | undefined> {
    const key = `${appId}\u0000${roomId}`;
    const hit = this.entries.get(key);
    if (hit && this.clock.now() - hit.at < this.maxAgeMs) {
      this.hits++;
      return hit.snap;
    }
    this.misses++;
    if (!this.keeping) return this.load(key, appId, roomId);
    // Concurrent sends to a room that is not cached share one load.
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.load(key, appId, roomId).finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  /** The cached snapshot if there is a fresh one, without loading: for callers that have a slower way round. */
  peek(appId: string, roomId: string): RoomSnapshot | undefined {
    const hit = this.entries.get(`${appId}\u0000${roomId}`);
    return hit && this.clock.now() - hit.at < this.maxAgeMs ? hit.snap : undefined;
  }

  invalidate(appId: string, roomId: string): void {
    this.generation++;
    const key = `${appId}\u0000${roomId}`;
    this.entries.delete(key);
    // A load in flight must not be shared by callers that arrive after the change.
    this.loading.delete(key);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
    this.loading.clear();
  }

  /**
   * Cluster mode: while another node's changes cannot be heard (Redis lost), nothing is kept and every get reads the
   * store; when they can again, the cache starts from empty.
   */
  trust(trusted: boolean): void {
    this.keeping = trusted;
    this.clear();
  }

  private async load(key: string, appId: string, roomId: string): Promise<RoomSnapshot | undefined> {
    const gen = this.generation;
    const at = this.clock.now();
    const rooms = new RoomsRepo(this.db);
    const room = await rooms.get(appId, roomId);
    if (!room) return undefined;
    const [members, bans] = await Promise.all([rooms.members(appId, roomId), new ModerationRepo(this.db).activeBans(appId, roomId, at)]);
    const snap: RoomSnapshot = {
      room,
      members: new Map(members.map((m) => [m.user_id, m])),
      bans: new Map(bans.map((b) => [b.user_id, b.unblock_at])),
    };
    if (gen === this.generation && this.keeping) {
      if (this.entries.size >= MAX_ROOMS) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(key, { snap, at });
    }
    return snap;
  }
}
