import type { ExpressionBuilder, Kysely, Selectable } from 'kysely';
import { RoomsRepo, type MemberRow, type RoomRow } from './rooms-repo.js';
import { MessagesRepo, type MessageRow } from './messages-repo.js';
import { UsersRepo, type UserRow } from './users-repo.js';
import { WebhooksRepo, type EndpointRow } from './webhooks-repo.js';
import type { Database, ImportCheckpointsTable, InvitationsTable, RoomBansTable, RoomPrefsTable, UserBlocksTable, UserGroupsTable } from './schema.js';

export type CheckpointRow = Selectable<ImportCheckpointsTable>;
export type ReactionInput = { message_id: string; user_id: string; reaction: string; created_at: number };
/** What an import writes and may delete again later (table import_ids). */
export type ImportKind = 'user' | 'message' | 'config' | 'webhook';
/** System messages that name who joined a room (docs/chat.md): the importer takes join times from them. */
const JOIN_TYPES = ['joinRoom', 'addMember', 'addMembers'];
const CHUNK = 500;

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

  // --- what was imported (import_ids): a later run deletes here only what it imported itself

  async track(appId: string, source: string, kind: ImportKind, scope: string, ids: string[]): Promise<void> {
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += CHUNK) {
      await this.db
        .insertInto('import_ids')
        .values(unique.slice(i, i + CHUNK).map((id) => ({ app_id: appId, source, kind, scope, id })))
        .onConflict((oc) => oc.columns(['app_id', 'source', 'kind', 'scope', 'id']).doNothing())
        .execute();
    }
  }

  async tracked(appId: string, source: string, kind: ImportKind, scope = ''): Promise<string[]> {
    const rows = await this.db.selectFrom('import_ids').select('id').where('app_id', '=', appId).where('source', '=', source).where('kind', '=', kind).where('scope', '=', scope).orderBy('id').execute();
    return rows.map((r) => r.id);
  }

  private async untrack(appId: string, source: string, kind: ImportKind, scope: string, ids: string[] | 'all'): Promise<void> {
    let q = this.db.deleteFrom('import_ids').where('app_id', '=', appId).where('source', '=', source).where('kind', '=', kind).where('scope', '=', scope);
    if (ids !== 'all') {
      for (let i = 0; i < ids.length; i += CHUNK) await q.where('id', 'in', ids.slice(i, i + CHUNK)).execute();
      return;
    }
    await q.execute();
  }

  /** How many of the messages imported into a room are still stored here. */
  async importedMessageCount(appId: string, source: string, roomId: string): Promise<number> {
    const row = await this.db
      .selectFrom('import_ids as i')
      .innerJoin('messages as m', (j) => j.onRef('m.app_id', '=', 'i.app_id').onRef('m.id', '=', 'i.id'))
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('i.app_id', '=', appId)
      .where('i.source', '=', source)
      .where('i.kind', '=', 'message')
      .where('i.scope', '=', roomId)
      .where('m.room_id', '=', roomId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Ids of the messages imported into a room and still stored here, with `low <= id < high` (a bound left out is open). */
  async importedMessagesBetween(appId: string, source: string, roomId: string, low: string | null, high: string | null): Promise<string[]> {
    let q = this.db
      .selectFrom('import_ids as i')
      .innerJoin('messages as m', (j) => j.onRef('m.app_id', '=', 'i.app_id').onRef('m.id', '=', 'i.id'))
      .select('i.id')
      .where('i.app_id', '=', appId)
      .where('i.source', '=', source)
      .where('i.kind', '=', 'message')
      .where('i.scope', '=', roomId)
      .where('m.room_id', '=', roomId);
    if (low !== null) q = q.where('i.id', '>=', low);
    if (high !== null) q = q.where('i.id', '<', high);
    return (await q.orderBy('i.id').execute()).map((r) => r.id);
  }

  /** Deletes messages of a room (with their reactions and the hidden marks on them) the way the API deletes them. */
  async deleteMessages(appId: string, source: string, roomId: string, ids: string[]): Promise<number> {
    let n = 0;
    for (let i = 0; i < ids.length; i += CHUNK) n += await new MessagesRepo(this.db).delete(appId, roomId, ids.slice(i, i + CHUNK));
    await this.untrack(appId, source, 'message', roomId, ids);
    return n;
  }

  /** Deletes a room the way the API does (its messages, members, preferences, invitations, tags, bans) and what the import kept of it. */
  async deleteRoom(appId: string, source: string, roomId: string): Promise<boolean> {
    const n = await new RoomsRepo(this.db).delete(appId, roomId);
    await this.untrack(appId, source, 'message', roomId, 'all');
    await this.db.deleteFrom('import_checkpoints').where('app_id', '=', appId).where('source', '=', source).where('entity', '=', `room:${roomId}`).execute();
    return n > 0;
  }

  /** Deletes a user and their tokens, as `DELETE /admin/clients/:id` does. */
  async deleteUser(appId: string, source: string, userId: string): Promise<boolean> {
    const users = new UsersRepo(this.db);
    await users.deleteTokens(appId, userId);
    const gone = await users.delete(appId, userId);
    await this.untrack(appId, source, 'user', '', [userId]);
    return gone;
  }

  /**
   * When each member of a room joined, as the imported system messages (joinRoom, addMember, addMembers) tell:
   * the time of the latest one naming them.
   */
  async joinTimes(appId: string, roomId: string): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('messages')
      .select(['message_type', 'message', 'fields', 'sender_id', 'created_at'])
      .where('app_id', '=', appId)
      .where('room_id', '=', roomId)
      .where('message_type', 'in', JOIN_TYPES)
      .orderBy('id')
      .execute();
    const out = new Map<string, number>();
    for (const r of rows) for (const id of joinedIn(r)) out.set(id, r.created_at);
    return out;
  }

  /** Sets members' join times where they differ (after a room's history is imported); returns how many changed. */
  async setJoinTimes(appId: string, roomId: string, times: Array<{ user_id: string; joined_at: number }>): Promise<number> {
    const old = new Map((await this.db.selectFrom('room_members').select(['user_id', 'joined_at']).where('app_id', '=', appId).where('room_id', '=', roomId).execute()).map((m) => [m.user_id, Number(m.joined_at)]));
    let n = 0;
    for (const t of times) {
      const before = old.get(t.user_id);
      if (before === undefined || before === t.joined_at) continue;
      await this.db.updateTable('room_members').set({ joined_at: t.joined_at }).where('app_id', '=', appId).where('room_id', '=', roomId).where('user_id', '=', t.user_id).execute();
      n++;
    }
    return n;
  }

  // --- webhook endpoints

  /**
   * An endpoint as the source lists it (without its secret, which no API shows): a new one gets `secret`; a stored
   * one keeps its own. Returns the outcome, or 'key taken' when another endpoint here has its key.
   */
  async putWebhook(appId: string, row: Omit<EndpointRow, 'secret' | 'previous_secret' | 'previous_expires_at'>, secret: string): Promise<'created' | 'updated' | 'unchanged' | 'key taken'> {
    const repo = new WebhooksRepo(this.db);
    const old = await repo.endpoint(appId, row.id);
    if (row.key !== null) {
      const holder = await repo.endpointByKey(appId, row.key);
      if (holder && holder.id !== row.id) return 'key taken';
    }
    if (!old) {
      await repo.insertEndpoint({ ...row, secret, previous_secret: null, previous_expires_at: null });
      return 'created';
    }
    if (sameRow(old, row)) return 'unchanged';
    const { app_id: _a, id: _i, ...patch } = row;
    await this.db.updateTable('webhook_endpoints').set(patch).where('app_id', '=', appId).where('id', '=', row.id).execute();
    return 'updated';
  }

  /** Deletes an endpoint as the API does (its waiting deliveries end as failed). */
  async deleteWebhook(appId: string, source: string, id: string, now: number): Promise<boolean> {
    const repo = new WebhooksRepo(this.db);
    const gone = await repo.deleteEndpoint(appId, id);
    if (gone) await repo.failPendingOf(appId, id, now);
    await this.untrack(appId, source, 'webhook', '', [id]);
    return gone;
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

  /** Deletes config keys (the source deleted them); raises the config version when any was stored. */
  async deleteConfig(appId: string, source: string, keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const res = await this.db.deleteFrom('app_config').where('app_id', '=', appId).where('key', 'in', keys).executeTakeFirst();
    const n = Number(res.numDeletedRows);
    if (n) {
      await this.db
        .insertInto('app_config_versions')
        .values({ app_id: appId, version: 1 })
        .onConflict((oc) => oc.column('app_id').doUpdateSet((eb) => ({ version: eb(eb.ref('app_config_versions.version'), '+', 1) })))
        .execute();
    }
    await this.untrack(appId, source, 'config', '', keys);
    return n;
  }

  // --- rooms

  /**
   * Writes a room as given (row, tags, members, the members' preferences, bans, pending invitations), replacing what the target holds
   * for it; preferences, bans or invitations given as undefined are left as they are (and then so are the unread
   * counts of members in through a group). Returns 'created', 'updated' or 'unchanged'.
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
    // Without the members' own views (prefs undefined: a room read by its id), the unread count of users in through
    // a group is not shown: the stored one is kept.
    const oldByUser = new Map(oldMembers.map((m) => [m.user_id, m]));
    const sortedMembers = members
      .map((m) => (prefs === undefined && m.via !== null && oldByUser.has(m.user_id) ? { ...m, badge: oldByUser.get(m.user_id)!.badge } : m))
      .sort((a, b) => (a.user_id < b.user_id ? -1 : 1));
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

/** The users a join message names: its `member`, its `extra.members` / `extra.invitees`, an addMembers text's clients, or its sender. */
function joinedIn(r: { message_type: string; message: string; fields: string; sender_id: string | null }): string[] {
  const ids = new Set<string>();
  const idOf = (x: unknown) => (typeof x === 'string' ? x : x && typeof x === 'object' && typeof (x as { _id?: unknown })._id === 'string' ? (x as { _id: string })._id : undefined);
  const add = (x: unknown) => {
    const id = idOf(x);
    if (id !== undefined) ids.add(id);
  };
  let fields: Record<string, any> = {};
  try {
    fields = JSON.parse(r.fields) as Record<string, any>;
  } catch {
    // not JSON: no names from it
  }
  add(fields.member);
  for (const list of [fields.extra?.members, fields.extra?.invitees]) if (Array.isArray(list)) list.forEach(add);
  if (r.message_type === 'addMembers') {
    try {
      const text = JSON.parse(r.message) as unknown;
      const list = typeof text === 'string' ? (JSON.parse(text) as unknown) : text;
      if (Array.isArray(list)) list.forEach(add);
    } catch {
      // a text that is not a list of clients
    }
  }
  if (r.message_type === 'joinRoom' && ids.size === 0 && r.sender_id !== null) ids.add(r.sender_id);
  return [...ids];
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
