import { AppError } from '../errors.js';
import { MessagesRepo } from '../store/messages-repo.js';
import type { ChatContext } from './chat-context.js';
import type { Caller } from './policy.js';
import { requireMember } from './reactions-service.js';
import { requireUser, type RoomsService } from './rooms-service.js';

/** Rows per INSERT when hiding a whole room (keeps bound parameters far below both databases' limits). */
const CHUNK = 1000;

/**
 * Messages a user deleted for themself (`/messages/user-delete*`): they stay in the room for everyone else and
 * appear in that user's `userDeletedIDs` of `GET /rooms/:id/messages/v3`. Each change that hides something new is
 * announced once as `messages.userDeleted` (to that user's other devices); repeating it is a no-op.
 */
export class HiddenMessagesService {
  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
  ) {}

  /** `POST /messages/user-delete`: every id must be a message of the room. Returns the caller's hidden ids there. */
  async hide(caller: Caller, roomId: string, ids: string[]): Promise<{ totalCount: number; data: string[] }> {
    const userId = requireUser(caller);
    const { room } = await this.rooms.access(caller, roomId, 'read');
    await requireMember(this.ctx, caller, room, userId);
    const wanted = [...new Set(ids)];
    const found = new Set((await new MessagesRepo(this.ctx.db).getMany(caller.appId, wanted)).filter((m) => m.room_id === roomId).map((m) => m.id));
    const missing = wanted.find((id) => !found.has(id));
    if (missing !== undefined) throw new AppError('MESSAGE_NOT_FOUND', `Message ${missing} not found in this room`);
    return this.hideIds(caller.appId, userId, roomId, wanted, false);
  }

  /** `POST /messages/user-delete/all-in-room`: every message the room holds now. */
  async hideAll(caller: Caller, roomId: string): Promise<{ totalCount: number; data: string[] }> {
    const userId = requireUser(caller);
    const { room } = await this.rooms.access(caller, roomId, 'read');
    await requireMember(this.ctx, caller, room, userId);
    const ids = await new MessagesRepo(this.ctx.db).roomMessageIds(caller.appId, roomId);
    return this.hideIds(caller.appId, userId, roomId, ids, true);
  }

  /** `GET /messages/user-delete?room=`: the caller's hidden ids, in one room or all. */
  async hidden(caller: Caller, roomId: string | undefined): Promise<{ totalCount: number; data: string[] }> {
    const userId = requireUser(caller);
    // The ids the caller hid are their own: a banned member still sees them.
    if (roomId !== undefined) await this.rooms.access(caller, roomId, 'ownState');
    const data = await new MessagesRepo(this.ctx.db).hiddenIds(caller.appId, userId, roomId);
    return { totalCount: data.length, data };
  }

  /** The socket `userDeleteMessages` event's ids after a whole room was hidden: every id the user hides there. */
  hiddenIdsOf(appId: string, userId: string, roomId: string): Promise<string[]> {
    return new MessagesRepo(this.ctx.db).hiddenIds(appId, userId, roomId);
  }

  private async hideIds(appId: string, userId: string, roomId: string, ids: string[], wholeRoom: boolean): Promise<{ totalCount: number; data: string[] }> {
    const now = this.ctx.clock.now();
    const { fresh, data } = await this.ctx.db.transaction().execute(async (trx) => {
      const repo = new MessagesRepo(trx);
      const before = new Set(await repo.hiddenIds(appId, userId, roomId));
      const fresh = ids.filter((id) => !before.has(id));
      for (let i = 0; i < fresh.length; i += CHUNK) await repo.hide(appId, userId, roomId, fresh.slice(i, i + CHUNK), now);
      return { fresh, data: await repo.hiddenIds(appId, userId, roomId) };
    });
    if (fresh.length) this.ctx.bus.emit({ type: 'messages.userDeleted', appId, roomId, userId, messageIds: wholeRoom ? 'all' : fresh });
    return { totalCount: data.length, data };
  }
}
