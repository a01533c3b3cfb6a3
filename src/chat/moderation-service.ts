import { AppError, invalidRequest } from '../errors.js';
import { iso } from '../lib/clock.js';
import { isUniqueViolation } from '../store/database.js';
import { ModerationRepo, type RoomBanRow, type UserBlockRow } from '../store/moderation-repo.js';
import { PrefsRepo } from '../store/prefs-repo.js';
import { RoomsRepo, type RoomRow } from '../store/rooms-repo.js';
import { UsersRepo } from '../store/users-repo.js';
import type { DomainEvent } from '../events/bus.js';
import { type ChatContext, parseTime, transact } from './chat-context.js';
import { authorize, type Caller, outranks, roleIn } from './policy.js';
import type { PrefsService } from './prefs-service.js';
import { renderUser } from './users-service.js';
import { memberSummary } from './render.js';
import { directRoomId, requireUser, type RoomsService } from './rooms-service.js';

type Json = Record<string, unknown>;

/**
 * Personal blocks (`/blockStatus/my`, spec K1-K3), room bans (`/blockStatus/room`, K4-K6) and the platform's mute
 * of a room's notifications for a user (K7/K8). The rules that use blocks and bans on every message path are in
 * moderation-rules.ts; this service manages the records. Every change is announced as one domain event.
 */
export class ModerationService {
  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
    private readonly prefs: PrefsService,
  ) {}

  // ---------------------------------------------------------------- personal blocks

  /** `POST /blockStatus/my/:blockee`: neither of the two can send in their direct room any more. */
  async block(caller: Caller, blockee: string): Promise<Json> {
    const blocker = requireUser(caller);
    if (blockee === blocker) throw new AppError('SELF_BLOCK_FORBIDDEN', 'Users cannot block themselves');
    const [user] = await new UsersRepo(this.ctx.db).getMany(caller.appId, [blockee]);
    if (!user) throw new AppError('USER_NOT_FOUND', `User ${blockee} does not exist`);
    const now = this.ctx.clock.now();
    const row: UserBlockRow = { app_id: caller.appId, blocker, blockee, created_at: now, updated_at: now };
    try {
      await new ModerationRepo(this.ctx.db).insertBlock(row);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('USER_ALREADY_BLOCKED', 'This user is already in your block list');
      throw err;
    }
    this.ctx.bus.emit({ type: 'user.blocked', appId: caller.appId, blocker, blockee, blocked: true });
    return this.renderBlock(row, 'id');
  }

  /** `GET /blockStatus/my`: the caller's own blocks, newest first. */
  async listBlocks(caller: Caller): Promise<{ data: Json[] }> {
    const blocker = requireUser(caller);
    const rows = await new ModerationRepo(this.ctx.db).blocksBy(caller.appId, blocker);
    return { data: await Promise.all(rows.map((r) => this.renderBlock(r, 'object'))) };
  }

  /** `GET /blockStatus/my/:blockee`: one of the caller's blocks. */
  async getBlock(caller: Caller, blockee: string): Promise<Json> {
    const blocker = requireUser(caller);
    const row = await new ModerationRepo(this.ctx.db).block(caller.appId, blocker, blockee);
    if (!row) throw blockNotFound();
    return this.renderBlock(row, 'object');
  }

  /** `DELETE /blockStatus/my/:blockee`: the removed record; the direct room and its history stay. */
  async unblock(caller: Caller, blockee: string): Promise<Json> {
    const blocker = requireUser(caller);
    const repo = new ModerationRepo(this.ctx.db);
    const row = await repo.block(caller.appId, blocker, blockee);
    if (!row || !(await repo.deleteBlock(caller.appId, blocker, blockee))) throw blockNotFound();
    this.ctx.bus.emit({ type: 'user.blocked', appId: caller.appId, blocker, blockee, blocked: false });
    return this.renderBlock({ ...row, updated_at: this.ctx.clock.now() }, 'id');
  }

  // ---------------------------------------------------------------- room bans

  /**
   * `POST /blockStatus/room/:roomID/:blockee`: the platform, the owner or a manager bans a user (member or not)
   * from sending, joining and reading the room, until `unblockAt` if given. Nobody bans a user of their own rank
   * or above, except the platform.
   */
  async ban(caller: Caller, roomId: string, blockee: string, unblockAt?: unknown): Promise<Json> {
    const now = this.ctx.clock.now();
    const rooms = new RoomsRepo(this.ctx.db);
    const room = await rooms.get(caller.appId, roomId);
    const [user] = await new UsersRepo(this.ctx.db).getMany(caller.appId, [blockee]);
    if (!room || !user) throw new AppError('ROOM_OR_USER_NOT_FOUND', room ? `User ${blockee} does not exist` : `Room ${roomId} not found`);
    const { role } = await this.rooms.access(caller, roomId, 'read');
    authorize(role, 'ban', room);
    if (blockee === caller.userId) throw new AppError('SELF_BLOCK_FORBIDDEN', 'Users cannot ban themselves');
    const targetRole = roleIn({ appId: caller.appId, userId: blockee, platform: false }, room, await rooms.member(caller.appId, roomId, blockee));
    if (!caller.platform && !outranks(role, targetRole)) throw new AppError('INSUFFICIENT_PERMISSIONS', `Only a stronger role can ban the room's ${targetRole === 'owner' ? 'owner' : 'managers'}`);
    const until = parseUnblockAt(unblockAt, now);
    const repo = new ModerationRepo(this.ctx.db);
    if (await repo.activeBan(caller.appId, roomId, blockee, now)) throw new AppError('USER_ALREADY_BLOCKED', 'This user is already blocked in this room');
    // An expired ban of the same user is replaced.
    const row: RoomBanRow = { app_id: caller.appId, room_id: roomId, user_id: blockee, banned_by: caller.userId, unblock_at: until, created_at: now, updated_at: now };
    const event: DomainEvent = { type: 'room.ban', appId: caller.appId, roomId, actorId: caller.userId, userId: blockee, banned: true, unblockAt: until };
    await transact(this.ctx, [event], (trx) => new ModerationRepo(trx).upsertBan(row));
    this.ctx.bus.emit(event);
    return this.renderBan(row, room, 'ids');
  }

  /** `GET /blockStatus/room/:roomID`: the active bans (platform, owner, managers). */
  async listBans(caller: Caller, roomId: string): Promise<{ data: Json[] }> {
    const { room, role } = await this.rooms.access(caller, roomId, 'read');
    authorize(role, 'ban', room);
    const rows = await new ModerationRepo(this.ctx.db).activeBans(caller.appId, roomId, this.ctx.clock.now());
    return { data: await Promise.all(rows.map((r) => this.renderBan(r, room, 'objects'))) };
  }

  /** `DELETE /blockStatus/room/:roomID/:blockee`: lifts an active ban; returns it with `updatedAt` = now. */
  async unban(caller: Caller, roomId: string, blockee: string): Promise<Json> {
    const now = this.ctx.clock.now();
    const { room, role } = await this.rooms.access(caller, roomId, 'read');
    authorize(role, 'ban', room);
    const repo = new ModerationRepo(this.ctx.db);
    const row = await repo.activeBan(caller.appId, roomId, blockee, now);
    if (!row) {
      // DELETE is idempotent: lifting a ban that is not in force answers with the current state, not an error.
      const [user] = await new UsersRepo(this.ctx.db).getMany(caller.appId, [blockee]);
      if (!user) throw new AppError('ROOM_OR_USER_NOT_FOUND', `User ${blockee} does not exist`);
      return { appID: caller.appId, blockee: memberSummary(blockee, user), blocker: null, room: room.id, banned: false };
    }
    const event: DomainEvent = { type: 'room.ban', appId: caller.appId, roomId, actorId: caller.userId, userId: blockee, banned: false, unblockAt: null };
    await transact(this.ctx, [event], (trx) => new ModerationRepo(trx).deleteBan(caller.appId, roomId, blockee));
    this.ctx.bus.emit(event);
    return this.renderBan({ ...row, updated_at: now }, room, 'ids');
  }

  // ---------------------------------------------------------------- admin mute

  /** `POST` / `DELETE /admin/clients/:uid/mute/:room`: what `/me/mute/:room` does, on behalf of `uid`. */
  async adminMute(caller: Caller, userId: string, roomId: string, muted: boolean): Promise<Json> {
    const [user] = await new UsersRepo(this.ctx.db).getMany(caller.appId, [userId]);
    if (!user) throw new AppError('CLIENT_NOT_FOUND', `Client ${userId} does not exist`);
    if (!(await new RoomsRepo(this.ctx.db).get(caller.appId, roomId))) throw new AppError('ROOM_NOT_FOUND', `Room ${roomId} not found`);
    // Unmuting a room that is not muted answers with the current state (an idempotent DELETE), changing nothing.
    if (!muted) {
      const mutedRooms = await new PrefsRepo(this.ctx.db).mutedRooms(caller.appId, userId);
      if (!mutedRooms.includes(roomId)) return renderUser(user, mutedRooms);
    }
    return this.prefs.mute({ appId: caller.appId, userId, platform: true }, roomId, muted);
  }

  // ---------------------------------------------------------------- rendering

  /** K1/K3 carry `room` as an id; K2 as a small room object. The room is the pair's direct room (maybe not created yet). */
  private async renderBlock(row: UserBlockRow, roomAs: 'id' | 'object'): Promise<Json> {
    const [blockee] = await new UsersRepo(this.ctx.db).getMany(row.app_id, [row.blockee]);
    const existing = await new ModerationRepo(this.ctx.db).directRoomOf(row.app_id, row.blocker, row.blockee);
    const roomId = existing?.id ?? directRoomId(row.blocker, row.blockee);
    const room = roomAs === 'id' ? roomId : { _id: roomId, roomType: 'direct', id: roomId, ...(existing ? { createdTimeMS: existing.created_at } : {}) };
    return {
      appID: row.app_id,
      blockee: memberSummary(row.blockee, blockee),
      blocker: row.blocker,
      room,
      createdAt: iso(row.created_at),
      updatedAt: iso(row.updated_at),
    };
  }

  /** K4/K6 carry `blocker` and `room` as ids; K5 as objects. */
  private async renderBan(row: RoomBanRow, room: RoomRow, as: 'ids' | 'objects'): Promise<Json> {
    const ids = [row.user_id, ...(row.banned_by ? [row.banned_by] : [])];
    const users = new Map((await new UsersRepo(this.ctx.db).getMany(row.app_id, ids)).map((u) => [u.id, u]));
    const out: Json = {
      appID: row.app_id,
      blockee: memberSummary(row.user_id, users.get(row.user_id)),
      blocker: as === 'ids' ? row.banned_by : row.banned_by === null ? null : memberSummary(row.banned_by, users.get(row.banned_by)),
      room: as === 'ids' ? room.id : { _id: room.id, roomType: room.room_type, id: room.id, createdTimeMS: room.created_at },
      createdAt: iso(row.created_at),
      updatedAt: iso(row.updated_at),
    };
    if (row.unblock_at !== null) {
      out.unblockAt = iso(row.unblock_at);
      out.unblockAtMS = row.unblock_at;
    }
    return out;
  }
}

function parseUnblockAt(value: unknown, now: number): number | null {
  if (value === undefined || value === null) return null;
  const t = parseTime(value);
  if (t === undefined || Number.isNaN(t)) throw invalidRequest('Invalid field unblockAt: use ISO-8601 or epoch milliseconds');
  if (t <= now) throw invalidRequest('Invalid field unblockAt: must be in the future');
  return t;
}

function blockNotFound(): AppError {
  return new AppError('BLOCK_NOT_FOUND', 'No block relationship exists with this user');
}
