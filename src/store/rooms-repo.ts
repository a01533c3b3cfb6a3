import { type Kysely, type Selectable, sql } from 'kysely';
import type { Database, InvitationsTable, RoomMembersTable, RoomsTable } from './schema.js';

export type RoomRow = Selectable<RoomsTable>;
export type MemberRow = Selectable<RoomMembersTable>;
export type InvitationRow = Selectable<InvitationsTable>;

export interface RoomListQuery {
  userId: string;
  /** Only rooms with status 1 (frozen rooms are hidden from lists). */
  activeOnly: boolean;
  updatedAfter?: number;
  updatedAfterId?: string;
  roomIds?: string[];
  roomTag?: string;
  withMember?: string;
  sort: Array<{ field: 'last_message_id' | 'created_at' | 'updated_at' | 'name' | 'id'; desc: boolean }>;
  unreadFirst: boolean;
  /** When set, rooms the user is banned from at this time are left out. */
  now?: number;
  limit: number;
  skip: number;
}

/** Rooms, their members and pending invitations, scoped by application. */
export class RoomsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  get(appId: string, id: string): Promise<RoomRow | undefined> {
    return this.db.selectFrom('rooms').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  getMany(appId: string, ids: string[]): Promise<RoomRow[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('rooms').selectAll().where('app_id', '=', appId).where('id', 'in', [...new Set(ids)]).execute();
  }

  async existing(appId: string, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    return (await this.db.selectFrom('rooms').select('id').where('app_id', '=', appId).where('id', 'in', ids).execute()).map((r) => r.id);
  }

  async insert(row: RoomRow): Promise<void> {
    await this.db.insertInto('rooms').values(row).execute();
  }

  async update(appId: string, id: string, patch: Partial<Omit<RoomRow, 'app_id' | 'id'>>): Promise<void> {
    if (Object.keys(patch).length === 0) return;
    await this.db.updateTable('rooms').set(patch).where('app_id', '=', appId).where('id', '=', id).execute();
  }

  /** A room's newest message and update time, after `n` messages were added to it. */
  async noteNewMessages(appId: string, id: string, lastMessageId: string, now: number, n: number): Promise<void> {
    await this.db
      .updateTable('rooms')
      .set((eb) => ({ last_message_id: lastMessageId, updated_at: now, message_count: eb('message_count', '+', n) }))
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .execute();
  }

  /** Counts the room's messages again (after deleting some). */
  async recountMessages(appId: string, id: string): Promise<void> {
    await this.db
      .updateTable('rooms')
      .set((eb) => ({
        message_count: eb.selectFrom('messages').select((m) => m.fn.countAll<number>().as('n')).where('messages.app_id', '=', appId).where('messages.room_id', '=', id),
      }))
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .execute();
  }

  /** Deletes the room with its members, invitations, messages, reactions and per-user state. */
  async delete(appId: string, id: string): Promise<number> {
    const msgIds = this.db.selectFrom('messages').select('id').where('app_id', '=', appId).where('room_id', '=', id);
    await this.db.deleteFrom('message_reactions').where('app_id', '=', appId).where('message_id', 'in', msgIds).execute();
    await this.db.deleteFrom('user_deleted_messages').where('app_id', '=', appId).where('room_id', '=', id).execute();
    await this.db.deleteFrom('messages').where('app_id', '=', appId).where('room_id', '=', id).execute();
    await this.db.deleteFrom('room_prefs').where('app_id', '=', appId).where('room_id', '=', id).execute();
    await this.db.deleteFrom('invitations').where('app_id', '=', appId).where('room_id', '=', id).execute();
    await this.db.deleteFrom('room_members').where('app_id', '=', appId).where('room_id', '=', id).execute();
    await this.db.deleteFrom('room_tags').where('app_id', '=', appId).where('room_id', '=', id).execute();
    // A room created later with the same id starts without the old one's bans.
    await this.db.deleteFrom('room_bans').where('app_id', '=', appId).where('room_id', '=', id).execute();
    const res = await this.db.deleteFrom('rooms').where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  /** Rooms of a user, with that user's member row, filtered, sorted and paged in SQL. */
  async listForUser(appId: string, q: RoomListQuery): Promise<{ rows: Array<RoomRow & { my_badge: number }>; total: number }> {
    let base = this.db
      .selectFrom('rooms')
      .innerJoin('room_members as me', (j) =>
        j.onRef('me.app_id', '=', 'rooms.app_id').onRef('me.room_id', '=', 'rooms.id').on('me.user_id', '=', q.userId),
      )
      .where('rooms.app_id', '=', appId);
    if (q.activeOnly) base = base.where('rooms.status', '=', 1);
    if (q.now !== undefined) {
      // A room the user is banned from does not show in their list (they cannot read it).
      const now = q.now;
      base = base.where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('room_bans as b')
              .select('b.user_id')
              .whereRef('b.app_id', '=', 'rooms.app_id')
              .whereRef('b.room_id', '=', 'rooms.id')
              .where('b.user_id', '=', q.userId)
              .where((x) => x.or([x('b.unblock_at', 'is', null), x('b.unblock_at', '>', now)])),
          ),
        ),
      );
    }
    if (q.updatedAfter !== undefined) {
      const after = q.updatedAfter;
      base = base.where((eb) => eb.or([eb('rooms.updated_at', '>', after), eb('rooms.created_at', '>', after)]));
    }
    if (q.roomIds) base = q.roomIds.length ? base.where('rooms.id', 'in', q.roomIds) : base.where(sql<boolean>`1 = 0`);
    if (q.roomTag !== undefined) {
      const tag = q.roomTag;
      base = base.where((eb) =>
        eb.exists(eb.selectFrom('room_tags as t').select('t.tag').whereRef('t.app_id', '=', 'rooms.app_id').whereRef('t.room_id', '=', 'rooms.id').where('t.tag', '=', tag)),
      );
    }
    if (q.withMember !== undefined) {
      const other = q.withMember;
      base = base.where((eb) =>
        eb.exists(
          eb
            .selectFrom('room_members as o')
            .select('o.user_id')
            .whereRef('o.app_id', '=', 'rooms.app_id')
            .whereRef('o.room_id', '=', 'rooms.id')
            .where('o.user_id', '=', other),
        ),
      );
    }
    const countRow = await base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    let rows = base.selectAll('rooms').select('me.badge as my_badge');
    if (q.unreadFirst) rows = rows.orderBy(sql`case when me.badge > 0 then 0 else 1 end`);
    for (const s of q.sort) {
      // rooms without messages sort as the oldest for lastMessage
      if (s.field === 'last_message_id') rows = rows.orderBy(sql`coalesce(rooms.last_message_id, '')`, s.desc ? 'desc' : 'asc');
      else rows = rows.orderBy(`rooms.${s.field}`, s.desc ? 'desc' : 'asc');
    }
    rows = rows.orderBy('rooms.id');
    if (q.limit > 0) rows = rows.limit(q.limit);
    if (q.skip > 0) rows = q.limit > 0 ? rows.offset(q.skip) : rows.limit(Number.MAX_SAFE_INTEGER).offset(q.skip);
    return { rows: await rows.execute(), total: Number(countRow.n) };
  }

  async setTags(appId: string, roomId: string, tags: string[]): Promise<void> {
    await this.db.deleteFrom('room_tags').where('app_id', '=', appId).where('room_id', '=', roomId).execute();
    const unique = [...new Set(tags)];
    if (unique.length) await this.db.insertInto('room_tags').values(unique.map((tag) => ({ app_id: appId, room_id: roomId, tag }))).execute();
  }

  // --- members

  members(appId: string, roomId: string): Promise<MemberRow[]> {
    return this.db.selectFrom('room_members').selectAll().where('app_id', '=', appId).where('room_id', '=', roomId).orderBy('joined_at').orderBy('user_id').execute();
  }

  membersOfRooms(appId: string, roomIds: string[]): Promise<MemberRow[]> {
    if (roomIds.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('room_members').selectAll().where('app_id', '=', appId).where('room_id', 'in', roomIds).orderBy('joined_at').orderBy('user_id').execute();
  }

  member(appId: string, roomId: string, userId: string): Promise<MemberRow | undefined> {
    return this.db.selectFrom('room_members').selectAll().where('app_id', '=', appId).where('room_id', '=', roomId).where('user_id', '=', userId).executeTakeFirst();
  }

  async countMembers(appId: string, roomId: string): Promise<number> {
    const r = await this.db.selectFrom('room_members').select((eb) => eb.fn.countAll<number>().as('n')).where('app_id', '=', appId).where('room_id', '=', roomId).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** Adds members that are not members yet; returns the ids actually added. */
  async addMembers(appId: string, roomId: string, userIds: string[], now: number, role = 'member', via: string | null = null): Promise<string[]> {
    if (userIds.length === 0) return [];
    const existing = new Set(
      (await this.db.selectFrom('room_members').select('user_id').where('app_id', '=', appId).where('room_id', '=', roomId).where('user_id', 'in', userIds).execute()).map((r) => r.user_id),
    );
    const fresh = [...new Set(userIds)].filter((u) => !existing.has(u));
    if (fresh.length === 0) return [];
    await this.db
      .insertInto('room_members')
      .values(fresh.map((user_id) => ({ app_id: appId, room_id: roomId, user_id, role, badge: 0, last_read: null, properties: '{}', joined_at: now, via })))
      .onConflict((oc) => oc.columns(['app_id', 'room_id', 'user_id']).doNothing())
      .execute();
    return fresh;
  }

  /** Removes the rows that exist only because of the given groups. */
  async removeVia(appId: string, roomId: string, groupIds: string[]): Promise<void> {
    if (groupIds.length === 0) return;
    await this.db.deleteFrom('room_members').where('app_id', '=', appId).where('room_id', '=', roomId).where('via', 'in', groupIds).execute();
  }

  async removeMembers(appId: string, roomId: string, userIds: string[]): Promise<void> {
    if (userIds.length === 0) return;
    await this.db.deleteFrom('room_members').where('app_id', '=', appId).where('room_id', '=', roomId).where('user_id', 'in', userIds).execute();
  }

  async updateMember(appId: string, roomId: string, userId: string, patch: Partial<Pick<MemberRow, 'role' | 'badge' | 'last_read' | 'properties'>>): Promise<void> {
    await this.db.updateTable('room_members').set(patch).where('app_id', '=', appId).where('room_id', '=', roomId).where('user_id', '=', userId).execute();
  }

  /**
   * Every member but the sender gets one more unread message, in one statement (exact under concurrency).
   * Members banned from the room at `now` are skipped: they cannot read it.
   */
  async incrementBadges(appId: string, roomId: string, exceptUserId: string | null, now: number): Promise<void> {
    let q = this.db
      .updateTable('room_members')
      .set((eb) => ({ badge: eb('badge', '+', 1) }))
      .where('app_id', '=', appId)
      .where('room_id', '=', roomId)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('room_bans as b')
              .select('b.user_id')
              .where('b.app_id', '=', appId)
              .where('b.room_id', '=', roomId)
              .whereRef('b.user_id', '=', 'room_members.user_id')
              .where((x) => x.or([x('b.unblock_at', 'is', null), x('b.unblock_at', '>', now)])),
          ),
        ),
      );
    if (exceptUserId !== null) q = q.where('user_id', '<>', exceptUserId);
    await q.execute();
  }

  // --- invitations

  invitations(appId: string, roomId: string): Promise<InvitationRow[]> {
    return this.db.selectFrom('invitations').selectAll().where('app_id', '=', appId).where('room_id', '=', roomId).orderBy('created_at').execute();
  }

  invitationsOf(appId: string, invitee: string): Promise<InvitationRow[]> {
    return this.db.selectFrom('invitations').selectAll().where('app_id', '=', appId).where('invitee', '=', invitee).orderBy('created_at').execute();
  }

  async addInvitations(appId: string, roomId: string, invitees: string[], inviter: string | null, now: number): Promise<string[]> {
    if (invitees.length === 0) return [];
    const existing = new Set((await this.invitations(appId, roomId)).map((i) => i.invitee));
    const fresh = [...new Set(invitees)].filter((u) => !existing.has(u));
    if (fresh.length) {
      await this.db.insertInto('invitations').values(fresh.map((invitee) => ({ app_id: appId, room_id: roomId, invitee, inviter, created_at: now }))).execute();
    }
    return fresh;
  }

  async removeInvitations(appId: string, roomId: string, invitees: string[]): Promise<number> {
    if (invitees.length === 0) return 0;
    const res = await this.db.deleteFrom('invitations').where('app_id', '=', appId).where('room_id', '=', roomId).where('invitee', 'in', invitees).executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}
