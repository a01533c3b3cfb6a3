import { AppError, invalidRequest } from '../errors.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { RoomsRepo, type RoomRow } from '../store/rooms-repo.js';
import type { ChatContext } from './chat-context.js';
import { messageNotFound } from './messages-service.js';
import type { Caller } from './policy.js';
import { requireUser, type RoomsService } from './rooms-service.js';

type Json = Record<string, unknown>;

export const MAX_REACTION = 64;

/**
 * Reactions on messages (`POST`/`DELETE /messages/:id/reaction`). A user may leave several different reactions
 * on one message; the same one twice is a no-op. A change bumps the message's `updatedAt` (so clients syncing
 * by `updatedAt` see it) and is announced as `message.updated` with change "reaction"; a no-op is not.
 */
export class ReactionsService {
  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
  ) {}

  /** Adds the caller's reaction; only members of the message's room may react. Returns the message. */
  async react(caller: Caller, messageId: string, reaction: string): Promise<Json> {
    const userId = requireUser(caller);
    if (typeof reaction !== 'string' || reaction.length === 0 || [...reaction].length > MAX_REACTION) {
      throw invalidRequest(`Invalid field reaction: must be a string of 1-${MAX_REACTION} characters`);
    }
    const { msg, room } = await this.load(caller, messageId);
    await requireMember(this.ctx, caller, room, userId);
    const now = this.ctx.clock.now();
    const added = await this.ctx.db.transaction().execute(async (trx) => {
      const repo = new MessagesRepo(trx);
      const existing = await repo.reactionsOf(caller.appId, [messageId]);
      if (existing.some((r) => r.user_id === userId && r.reaction === reaction)) return false;
      await repo.addReaction(caller.appId, messageId, userId, reaction, now);
      await repo.update(caller.appId, messageId, { updated_at: now });
      return true;
    });
    if (added) this.ctx.bus.emit({ type: 'message.updated', appId: caller.appId, roomId: msg.room_id, messageId, actorId: userId, change: 'reaction' });
    return this.render(caller.appId, messageId);
  }

  /** Removes one reaction of the caller, or all of theirs on the message when `reaction` is absent. */
  async unreact(caller: Caller, messageId: string, reaction: string | undefined): Promise<Json> {
    const userId = requireUser(caller);
    const { msg } = await this.load(caller, messageId);
    const now = this.ctx.clock.now();
    const removed = await this.ctx.db.transaction().execute(async (trx) => {
      const repo = new MessagesRepo(trx);
      const n = await repo.removeReactions(caller.appId, messageId, userId, reaction);
      if (n > 0) await repo.update(caller.appId, messageId, { updated_at: now });
      return n;
    });
    if (removed > 0) this.ctx.bus.emit({ type: 'message.updated', appId: caller.appId, roomId: msg.room_id, messageId, actorId: userId, change: 'reaction' });
    return this.render(caller.appId, messageId);
  }

  /** The message and its room, refusing callers who may not read the room and changes to frozen rooms. */
  private async load(caller: Caller, messageId: string): Promise<{ msg: MessageRow; room: RoomRow }> {
    const msg = await new MessagesRepo(this.ctx.db).get(caller.appId, messageId);
    if (!msg) throw messageNotFound(messageId);
    const { room } = await this.rooms.access(caller, msg.room_id, 'read');
    if (room.status === 0 && !caller.platform) throw new AppError('ROOM_FROZEN', 'This room is frozen: reactions cannot be changed');
    return { msg, room };
  }

  private async render(appId: string, messageId: string): Promise<Json> {
    const row = await new MessagesRepo(this.ctx.db).get(appId, messageId);
    if (!row) throw messageNotFound(messageId);
    return this.ctx.render.renderMessage(appId, row);
  }
}

/** The API key acting as a user (IM-CLIENT-ID) passes every room check; the user must still be a member. */
export async function requireMember(ctx: ChatContext, caller: Caller, room: RoomRow, userId: string): Promise<void> {
  if (!caller.platform) return; // access() already required membership
  if (!(await new RoomsRepo(ctx.db).member(caller.appId, room.id, userId))) throw new AppError('NOT_ROOM_MEMBER', `${userId} is not a member of this room`);
}
