import { AppError, invalidRequest } from '../errors.js';
import type { DomainEvent, PushRequest } from '../events/bus.js';
import { iso } from '../lib/clock.js';
import { isObjectId } from '../lib/ids.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { RoomsRepo, type RoomRow } from '../store/rooms-repo.js';
import type { ChatContext } from './chat-context.js';
import { parseTime, transact } from './chat-context.js';
import type { AppConfigService } from './config-service.js';
import { assertMaySend } from './moderation-rules.js';
import type { RoomSnapshot } from './room-cache.js';
import { authorize, type Caller } from './policy.js';
import type { RoomsService } from './rooms-service.js';

type Json = Record<string, unknown>;

/** Body keys with a meaning of their own; every other key of a sent message is stored and returned as sent. */
const CONTROL_KEYS = new Set([
  '_id', 'id', 'room', 'roomId', 'roomID', 'sender', 'message', 'messageType', 'reply', 'push', 'skipTotalBadge', 'appID',
  'messageTime', 'messageTimeMS', 'createdAt', 'createdAtMS', 'updatedAt', 'updatedAtMS', 'editedAt', 'editedAtMS',
  'pinned', 'reactions', 'reactionCount', 'isDeleted', '__v', '__proto__', 'constructor', 'prototype',
]);

export interface HistoryInput {
  beforeMessage?: string;
  afterMessage?: string;
  afterTime?: string;
  timeRangeField?: 'updatedAt' | 'createdAt' | 'messageTime';
  sortOrder?: 'asc' | 'desc';
  limit?: number;
}

export const DEFAULT_PAGE = 20;
export const MAX_PAGE = 200;

/** Sending, editing, recalling, reading, deleting and pinning messages. */
export class MessagesService {
  /** Settles once the last message stored so far has been announced (or has failed to render). */
  private announced: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
    private readonly config: AppConfigService,
  ) {}

  /**
   * `POST /rooms/:id/message` and socket `chat message`: a new message from the caller; with an existing `_id` an
   * edit (the stored type is kept, `editedAt` set); with `messageType: "recall"` a recall.
   */
  async send(caller: Caller, roomId: string, body: Json): Promise<Json> {
    const id = typeof body._id === 'string' ? body._id : undefined;
    if (body.messageType === 'recall') {
      if (!id) throw invalidRequest('Missing required field: _id (the message to recall)');
      return this.recall(caller, roomId, id);
    }
    if (id !== undefined) return this.edit(caller, roomId, id, body);
    return this.create(caller, roomId, caller.userId, body);
  }

  /**
   * A room webhook's reply (docs/webhooks.md, bot replies): `data` posted into the room as `senderId` (null: no
   * sender), as the platform would. The room's own webhook is not told of it, or a bot would answer itself.
   */
  async botReply(appId: string, roomId: string, senderId: string | null, data: Json): Promise<Json> {
    return this.create({ appId, userId: null, platform: true }, roomId, senderId, data, true);
  }

  /** `POST /messages`: the platform sends as anyone (`sender`), even to a room the sender is not in. */
  async adminSend(caller: Caller, body: Json): Promise<Json> {
    const roomId = body.room as string;
    return adminAnswer(await this.create({ ...caller, platform: true }, roomId, (body.sender as string | undefined) ?? null, body), body);
  }

  /**
   * The answer of a send whose first try stored `messageId` and lost its answer (docs/reliability.md, Idempotency):
   * the message as it is stored now. No access decision is made again: the id comes from the caller's own key,
   * which that try's send (after the policy allowed it) recorded with the message; it is the caller's own send.
   * `admin`: as `POST /messages` answers (`body` is that request's).
   */
  async sent(caller: Caller, messageId: string, admin?: { body: Json }): Promise<Json> {
    const msg = await this.ctx.render.renderStoredMessage(caller.appId, messageId);
    if (!msg) throw new AppError('NOT_FOUND', 'The message this key sent no longer exists');
    return admin ? adminAnswer(msg, admin.body) : msg;
  }

  private async create(caller: Caller, roomId: string, senderId: string | null, body: Json, fromBot = false): Promise<Json> {
    const now = this.ctx.clock.now();
    const { snap } = await this.rooms.accessCached(caller, roomId, 'send');
    const room = snap.room;
    if (room.status === 0 && !caller.platform) throw new AppError('ROOM_FROZEN', 'This room is frozen: no new messages can be sent');
    const messageType = body.messageType === undefined ? 'text' : body.messageType;
    if (typeof messageType !== 'string' || messageType.length === 0 || messageType.length > 64) throw invalidRequest('Invalid field messageType: must be a string of 1-64 characters');
    await assertMaySend(this.ctx.db, snap, senderId, now);
    const fields = this.fieldsOf(body);
    const replyId = await this.replyTarget(caller.appId, room, body.reply);
    const message = await this.config.censorMessage(caller.appId, messageType, body.message ?? '');
    const json = this.checkSize(message, fields);
    const push = pushRequest(body);
    const row = await this.ctx.writer.append({ appId: caller.appId, roomId, senderId, messageType, message, fields, replyId, now, json, webhook: { room: room.webhook, fromBot }, push });
    // The messages of one group commit resume here in the order they were stored, and each takes its place in
    // the announcement order before anything is awaited. Rendering may wait for the store (a user cache miss; on
    // PostgreSQL two of them run on different connections), so without the queue a later message could be
    // announced before an earlier one.
    const previous = this.announced;
    let announced!: () => void;
    this.announced = new Promise<void>((resolve) => (announced = resolve));
    try {
      const rendered = await this.ctx.render.renderNewMessage(caller.appId, row, { message, fields });
      await previous;
      this.emit({ type: 'message.created', appId: caller.appId, roomId, messageId: row.id, senderId, system: false, message: rendered, ...(push ? { push } : {}) });
      return rendered;
    } finally {
      announced();
    }
  }

  private async edit(caller: Caller, roomId: string, messageId: string, body: Json): Promise<Json> {
    const now = this.ctx.clock.now();
    const { snap, msg } = await this.ownMessage(caller, roomId, messageId);
    const room = snap.room;
    if (room.status === 0 && !caller.platform) throw new AppError('ROOM_FROZEN', 'This room is frozen: messages cannot be changed');
    if (msg.message_type === 'recall') throw invalidRequest('A recalled message cannot be edited');
    await assertMaySend(this.ctx.db, snap, caller.userId, now);
    const fields = { ...(JSON.parse(msg.fields) as Json), ...this.fieldsOf(body) };
    const message = 'message' in body ? await this.config.censorMessage(caller.appId, msg.message_type, body.message) : JSON.parse(msg.message);
    this.checkSize(message, fields);
    const replyId = 'reply' in body ? await this.replyTarget(caller.appId, room, body.reply) : msg.reply_id;
    const event: DomainEvent = { type: 'message.updated', appId: caller.appId, roomId, messageId, actorId: caller.userId, change: 'edit' };
    await transact(this.ctx, [event], (trx) =>
      new MessagesRepo(trx).update(caller.appId, messageId, {
        message: JSON.stringify(message ?? ''),
        fields: JSON.stringify(fields),
        reply_id: replyId,
        edited_at: now,
        updated_at: now,
      }),
    );
    this.emit(event);
    return this.render(caller.appId, messageId);
  }

  private async recall(caller: Caller, roomId: string, messageId: string): Promise<Json> {
    const now = this.ctx.clock.now();
    await this.ownMessage(caller, roomId, messageId);
    // Recall removes the content for everyone; what remains says who sent what kind of message, when.
    const event: DomainEvent = { type: 'message.updated', appId: caller.appId, roomId, messageId, actorId: caller.userId, change: 'recall' };
    await transact(this.ctx, [event], (trx) =>
      new MessagesRepo(trx).update(caller.appId, messageId, { message: '""', message_type: 'recall', fields: '{}', reply_id: null, pinned: 0, updated_at: now }),
    );
    this.emit(event);
    return this.render(caller.appId, messageId);
  }

  // ---------------------------------------------------------------- reading

  /** `GET /rooms/:id/messages/v3`. */
  /**
   * The anchor of `beforeMessage`/`afterMessage` is part of the page, as its first element (the Vue SDK drops
   * element 0 of every anchored page; Flutter de-duplicates by id). The legacy route excludes it.
   */
  async history(caller: Caller, roomId: string, q: HistoryInput, inclusive = true): Promise<{ totalCount: number; data: Json[]; userDeletedIDs: string[] }> {
    await this.rooms.accessCached(caller, roomId, 'read');
    const limit = q.limit ?? DEFAULT_PAGE;
    const order = q.sortOrder ?? 'desc';
    const repo = new MessagesRepo(this.ctx.db);
    for (const [name, v] of [['beforeMessage', q.beforeMessage], ['afterMessage', q.afterMessage]] as const) {
      if (v !== undefined && !isObjectId(v)) throw invalidRequest(`Invalid query parameter ${name}: must be a message id`);
    }
    const afterTime = parseTime(q.afterTime);
    if (afterTime !== undefined && Number.isNaN(afterTime)) throw invalidRequest('Invalid query parameter afterTime: use ISO-8601 or epoch milliseconds');
    const timeField = ({ updatedAt: 'updated_at', createdAt: 'created_at', messageTime: 'message_time' } as const)[q.timeRangeField ?? 'updatedAt'];
    // Forward anchors (sync) take the messages right after the anchor; otherwise the newest before it.
    const forward = q.afterMessage !== undefined || afterTime !== undefined;
    const rows = await repo.history(caller.appId, {
      roomId,
      beforeId: q.beforeMessage,
      afterId: q.afterMessage,
      inclusive,
      afterTime,
      timeField,
      order: forward ? 'asc' : 'desc',
      limit,
    });
    if ((forward ? 'asc' : 'desc') !== order) rows.reverse();
    const [totalCount, hidden] = await Promise.all([
      repo.count(caller.appId, roomId),
      caller.userId ? repo.hiddenIds(caller.appId, caller.userId, roomId) : Promise.resolve([]),
    ]);
    return { totalCount, data: await this.ctx.render.renderMessages(caller.appId, rows), userDeletedIDs: hidden };
  }

  /** `GET /rooms/:id/messages` (legacy): newest first, `beforeMessage` pages back. */
  async legacyHistory(caller: Caller, roomId: string, q: { beforeMessage?: string; limit?: number }): Promise<{ totalCount: number; data: Json[] }> {
    const { totalCount, data } = await this.history(caller, roomId, { beforeMessage: q.beforeMessage, limit: q.limit, sortOrder: 'desc' }, false);
    return { totalCount, data };
  }

  /** `GET /rooms/:id/messages/:messageId`: the message with up to `before` older and `after` newer ones, oldest first. */
  async around(caller: Caller, roomId: string, messageId: string, before: number, after: number): Promise<{ totalCount: number; data: Json[] }> {
    await this.rooms.accessCached(caller, roomId, 'read');
    const repo = new MessagesRepo(this.ctx.db);
    const anchor = await repo.get(caller.appId, messageId);
    if (!anchor || anchor.room_id !== roomId) throw messageNotFound(messageId);
    const base = { roomId, timeField: 'updated_at' as const };
    const older = before > 0 ? await repo.history(caller.appId, { ...base, beforeId: messageId, order: 'desc', limit: before }) : [];
    const newer = after > 0 ? await repo.history(caller.appId, { ...base, afterId: messageId, order: 'asc', limit: after }) : [];
    const rows = [...older.reverse(), anchor, ...newer];
    return { totalCount: await repo.count(caller.appId, roomId), data: await this.ctx.render.renderMessages(caller.appId, rows) };
  }

  // ---------------------------------------------------------------- deleting and pinning

  /** `DELETE /rooms/:id/messages/:messageId` (or `_all`): gone for everyone. */
  async delete(caller: Caller, roomId: string, messageId: string): Promise<Json> {
    const now = this.ctx.clock.now();
    const { room, role } = await this.rooms.access(caller, roomId, 'read');
    authorize(role, 'deleteMessages', room);
    const all = messageId === '_all';
    let deletedCount = 0;
    const event: DomainEvent = { type: 'messages.deleted', appId: caller.appId, roomId, messageIds: all ? 'all' : [messageId], actorId: caller.userId };
    await transact(this.ctx, [event], async (trx) => {
      const repo = new MessagesRepo(trx);
      if (!all) {
        const msg = await repo.get(caller.appId, messageId);
        if (!msg || msg.room_id !== roomId) throw messageNotFound(messageId);
      }
      deletedCount = await repo.delete(caller.appId, roomId, all ? 'all' : [messageId]);
      const latest = await repo.latest(caller.appId, roomId);
      const rooms = new RoomsRepo(trx);
      await rooms.update(caller.appId, roomId, { last_message_id: latest?.id ?? null, updated_at: now });
      await rooms.recountMessages(caller.appId, roomId);
    });
    this.emit(event);
    return { deletedCount, roomID: roomId, messageID: messageId, deletedBy: caller.userId ?? 'admin', deletedAt: iso(now) };
  }

  /** `POST`/`DELETE /messages/:id/pin`: one pinned message per room. */
  async pin(caller: Caller, messageId: string, pinned: boolean): Promise<Json> {
    const now = this.ctx.clock.now();
    const msg = await new MessagesRepo(this.ctx.db).get(caller.appId, messageId);
    if (!msg) throw messageNotFound(messageId);
    const { room, role } = await this.rooms.access(caller, msg.room_id, 'read');
    authorize(role, 'pin', room);
    await this.ctx.db.transaction().execute(async (trx) => {
      const repo = new MessagesRepo(trx);
      if (pinned) await repo.unpinRoom(caller.appId, room.id, now);
      await repo.update(caller.appId, messageId, { pinned: pinned ? 1 : 0, updated_at: now });
    });
    this.emit({ type: 'message.updated', appId: caller.appId, roomId: room.id, messageId, actorId: caller.userId, change: pinned ? 'pin' : 'unpin' });
    return this.render(caller.appId, messageId);
  }

  // ---------------------------------------------------------------- batch send

  /** Checks a batch template once, when the batch is accepted, before any recipient is queued. */
  checkBatchTemplate(template: Json): void {
    if (typeof template.messageType !== 'string' || template.messageType.length === 0 || template.messageType.length > 64) {
      throw invalidRequest('Invalid field messageType: must be a string of 1-64 characters');
    }
    this.checkSize(template.message, this.fieldsOf(template));
  }

  /** The stored form of one batch recipient's message, under the same rules as any other send. */
  async prepareBatchMessage(appId: string, body: Json): Promise<{ messageType: string; message: unknown; fields: Json; replyId: null }> {
    const fields = this.fieldsOf(body);
    const message = await this.config.censorMessage(appId, body.messageType as string, body.message);
    this.checkSize(message, fields);
    return { messageType: body.messageType as string, message, fields, replyId: null };
  }

  // ---------------------------------------------------------------- helpers

  /** Loads a message of a room that the caller may change: their own, or any for managers and up. */
  private async ownMessage(caller: Caller, roomId: string, messageId: string): Promise<{ snap: RoomSnapshot; msg: MessageRow }> {
    const { snap, role } = await this.rooms.accessCached(caller, roomId, 'read');
    const msg = await new MessagesRepo(this.ctx.db).get(caller.appId, messageId);
    if (!msg || msg.room_id !== roomId) throw messageNotFound(messageId);
    if (msg.sender_id === null || msg.sender_id !== caller.userId) authorize(role, 'moderateMessages', snap.room);
    return { snap, msg };
  }

  private fieldsOf(body: Json): Json {
    const out: Json = {};
    for (const k in body) if (Object.prototype.hasOwnProperty.call(body, k) && !CONTROL_KEYS.has(k)) out[k] = body[k];
    if (out.mentions !== undefined && (!Array.isArray(out.mentions) || !out.mentions.every((m) => typeof m === 'string'))) {
      throw invalidRequest('Invalid field mentions: must be an array of user ids');
    }
    return out;
  }

  /** Refuses a message whose stored JSON would be too large; returns that JSON. */
  private checkSize(message: unknown, fields: Json): { message: string; fields: string } {
    const json = { message: JSON.stringify(message ?? ''), fields: JSON.stringify(fields) };
    const bytes = Buffer.byteLength(json.message) + Buffer.byteLength(json.fields);
    if (bytes > this.ctx.limits.maxMessageBytes) {
      throw new AppError('MESSAGE_TOO_LARGE', `A message may be at most ${this.ctx.limits.maxMessageBytes} bytes of JSON; this one is ${bytes}`);
    }
    return json;
  }

  private async replyTarget(appId: string, room: RoomRow, reply: unknown): Promise<string | null> {
    if (reply === undefined || reply === null || reply === '') return null;
    const id = typeof reply === 'string' ? reply : typeof reply === 'object' && typeof (reply as Json)._id === 'string' ? ((reply as Json)._id as string) : undefined;
    if (id === undefined) throw invalidRequest('Invalid field reply: must be a message id');
    const target = await new MessagesRepo(this.ctx.db).get(appId, id);
    if (!target || target.room_id !== room.id) throw new AppError('MESSAGE_NOT_FOUND', `Reply target ${id} is not a message of this room`);
    return id;
  }

  private async render(appId: string, messageId: string): Promise<Json> {
    const row = await new MessagesRepo(this.ctx.db).get(appId, messageId);
    if (!row) throw messageNotFound(messageId);
    return this.ctx.render.renderMessage(appId, row);
  }

  private emit(e: DomainEvent): void {
    this.ctx.bus.emit(e);
  }
}

export function messageNotFound(id: string): AppError {
  return new AppError('MESSAGE_NOT_FOUND', `Message ${id} not found`);
}

/** The most characters of a custom push text (`push: "..."`). */
export const MAX_PUSH_TEXT = 1_000;

/**
 * A send's push options (docs/push.md): `push` true or absent notifies the offline members, false does not, a
 * string notifies them with that text instead of the message's; `skipTotalBadge` leaves the badge out of the push.
 */
export function pushRequest(body: Json, byDefault = true): PushRequest | undefined {
  const p = body.push;
  if (p !== undefined && p !== null && typeof p !== 'boolean' && typeof p !== 'string') throw invalidRequest('Invalid field push: must be a boolean or a string (the push text)', { field: 'push' });
  if (typeof p === 'string' && (p.length === 0 || p.length > MAX_PUSH_TEXT)) throw invalidRequest(`Invalid field push: a push text has 1-${MAX_PUSH_TEXT} characters`, { field: 'push' });
  if (body.skipTotalBadge !== undefined && typeof body.skipTotalBadge !== 'boolean') throw invalidRequest('Invalid field skipTotalBadge: must be a boolean', { field: 'skipTotalBadge' });
  if (p === false || ((p === undefined || p === null) && !byDefault)) return undefined;
  const out: PushRequest = {};
  if (typeof p === 'string') out.text = p;
  if (body.skipTotalBadge === true) out.skipTotalBadge = true;
  return out;
}

/** The documented response of `POST /messages` carries the sender as an id, not an object. */
function adminAnswer(msg: Json, body: Json): Json {
  return { ...msg, sender: body.sender ?? null };
}
