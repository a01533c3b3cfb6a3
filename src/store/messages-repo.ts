import type { Kysely, SelectQueryBuilder, Selectable } from 'kysely';
import { objectIdFloor } from '../lib/ids.js';
import type { Database, MessagesTable } from './schema.js';

type HistorySelect = SelectQueryBuilder<Database, 'messages', MessageRow>;

export type MessageRow = Selectable<MessagesTable>;

export interface HistoryQuery {
  roomId: string;
  /** Older/newer than this message id (ids are time-ordered); the anchor itself only when `inclusive`. */
  beforeId?: string;
  afterId?: string;
  inclusive?: boolean;
  /** Strictly after this time on `timeField`. */
  afterTime?: number;
  timeField: 'updated_at' | 'created_at' | 'message_time';
  order: 'asc' | 'desc';
  limit: number;
}

/** Messages, reactions and per-user hidden messages, scoped by application. */
export class MessagesRepo {
  constructor(private readonly db: Kysely<Database>) {}

  get(appId: string, id: string): Promise<MessageRow | undefined> {
    return this.db.selectFrom('messages').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  getMany(appId: string, ids: string[]): Promise<MessageRow[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('messages').selectAll().where('app_id', '=', appId).where('id', 'in', ids).execute();
  }

  async insert(row: MessageRow): Promise<void> {
    await this.db.insertInto('messages').values(row).execute();
  }

  async update(appId: string, id: string, patch: Partial<Omit<MessageRow, 'app_id' | 'id' | 'room_id'>>): Promise<void> {
    await this.db.updateTable('messages').set(patch).where('app_id', '=', appId).where('id', '=', id).execute();
  }

  async unpinRoom(appId: string, roomId: string, now: number): Promise<string[]> {
    const pinned = await this.db.selectFrom('messages').select('id').where('app_id', '=', appId).where('room_id', '=', roomId).where('pinned', '=', 1).execute();
    if (pinned.length) {
      await this.db.updateTable('messages').set({ pinned: 0, updated_at: now }).where('app_id', '=', appId).where('room_id', '=', roomId).where('pinned', '=', 1).execute();
    }
    return pinned.map((p) => p.id);
  }

  /**
   * One page of a room's history. Ordering is by id (= send order), which ties break nowhere.
   *
   * "Changed after T" (`afterTime` on `updated_at`, how clients catch up) is answered from two ranges, without an
   * index of every message's `updated_at`: keeping one cost each send a page of WAL per room (about a quarter of a
   * batch's writes). A message whose `updated_at` is still its `created_at` changed after T only if it was created
   * after T, and then its id is at least the floor of T's second (ids begin with their creation time); one edited,
   * recalled or pinned since has `updated_at <> created_at` and is in the partial index `messages_room_edited`.
   * Each range is read in id order up to the limit and the two are merged.
   */
  async history(appId: string, q: HistoryQuery): Promise<MessageRow[]> {
    const page = (extra?: (s: HistorySelect) => HistorySelect) => {
      let sel: HistorySelect = this.db.selectFrom('messages').selectAll().where('app_id', '=', appId).where('room_id', '=', q.roomId);
      if (q.beforeId !== undefined) sel = sel.where('id', q.inclusive ? '<=' : '<', q.beforeId);
      if (q.afterId !== undefined) sel = sel.where('id', q.inclusive ? '>=' : '>', q.afterId);
      if (q.afterTime !== undefined) sel = sel.where(q.timeField, '>', q.afterTime);
      if (extra) sel = extra(sel);
      return sel.orderBy('id', q.order).limit(q.limit).execute();
    };
    if (q.afterTime === undefined || q.timeField === 'message_time') return page();
    // Created after T: an id range (also all that `created_at > T` can match). The range starts at T's whole second:
    // this server's ids carry the milliseconds after the seconds, but ids imported from another server (MongoDB
    // ObjectIds, `imkit-server import`) have other characters there; the time condition above keeps it exact.
    const floor = objectIdFloor(Math.floor((q.afterTime + 1) / 1000) * 1000);
    if (q.timeField === 'created_at') return page((s) => s.where('id', '>=', floor));
    const [created, changed] = await Promise.all([
      page((s) => s.where('id', '>=', floor)),
      page((s) => s.where('updated_at', '<>', (eb) => eb.ref('created_at'))),
    ]);
    const byId = new Map<string, MessageRow>();
    for (const r of [...created, ...changed]) byId.set(r.id, r);
    const sign = q.order === 'asc' ? 1 : -1;
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -sign : a.id > b.id ? sign : 0)).slice(0, q.limit);
  }

  /** The room's messages (the stored count), or those sent after `afterTime` (counted). */
  async count(appId: string, roomId: string, afterTime?: number): Promise<number> {
    if (afterTime === undefined) {
      const row = await this.db.selectFrom('rooms').select('message_count').where('app_id', '=', appId).where('id', '=', roomId).executeTakeFirst();
      return Number(row?.message_count ?? 0);
    }
    let q = this.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('app_id', '=', appId).where('room_id', '=', roomId);
    if (afterTime !== undefined) q = q.where('message_time', '>', afterTime);
    return Number((await q.executeTakeFirstOrThrow()).n);
  }

  /** Messages after `afterId` (exclusive), for unread recounts. */
  async countAfter(appId: string, roomId: string, afterId: string | null, exceptSender: string): Promise<number> {
    let q = this.db
      .selectFrom('messages')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('app_id', '=', appId)
      .where('room_id', '=', roomId)
      .where((eb) => eb.or([eb('sender_id', 'is', null), eb('sender_id', '<>', exceptSender)]));
    if (afterId !== null) q = q.where('id', '>', afterId);
    return Number((await q.executeTakeFirstOrThrow()).n);
  }

  async latest(appId: string, roomId: string): Promise<MessageRow | undefined> {
    return this.db.selectFrom('messages').selectAll().where('app_id', '=', appId).where('room_id', '=', roomId).orderBy('id', 'desc').limit(1).executeTakeFirst();
  }

  async delete(appId: string, roomId: string, ids: string[] | 'all'): Promise<number> {
    let reactions = this.db.deleteFrom('message_reactions').where('app_id', '=', appId);
    let hidden = this.db.deleteFrom('user_deleted_messages').where('app_id', '=', appId).where('room_id', '=', roomId);
    let msgs = this.db.deleteFrom('messages').where('app_id', '=', appId).where('room_id', '=', roomId);
    if (ids === 'all') {
      reactions = reactions.where('message_id', 'in', this.db.selectFrom('messages').select('id').where('app_id', '=', appId).where('room_id', '=', roomId));
    } else {
      reactions = reactions.where('message_id', 'in', ids);
      hidden = hidden.where('message_id', 'in', ids);
      msgs = msgs.where('id', 'in', ids);
    }
    await reactions.execute();
    await hidden.execute();
    const res = await msgs.executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  // --- reactions

  reactionsOf(appId: string, messageIds: string[]): Promise<Array<{ message_id: string; user_id: string; reaction: string }>> {
    if (messageIds.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom('message_reactions')
      .select(['message_id', 'user_id', 'reaction'])
      .where('app_id', '=', appId)
      .where('message_id', 'in', messageIds)
      .orderBy('created_at')
      .orderBy('user_id')
      .execute();
  }

  async addReaction(appId: string, messageId: string, userId: string, reaction: string, now: number): Promise<void> {
    await this.db
      .insertInto('message_reactions')
      .values({ app_id: appId, message_id: messageId, user_id: userId, reaction, created_at: now })
      .onConflict((oc) => oc.columns(['app_id', 'message_id', 'user_id', 'reaction']).doNothing())
      .execute();
  }

  async removeReactions(appId: string, messageId: string, userId: string, reaction?: string): Promise<number> {
    let q = this.db.deleteFrom('message_reactions').where('app_id', '=', appId).where('message_id', '=', messageId).where('user_id', '=', userId);
    if (reaction !== undefined) q = q.where('reaction', '=', reaction);
    return Number((await q.executeTakeFirst()).numDeletedRows);
  }

  // --- messages a user hid for themself

  async hide(appId: string, userId: string, roomId: string, messageIds: string[], now: number): Promise<void> {
    if (messageIds.length === 0) return;
    await this.db
      .insertInto('user_deleted_messages')
      .values(messageIds.map((message_id) => ({ app_id: appId, user_id: userId, room_id: roomId, message_id, created_at: now })))
      .onConflict((oc) => oc.columns(['app_id', 'user_id', 'message_id']).doNothing())
      .execute();
  }

  async hiddenIds(appId: string, userId: string, roomId: string | undefined): Promise<string[]> {
    let q = this.db.selectFrom('user_deleted_messages').select('message_id').where('app_id', '=', appId).where('user_id', '=', userId);
    if (roomId !== undefined) q = q.where('room_id', '=', roomId);
    return (await q.orderBy('message_id').execute()).map((r) => r.message_id);
  }

  roomMessageIds(appId: string, roomId: string): Promise<string[]> {
    return this.db.selectFrom('messages').select('id').where('app_id', '=', appId).where('room_id', '=', roomId).orderBy('id').execute().then((r) => r.map((x) => x.id));
  }
}
