import type { ExpressionBuilder, Kysely, Selectable } from 'kysely';
import type { Database, RoomBansTable, UserBlocksTable } from './schema.js';

export type UserBlockRow = Selectable<UserBlocksTable>;
export type RoomBanRow = Selectable<RoomBansTable>;

/** A ban in force at `now`: without an end, or with one still to come. */
const inForce = (now: number) => (eb: ExpressionBuilder<Database, 'room_bans'>) => eb.or([eb('unblock_at', 'is', null), eb('unblock_at', '>', now)]);

/** Personal blocks between users and bans of users in rooms. A ban whose unblock_at has passed is not active. */
export class ModerationRepo {
  constructor(private readonly db: Kysely<Database>) {}

  // --- personal blocks

  block(appId: string, blocker: string, blockee: string): Promise<UserBlockRow | undefined> {
    return this.db.selectFrom('user_blocks').selectAll().where('app_id', '=', appId).where('blocker', '=', blocker).where('blockee', '=', blockee).executeTakeFirst();
  }

  blocksBy(appId: string, blocker: string): Promise<UserBlockRow[]> {
    return this.db.selectFrom('user_blocks').selectAll().where('app_id', '=', appId).where('blocker', '=', blocker).orderBy('created_at', 'desc').orderBy('blockee').execute();
  }

  /** Is there a block, in either direction, between `userId` and any of `others`? */
  async blockedBetween(appId: string, userId: string, others: string[]): Promise<boolean> {
    if (others.length === 0) return false;
    const row = await this.db
      .selectFrom('user_blocks')
      .select('blocker')
      .where('app_id', '=', appId)
      .where((eb) => eb.or([eb.and([eb('blocker', '=', userId), eb('blockee', 'in', others)]), eb.and([eb('blockee', '=', userId), eb('blocker', 'in', others)])]))
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  async insertBlock(row: UserBlockRow): Promise<void> {
    await this.db.insertInto('user_blocks').values(row).execute();
  }

  async deleteBlock(appId: string, blocker: string, blockee: string): Promise<boolean> {
    const res = await this.db.deleteFrom('user_blocks').where('app_id', '=', appId).where('blocker', '=', blocker).where('blockee', '=', blockee).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /** A direct room whose members include both users (the oldest, if several), or undefined. */
  async directRoomOf(appId: string, a: string, b: string): Promise<{ id: string; created_at: number } | undefined> {
    const memberOf = (user: string) => this.db.selectFrom('room_members').select('room_id').where('app_id', '=', appId).where('user_id', '=', user);
    return this.db
      .selectFrom('rooms')
      .select(['id', 'created_at'])
      .where('app_id', '=', appId)
      .where('room_type', '=', 'direct')
      .where('id', 'in', memberOf(a))
      .where('id', 'in', memberOf(b))
      .orderBy('created_at')
      .limit(1)
      .executeTakeFirst();
  }

  // --- room bans

  /** The user's ban in the room if it is still active at `now`. */
  activeBan(appId: string, roomId: string, userId: string, now: number): Promise<RoomBanRow | undefined> {
    return this.db
      .selectFrom('room_bans')
      .selectAll()
      .where('app_id', '=', appId)
      .where('room_id', '=', roomId)
      .where('user_id', '=', userId)
      .where(inForce(now))
      .executeTakeFirst();
  }

  activeBans(appId: string, roomId: string, now: number): Promise<RoomBanRow[]> {
    return this.db
      .selectFrom('room_bans')
      .selectAll()
      .where('app_id', '=', appId)
      .where('room_id', '=', roomId)
      .where(inForce(now))
      .orderBy('created_at', 'desc')
      .orderBy('user_id')
      .execute();
  }

  /** The rooms the user is banned from at `now`, as a subquery (searches leave them out). */
  bannedRoomIds(appId: string, userId: string, now: number) {
    return this.db.selectFrom('room_bans').select('room_id').where('app_id', '=', appId).where('user_id', '=', userId).where(inForce(now));
  }

  /** Stores a ban, replacing an expired one of the same user and room. */
  async upsertBan(row: RoomBanRow): Promise<void> {
    await this.db
      .insertInto('room_bans')
      .values(row)
      .onConflict((oc) => oc.columns(['app_id', 'room_id', 'user_id']).doUpdateSet({ banned_by: row.banned_by, unblock_at: row.unblock_at, created_at: row.created_at, updated_at: row.updated_at }))
      .execute();
  }

  async deleteBan(appId: string, roomId: string, userId: string): Promise<void> {
    await this.db.deleteFrom('room_bans').where('app_id', '=', appId).where('room_id', '=', roomId).where('user_id', '=', userId).execute();
  }
}
