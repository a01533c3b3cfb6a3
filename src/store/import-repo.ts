import type { ExpressionBuilder, Kysely, Selectable } from 'kysely';
import type { MemberRow, RoomRow } from './rooms-repo.js';
import type { MessageRow } from './messages-repo.js';
import type { UserRow } from './users-repo.js';
import type { Database, ImportCheckpointsTable, InvitationsTable, RoomBansTable, RoomPrefsTable, UserBlocksTable, UserGroupsTable } from './schema.js';

export type CheckpointRow = Selectable<ImportCheckpointsTable>;
export type ReactionInput = { message_id: string; user_id: string; reaction: string; created_at: number };

/**
 * The store path of `imkit-server import` (src/importer): rows written as the source server shows them, with
 * their own ids and times, idempotently (a row equal to the stored one is not written again). Each method is a
 * few set-based statements; the import service runs them in one transaction per page.
 */
export class ImportRepo {
  constructor(private readonly db: Kysely<Database>) {}

  // --- checkpoints

  async checkpoints(appId: string, source: string, prefix: string): Promise<Map<string, unknown>> {
    const rows = await this.db
      .selectFrom('import_checkpoints')
      .select(['entity', 'state'])
      .where('app_id', '=', appId)
      .where('source', '=', source)
      .where('entity', 'like', `${prefix}%`)
      .execute();
    return new Map(rows.map((r) => [r.entity, JSON.parse(r.state) as unknown]));
  }

  async setCheckpoint(appId: string, source: string, entity: string, state: unknown, now: number): Promise<void> {
    const text = JSON.stringify(state);
    await this.db
      .insertInto('import_checkpoints')
      .values({ app_id: appId, source, entity, state: text, updated_at: now })
      .onConflict((oc) => oc.columns(['app_id', 'source', 'entity']).doUpdateSet({ state: text, updated_at: now }))
      .execute();
  }

  // --- users

  /** Inserts or replaces the given users; returns how many were new and how many changed (equal rows are left). */
  async upsertUsers(appId: string, rows: UserRow[]): Promise<{ created: number; updated: number }> {
    if (rows.length === 0) return { created: 0, updated: 0 };
    const existing = new Map(
      (await this.db.selectFrom('users').selectAll().where('app_id', '=', appId).where('id', 'in', rows.map((r) => r.id)).execute()).map((r) => [r.id, r]),
    );
    let created = 0;
    let updated = 0;
    const write: UserRow[] = [];
    for (const row of rows) {
      const old = existing.get(row.id);
      if (!old) created++;
      else if (!sameRow(old, row)) updated++;
      else continue;
      write.push(row);
    }
    if (write.length) {
      await this.db
        .insertInto('users')
        .values(write)
        .onConflict((oc) =>
          oc.columns(['app_id', 'id']).doUpdateSet((eb) => fromExcluded(eb, 'users', ['nickname', 'avatar_url', 'description', 'is_robot', 'extra', 'address', 'user_agent', 'last_login_at', 'created_at', 'updated_at'])),
        )
        .execute();
    }
    return { created, updated };
  }

  async replaceBlocks(appId: string, blocker: string, rows: Array<Selectable<UserBlocksTable>>): Promise<boolean> {
    const old = await this.db.selectFrom('user_blocks').selectAll().where('app_id', '=', appId).where('blocker', '=', blocker).orderBy('blockee').execute();
    const sorted = [...rows].sort((a, b) => (a.blockee < b.blockee ? -1 : 1));
    if (sameList(old, sorted)) return false;
    await this.db.deleteFrom('user_blocks').where('app_id', '=', appId).where('blocker', '=', blocker).execute();
    if (sorted.length) await this.db.insertInto('user_blocks').values(sorted).execute();
    return true;
  }

  /** A user's own preferences (GET /me/pref) as given: [{key, data}], data as JSON text. */
  async replaceUserPrefs(appId: string, userId: string, prefs: Array<{ key: string; data: string }>, now: number): Promise<boolean> {
    const old = await this.db.selectFrom('user_prefs').select(['key', 'data']).where('app_id', '=', appId).where('user_id', '=', userId).orderBy('key').execute();
    const sorted = [...prefs].sort((a, b) => (a.key < b.key ? -1 : 1));
    if (sameList(old, sorted)) return false;
    await this.db.deleteFrom('user_prefs').where('app_id', '=', appId).where('user_id', '=', userId).execute();
    if (sorted.length) await this.db.insertInto('user_prefs').values(sorted.map((p) => ({ app_id: appId, user_id: userId, key: p.key, data: p.data, updated_at: now }))).execute();
    return true;
  }

  /**
   * The messages a user hid for themself (GET /messages/user-delete), as given; ids of messages not stored here are
   * left out and counted. Returns whether anything changed and how many ids were unknown.
   */
  async replaceHidden(appId: string, userId: string, ids: string[], now: number): Promise<{ changed: boolean; unknown: number }> {
    const rooms = new Map<string, string>();
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      for (const r of await this.db.selectFrom('messages').select(['id', 'room_id']).where('app_id', '=', appId).where('id', 'in', chunk).execute()) rooms.set(r.id, r.room_id);
    }
    const want = [...rooms.keys()].sort();
    const old = (await this.db.selectFrom('user_deleted_messages').select('message_id').where('app_id', '=', appId).where('user_id', '=', userId).orderBy('message_id').execute()).map((r) => r.message_id);
    const unknown = new Set(ids).size - want.length;
    if (JSON.stringify(old) === JSON.stringify(want)) return { changed: false, unknown };
    await this.db.deleteFrom('user_deleted_messages').where('app_id', '=', appId).where('user_id', '=', userId).execute();
    for (let i = 0; i < want.length; i += 1000) {
      await this.db
        .insertInto('user_deleted_messages')
        .values(want.slice(i, i + 1000).map((message_id) => ({ app_id: appId, user_id: userId, room_id: rooms.get(message_id)!, message_id, created_at: now })))
        .execute();
    }
    return { changed: true, unknown };
  }

  // --- groups and config

  async replaceGroup(appId: string, row: Selectable<UserGroupsTable>, members: string[]): Promise<boolean> {
    const old = await this.db.selectFrom('user_groups').selectAll().where('app_id', '=', appId).where('id', '=', row.id).executeTakeFirst();
    const oldMembers = (await this.db.selectFrom('group_members').select('user_id').where('app_id', '=', appId).where('group_id', '=', row.id).orderBy('user_id').execute()).map((m) => m.user_id);
    const sorted = [...members].sort();
    if (old && sameRow(old, row) && JSON.stringify(oldMembers) === JSON.stringify(sorted)) return false;
    await this.db.deleteFrom('group_members').where('app_id', '=', appId).where('group_id', '=', row.id).execute();
    await this.db.deleteFrom('user_groups').where('app_id', '=', appId).where('id', '=', row.id).execute();
    await this.db.insertInto('user_groups').values(row).execute();
    if (sorted.length) await this.db.insertInto('group_members').values(sorted.map((user_id) => ({ app_id: appId, group_id: row.id, user_id }))).execute();
    return true;
  }

  /** Sets config keys whose value differs; raises the config version once when any did (caches reload). */
  async setConfig(appId: string, values: Record<string, string>, now: number): Promise<number> {
    const old = new Map((await this.db.selectFrom('app_config').select(['key', 'value']).where('app_id', '=', appId).execute()).map((r) => [r.key, r.value]));
    let changed = 0;
    for (const [key, value] of Object.entries(values)) {
      if (old.get(key) === value) continue;
      changed++;
      await this.db
        .insertInto('app_config')
        .values({ app_id: appId, key, value, updated_at: now })
        .onConflict((oc) => oc.columns(['app_id', 'key']).doUpdateSet({ value, updated_at: now }))
        .execute();
    }
    if (changed) {
      await this.db
        .insertInto('app_config_versions')
        .values({ app_id: appId, version: 1 })
        .onConflict((oc) => oc.column('app_id').doUpdateSet((eb) => ({ version: eb(eb.ref('app_config_versions.version'), '+', 1) })))
        .execute();
    }
    return changed;
  }

  // --- rooms

  /**
   * Writes a room as given (row, tags, members, the members' preferences, bans, pending invitations), replacing what the target holds
   * for it; preferences, bans or invitations given as undefined are left as they are. Returns 'created', 'updated' or 'unchanged'.
   */
  async putRoom(
    appId: string,
    room: RoomRow,
    tags: string[],
    members: MemberRow[],
    prefs: Array<Selectable<RoomPrefsTable>> | undefined,
    bans: Array<Selectable<RoomBansTable>> | undefined,
    invitations?: Array<Selectable<InvitationsTable>>,
  ): Promise<'created' | 'updated' | 'unchanged'> {
    const old = await this.db.selectFrom('rooms').selectAll().where('app_id', '=', appId).where('id', '=', room.id).executeTakeFirst();
    // message_count is the target's own (recounted after messages are written).
    const row = { ...room, message_count: old?.message_count ?? 0 };
    const oldTags = (await this.db.selectFrom('room_tags').select('tag').where('app_id', '=', appId).where('room_id', '=', room.id).orderBy('tag').execute()).map((t) => t.tag);
    const oldMembers = await this.db.selectFrom('room_members').selectAll().where('app_id', '=', appId).where('room_id', '=', room.id).orderBy('user_id').execute();
    const sortedTags = [...new Set(tags)].sort();
    const sortedMembers = [...members].sort((a, b) => (a.user_id < b.user_id ? -1 : 1));
    const prefUsers = prefs ? members.map((m) => m.user_id) : [];
    const oldPrefs = prefUsers.length
      ? await this.db.selectFrom('room_prefs').selectAll().where('app_id', '=', appId).where('room_id', '=', room.id).where('scope', '=', '').where('user_id', 'in', prefUsers).orderBy('user_id').execute()
      : [];
    const sortedPrefs = [...(prefs ?? [])].sort((a, b) => (a.user_id < b.user_id ? -1 : 1));
    const oldBans = bans ? await this.db.selectFrom('room_bans').selectAll().where('app_id', '=', appId).where('room_id', '=', room.id).orderBy('user_id').execute() : [];
    const sortedBans = bans ? [...bans].sort((a, b) => (a.user_id < b.user_id ? -1 : 1)) : [];
    const oldInvites = invitations ? await this.db.selectFrom('invitations').selectAll().where('app_id', '=', appId).where('room_id', '=', room.id).orderBy('invitee').execute() : [];
    const sortedInvites = invitations ? [...invitations].sort((a, b) => (a.invitee < b.invitee ? -1 : 1)) : [];
    let changed = false;
    if (!old) await this.db.insertInto('rooms').values(row).execute();
    else if (!sameRow(old, row)) {
      const { app_id: _a, id: _i, ...patch } = row;
      await this.db.updateTable('rooms').set(patch).where('app_id', '=', appId).where('id', '=', room.id).execute();
      changed = true;
    }
    if (JSON.stringify(oldTags) !== JSON.stringify(sortedTags)) {
      changed = true;
      await this.db.deleteFrom('room_tags').where('app_id', '=', appId).where('room_id', '=', room.id).execute();
      if (sortedTags.length) await this.db.insertInto('room_tags').values(sortedTags.map((tag) => ({ app_id: appId, room_id: room.id, tag }))).execute();
    }
    if (!sameList(oldMembers, sortedMembers)) {
      changed = true;
      await this.db.deleteFrom('room_members').where('app_id', '=', appId).where('room_id', '=', room.id).execute();
      if (sortedMembers.length) await this.db.insertInto('room_members').values(sortedMembers).execute();
    }
    if (prefs && !sameList(oldPrefs, sortedPrefs)) {
      changed = true;
      if (prefUsers.length) await this.db.deleteFrom('room_prefs').where('app_id', '=', appId).where('room_id', '=', room.id).where('scope', '=', '').where('user_id', 'in', prefUsers).execute();
      if (sortedPrefs.length) await this.db.insertInto('room_prefs').values(sortedPrefs).execute();
    }
    if (bans && !sameList(oldBans, sortedBans)) {
      changed = true;
      await this.db.deleteFrom('room_bans').where('app_id', '=', appId).where('room_id', '=', room.id).execute();
      if (sortedBans.length) await this.db.insertInto('room_bans').values(sortedBans).execute();
    }
    if (invitations && !sameList(oldInvites, sortedInvites)) {
      changed = true;
      await this.db.deleteFrom('invitations').where('app_id', '=', appId).where('room_id', '=', room.id).execute();
      if (sortedInvites.length) await this.db.insertInto('invitations').values(sortedInvites).execute();
    }
    return !old ? 'created' : changed ? 'updated' : 'unchanged';
  }

  // --- messages

  /**
   * Writes one page of a room's messages as given, with their ids and times: new ones are inserted, stored ones
   * whose row differs are replaced, equal ones are left. The written messages' reactions are replaced by the
   * given ones. Returns the counts.
   */
  async putMessages(appId: string, rows: MessageRow[], reactions: ReactionInput[]): Promise<{ created: number; updated: number }> {
    if (rows.length === 0) return { created: 0, updated: 0 };
    const ids = rows.map((r) => r.id);
    const existing = new Map((await this.db.selectFrom('messages').selectAll().where('app_id', '=', appId).where('id', 'in', ids).execute()).map((r) => [r.id, r]));
    const oldReactions = await this.db
      .selectFrom('message_reactions')
      .select(['message_id', 'user_id', 'reaction', 'created_at'])
      .where('app_id', '=', appId)
      .where('message_id', 'in', ids)
      .execute();
    const reactionKey = (list: Array<{ message_id: string; user_id: string; reaction: string }>, id: string) =>
      list
        .filter((r) => r.message_id === id)
        .map((r) => `${r.user_id}\u0000${r.reaction}`)
        .sort()
        .join('\u0001');
    let created = 0;
    let updated = 0;
    const write: MessageRow[] = [];
    for (const row of rows) {
      const old = existing.get(row.id);
      if (!old) created++;
      else if (!sameRow(old, row) || reactionKey(oldReactions, row.id) !== reactionKey(reactions, row.id)) updated++;
      else continue;
      write.push(row);
    }
    if (write.length === 0) return { created, updated };
    await this.db
      .insertInto('messages')
      .values(write)
      .onConflict((oc) =>
        oc.columns(['app_id', 'id']).doUpdateSet((eb) => fromExcluded(eb, 'messages', ['room_id', 'sender_id', 'message_type', 'message', 'fields', 'reply_id', 'pinned', 'edited_at', 'message_time', 'created_at', 'updated_at'])),
      )
      .execute();
    const written = write.map((r) => r.id);
    await this.db.deleteFrom('message_reactions').where('app_id', '=', appId).where('message_id', 'in', written).execute();
    const writtenSet = new Set(written);
    const add = reactions.filter((r) => writtenSet.has(r.message_id));
    if (add.length) {
      await this.db
        .insertInto('message_reactions')
        .values(add.map((r) => ({ app_id: appId, ...r })))
        .onConflict((oc) => oc.columns(['app_id', 'message_id', 'user_id', 'reaction']).doNothing())
        .execute();
    }
    return { created, updated };
  }

  /**
   * After a room's messages were written: its message count, counted again, and its last message: the one the
   * source named, or a newer one imported since the room was read.
   */
  async settleRoom(appId: string, roomId: string, lastMessageId: string | null): Promise<void> {
    const newest = await this.db.selectFrom('messages').select('id').where('app_id', '=', appId).where('room_id', '=', roomId).orderBy('id', 'desc').limit(1).executeTakeFirst();
    const last = newest && (lastMessageId === null || newest.id > lastMessageId) ? newest.id : lastMessageId;
    await this.db
      .updateTable('rooms')
      .set((eb) => ({
        last_message_id: last,
        message_count: eb.selectFrom('messages').select((m) => m.fn.countAll<number>().as('n')).where('messages.app_id', '=', appId).where('messages.room_id', '=', roomId),
      }))
      .where('app_id', '=', appId)
      .where('id', '=', roomId)
      .execute();
  }
}

function sameRow(a: object, b: object): boolean {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  for (const k of Object.keys(y)) {
    const u = x[k];
    const v = y[k];
    // Stored BIGINT and INTEGER columns may come back as numbers or strings depending on the driver.
    if (u === v || (u !== null && v !== null && u !== undefined && v !== undefined && String(u) === String(v))) continue;
    return false;
  }
  return true;
}

function sameList(a: object[], b: object[]): boolean {
  return a.length === b.length && a.every((row, i) => sameRow(row, b[i]!));
}

/** The update of an upsert that takes these columns from the row that was refused (`excluded`). */
function fromExcluded<T extends 'users' | 'messages'>(eb: ExpressionBuilder<any, any>, _table: T, columns: Array<keyof Database[T] & string>): Record<string, unknown> {
  return Object.fromEntries(columns.map((c) => [c, eb.ref(`excluded.${c}`)]));
}
