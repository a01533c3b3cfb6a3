import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/** Unread sums over one user's memberships in active rooms; every sum is computed by the database. */
export class BadgesRepo {
  constructor(private readonly db: Kysely<Database>) {}

  /** The user's unread over active rooms carrying every one of `tags` (all active rooms when `tags` is empty). */
  async total(appId: string, userId: string, tags: string[] = []): Promise<number> {
    const wanted = [...new Set(tags)];
    let q = this.myActiveRooms(appId, userId);
    if (wanted.length) {
      // (room, tag) is the primary key of room_tags, so a room has all tags exactly when it matches n of them.
      q = q.where('me.room_id', 'in', (eb) =>
        eb
          .selectFrom('room_tags as t')
          .select('t.room_id')
          .where('t.app_id', '=', appId)
          .where('t.tag', 'in', wanted)
          .groupBy('t.room_id')
          .having((h) => h.fn.countAll(), '=', wanted.length),
      );
    }
    const row = await q.select(sql<number | string | null>`sum(me.badge)`.as('n')).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** Each user's unread count over their active rooms as `total` counts them without tags, for many users at once (the badge of a push). */
  async totals(appId: string, userIds: string[]): Promise<Map<string, number>> {
    if (userIds.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('room_members as me')
      .innerJoin('rooms as r', (j) => j.onRef('r.app_id', '=', 'me.app_id').onRef('r.id', '=', 'me.room_id'))
      .select(['me.user_id', sql<number | string | null>`sum(me.badge)`.as('n')])
      .where('me.app_id', '=', appId)
      .where('me.user_id', 'in', userIds)
      .where('r.status', '=', 1)
      .groupBy('me.user_id')
      .execute();
    return new Map(rows.map((r) => [r.user_id, Number(r.n ?? 0)]));
  }

  /** Per tag, the user's unread over active rooms with that tag; only `tags` when given, else every tag they have. */
  async byTag(appId: string, userId: string, tags?: string[]): Promise<Map<string, number>> {
    let q = this.myActiveRooms(appId, userId).innerJoin('room_tags as t', (j) => j.onRef('t.app_id', '=', 'me.app_id').onRef('t.room_id', '=', 'me.room_id'));
    if (tags) {
      if (tags.length === 0) return new Map();
      q = q.where('t.tag', 'in', [...new Set(tags)]);
    }
    const rows = await q.select(['t.tag', sql<number | string | null>`sum(me.badge)`.as('n')]).groupBy('t.tag').orderBy('t.tag').execute();
    return new Map(rows.map((r) => [r.tag, Number(r.n ?? 0)]));
  }

  private myActiveRooms(appId: string, userId: string) {
    return this.db
      .selectFrom('room_members as me')
      .innerJoin('rooms as r', (j) => j.onRef('r.app_id', '=', 'me.app_id').onRef('r.id', '=', 'me.room_id'))
      .where('me.app_id', '=', appId)
      .where('me.user_id', '=', userId)
      .where('r.status', '=', 1);
  }
}
