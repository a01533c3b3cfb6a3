import { AppError, invalidRequest } from '../errors.js';
import type { DomainEvent } from '../events/bus.js';
import { BadgesRepo } from '../store/badges-repo.js';
import { PrefsRepo, type RoomPrefRow } from '../store/prefs-repo.js';
import { RoomsRepo } from '../store/rooms-repo.js';
import { UsersRepo, type UserRow } from '../store/users-repo.js';
import type { ChatContext } from './chat-context.js';
import type { WebhookFact } from '../webhooks/outbox.js';
import type { Caller } from './policy.js';
import { requireUser, type RoomsService } from './rooms-service.js';
import { memberSummary } from './render.js';
import { renderUser } from './users-service.js';

type Json = Record<string, unknown>;

/** What `POST /roomPrefs/:id` may set; absent fields keep their stored value, `null` clears folder/translation. */
export interface RoomPrefPatch {
  tags?: unknown;
  tagColors?: unknown;
  folder?: unknown;
  hidden?: unknown;
  sticky?: unknown;
  muted?: unknown;
  translation?: unknown;
}

export const MAX_USER_PREF_BYTES = 64 * 1024;
export const MAX_TAG_LENGTH = 256;
const MAX_TAGS = 100;
const MAX_SCOPE_LENGTH = 128;
const MAX_KEY_LENGTH = 256;
const MAX_FOLDER_LENGTH = 256;
const MAX_TRANSLATION_BYTES = 4096;
const MAX_TYPING_BYTES = 4096;
const COLOR = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$/;

/**
 * A user's own settings: notification mute, per-room preferences (personal tags, folder, hidden, sticky...),
 * free-form preferences by key, typing indicators and unread badge sums. Every method acts as one user: the API
 * key must name it with IM-CLIENT-ID. Changes are committed first, then announced as one domain event.
 */
export class PrefsService {
  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
  ) {}

  // ---------------------------------------------------------------- mute

  /** `POST` / `DELETE /me/mute/:room`: no notifications from the room for the caller; returns their Client with `mute`. */
  async mute(caller: Caller, roomId: string, muted: boolean): Promise<Json> {
    const user = await this.actingUser(caller);
    await this.rooms.access(caller, roomId, 'ownState');
    // The outbox row (user.muted / user.unmuted) is written with the change, when the mute state changes.
    const fact = (before: number): WebhookFact[] =>
      before === (muted ? 1 : 0) ? [] : [{ type: muted ? 'user.muted' : 'user.unmuted', appId: caller.appId, roomId, facts: { userId: user.id, actorId: caller.userId } }];
    await this.writeRoomPref(caller.appId, user.id, roomId, '', (current) => ({ data: current.data, muted: muted ? 1 : 0 }), fact);
    this.emit({ type: 'roomPref.changed', appId: caller.appId, roomId, userId: user.id, scope: '' });
    return renderUser(user, await new PrefsRepo(this.ctx.db).mutedRooms(caller.appId, user.id));
  }

  // ---------------------------------------------------------------- room preferences

  /** `POST /roomPrefs/:id` (scope '') and `POST /roomPrefs/:id/group/:tag` (scope = the room tag). */
  async setRoomPref(caller: Caller, roomId: string, scope: string, patch: RoomPrefPatch): Promise<Json> {
    const { id: userId } = await this.actingUser(caller);
    if (scope.length > MAX_SCOPE_LENGTH) throw invalidRequest(`A room tag scope may be at most ${MAX_SCOPE_LENGTH} characters`);
    const changes = roomPrefChanges(patch ?? {});
    await this.rooms.access(caller, roomId, 'ownState');
    const row = await this.writeRoomPref(caller.appId, userId, roomId, scope, (current) => {
      const data = { ...(JSON.parse(current.data) as Json), ...changes.data };
      for (const k of changes.cleared) delete data[k];
      return { data: JSON.stringify(data), muted: changes.muted === undefined ? current.muted : changes.muted ? 1 : 0 };
    });
    this.emit({ type: 'roomPref.changed', appId: caller.appId, roomId, userId, scope });
    return { room: roomId, ...(scope ? { roomTag: scope } : {}), ...renderPref(row) };
  }

  // ---------------------------------------------------------------- user preferences

  /** `GET /me/pref`: every preference of the caller, by key. */
  async userPrefs(caller: Caller): Promise<Array<{ key: string; data: unknown }>> {
    const { id: userId } = await this.actingUser(caller);
    const rows = await new PrefsRepo(this.ctx.db).userPrefs(caller.appId, userId);
    return rows.map((r) => ({ key: r.key, data: JSON.parse(r.data) as unknown }));
  }

  /** `POST /me/pref/:key`: the body (any JSON value) becomes the preference, replacing the previous one. */
  async setUserPref(caller: Caller, key: string, data: unknown): Promise<{ key: string; data: unknown }> {
    const { id: userId } = await this.actingUser(caller);
    checkKey(key);
    if (data === undefined || data === null) throw invalidRequest('A JSON body (the preference value) is required; use DELETE to remove a preference');
    const text = JSON.stringify(data);
    if (Buffer.byteLength(text) > MAX_USER_PREF_BYTES) throw new AppError('PAYLOAD_TOO_LARGE', `A preference may hold at most ${MAX_USER_PREF_BYTES} bytes of JSON`);
    await new PrefsRepo(this.ctx.db).upsertUserPref({ app_id: caller.appId, user_id: userId, key, data: text, updated_at: this.ctx.clock.now() });
    this.emit({ type: 'userPref.changed', appId: caller.appId, userId, key, deleted: false });
    return { key, data };
  }

  /** `DELETE /me/pref/:key`. */
  async deleteUserPref(caller: Caller, key: string): Promise<{ key: string; deleted: true }> {
    const { id: userId } = await this.actingUser(caller);
    checkKey(key);
    if (!(await new PrefsRepo(this.ctx.db).deleteUserPref(caller.appId, userId, key))) throw new AppError('PREF_NOT_FOUND', `No preference with key ${key}`);
    this.emit({ type: 'userPref.changed', appId: caller.appId, userId, key, deleted: true });
    return { key, deleted: true };
  }

  // ---------------------------------------------------------------- typing

  /** `POST /rooms/:id/typing`: announced to the other members, never stored. */
  async typing(caller: Caller, roomId: string, message: unknown): Promise<Json> {
    const userId = requireUser(caller);
    const { room, member } = await this.rooms.access(caller, roomId, 'read');
    // The platform may read any room, but only a member can be typing in one.
    if (!member) throw new AppError('NOT_ROOM_MEMBER', `${userId} is not a member of this room`);
    if (room.status === 0) throw new AppError('ROOM_FROZEN', 'This room is frozen: no new messages can be sent');
    if (message !== undefined && Buffer.byteLength(JSON.stringify(message)) > MAX_TYPING_BYTES) throw invalidRequest(`Invalid field message: at most ${MAX_TYPING_BYTES} bytes`);
    this.emit({ type: 'typing', appId: caller.appId, roomId, userId, message: message ?? null });
    return { ...(message === undefined || message === null ? {} : { message }), room: roomId, sender: userId };
  }

  // ---------------------------------------------------------------- badges

  /** `GET /me/badge?roomTags=a&roomTags=b`: the caller's unread over active rooms having all the tags. */
  async badge(caller: Caller, roomTags: string[] = []): Promise<{ badge: number }> {
    const userId = requireUser(caller);
    const bad = roomTags.find((t) => typeof t !== 'string' || t.length === 0 || t.length > MAX_TAG_LENGTH);
    if (bad !== undefined || roomTags.length > MAX_TAGS) {
      throw new AppError('INVALID_ROOM_TAGS', `roomTags must be up to ${MAX_TAGS} non-empty tags of at most ${MAX_TAG_LENGTH} characters`);
    }
    return { badge: await new BadgesRepo(this.ctx.db).total(caller.appId, userId, roomTags) };
  }

  /**
   * `POST /badges/byRoomTags {tags}`: unread per room tag (every tag of the caller's rooms when `tags` is omitted
   * or empty; a requested tag without rooms shows 0) and `totalBadge`, the caller's unread over all active rooms.
   */
  async badgesByTags(caller: Caller, tags: unknown): Promise<{ totalBadge: number; data: Record<string, number> }> {
    const userId = requireUser(caller);
    if (tags !== undefined && tags !== null) {
      if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string' || t.length === 0 || t.length > MAX_TAG_LENGTH) || tags.length > MAX_TAGS) {
        throw new AppError('INVALID_TAGS', `tags must be an array of up to ${MAX_TAGS} non-empty strings of at most ${MAX_TAG_LENGTH} characters`);
      }
    }
    const wanted = Array.isArray(tags) && tags.length > 0 ? (tags as string[]) : undefined;
    const repo = new BadgesRepo(this.ctx.db);
    const sums = await repo.byTag(caller.appId, userId, wanted);
    const data: Record<string, number> = {};
    for (const tag of wanted ?? sums.keys()) data[tag] = sums.get(tag) ?? 0;
    return { totalBadge: await repo.total(caller.appId, userId), data };
  }

  // ---------------------------------------------------------------- socket event payloads

  /** The socket `roomPref` event: the user's stored preference of the room (in a room tag's scope when given). */
  async roomPrefEvent(appId: string, userId: string, roomId: string, scope: string): Promise<Json> {
    const [pref] = await new PrefsRepo(this.ctx.db).roomPrefs(appId, userId, [roomId], scope);
    const data = pref ? (JSON.parse(pref.data) as Json) : {};
    return { room: roomId, ...data, muted: pref?.muted === 1, ...(scope ? { roomTag: scope } : {}) };
  }

  /** The socket `myPrefChange` event, or undefined when the preference is gone again. */
  async userPrefEvent(appId: string, userId: string, key: string): Promise<{ key: string; data: unknown } | undefined> {
    const pref = (await new PrefsRepo(this.ctx.db).userPrefs(appId, userId)).find((p) => p.key === key);
    return pref ? { key, data: JSON.parse(pref.data) as unknown } : undefined;
  }

  /** The socket `typing` event; the sender's summary comes from the user cache, as new messages' do. */
  async typingEvent(appId: string, roomId: string, userId: string, message: unknown): Promise<Json> {
    const s = memberSummary(userId, await this.ctx.userCache.get(appId, userId));
    const payload: Json = { room: roomId, sender: userId, senderInfo: { _id: s._id, id: s.id, nickname: s.nickname, avatarUrl: s.avatarUrl, isRobot: s.isRobot } };
    if (message !== undefined && message !== null && message !== '') payload.message = message;
    return payload;
  }

  // ---------------------------------------------------------------- helpers

  /** The user the caller acts as; the API key may name any id, so that one must exist. */
  private async actingUser(caller: Caller): Promise<UserRow> {
    const userId = requireUser(caller);
    const user = await new UsersRepo(this.ctx.db).get(caller.appId, userId);
    if (!user) throw new AppError('USER_NOT_FOUND', `User ${userId} does not exist`);
    return user;
  }

  /** Reads, changes and stores one room preference row in a transaction; returns the stored row. */
  private async writeRoomPref(
    appId: string,
    userId: string,
    roomId: string,
    scope: string,
    change: (current: RoomPrefRow) => Pick<RoomPrefRow, 'data' | 'muted'>,
    facts?: (mutedBefore: number) => WebhookFact[],
  ): Promise<RoomPrefRow> {
    const now = this.ctx.clock.now();
    return this.ctx.db.transaction().execute(async (trx) => {
      const repo = new PrefsRepo(trx);
      const [existing] = await repo.roomPrefs(appId, userId, [roomId], scope);
      const current: RoomPrefRow = existing ?? { app_id: appId, user_id: userId, room_id: roomId, scope, data: '{}', muted: 0, updated_at: now };
      // The room may have been deleted since the access check; a preference must not outlive its room.
      if (!(await new RoomsRepo(trx).get(appId, roomId))) throw new AppError('ROOM_NOT_FOUND', `Room ${roomId} not found`);
      const row = { ...current, ...change(current), updated_at: now };
      await repo.upsertRoomPref(row);
      if (facts) await this.ctx.outbox.record(trx, facts(current.muted), now);
      return row;
    });
  }

  private emit(event: DomainEvent): void {
    this.ctx.bus.emit(event);
  }
}

/** The RoomPref object clients read: defaults for what was never set, `muted` from its column. */
function renderPref(row: RoomPrefRow): Json {
  return { tags: [], tagColors: {}, hidden: false, sticky: false, ...(JSON.parse(row.data) as Json), muted: row.muted === 1 };
}

/** Checks each field of a room-preference patch and splits it into stored data, cleared keys and mute. */
function roomPrefChanges(patch: RoomPrefPatch): { data: Json; cleared: string[]; muted: boolean | undefined } {
  const data: Json = {};
  const cleared: string[] = [];
  if (patch.tags !== undefined) {
    const tags = patch.tags;
    if (!Array.isArray(tags) || tags.length > MAX_TAGS || tags.some((t) => typeof t !== 'string' || t.length === 0 || t.length > MAX_TAG_LENGTH)) {
      throw invalidRequest(`Invalid field tags: an array of up to ${MAX_TAGS} non-empty strings of at most ${MAX_TAG_LENGTH} characters`);
    }
    data.tags = [...new Set(tags as string[])];
  }
  if (patch.tagColors !== undefined) {
    const colors = patch.tagColors;
    if (typeof colors !== 'object' || colors === null || Array.isArray(colors)) throw invalidRequest('Invalid field tagColors: an object of tag -> "#rrggbb"');
    const entries = Object.entries(colors as Json);
    if (entries.length > MAX_TAGS) throw invalidRequest(`Invalid field tagColors: at most ${MAX_TAGS} tags`);
    for (const [tag, color] of entries) {
      if (tag.length === 0 || tag.length > MAX_TAG_LENGTH || typeof color !== 'string' || !COLOR.test(color)) {
        throw invalidRequest(`Invalid field tagColors.${tag}: a color is "#rrggbb" (or "#rgb", "#rrggbbaa")`);
      }
    }
    data.tagColors = Object.fromEntries(entries);
  }
  if (patch.folder !== undefined) {
    if (patch.folder === null) cleared.push('folder');
    else if (typeof patch.folder !== 'string' || patch.folder.length > MAX_FOLDER_LENGTH) throw invalidRequest(`Invalid field folder: a string of at most ${MAX_FOLDER_LENGTH} characters, or null`);
    else data.folder = patch.folder;
  }
  for (const k of ['hidden', 'sticky'] as const) {
    if (patch[k] === undefined) continue;
    if (typeof patch[k] !== 'boolean') throw invalidRequest(`Invalid field ${k}: must be boolean`);
    data[k] = patch[k];
  }
  if (patch.muted !== undefined && typeof patch.muted !== 'boolean') throw invalidRequest('Invalid field muted: must be boolean');
  if (patch.translation !== undefined) {
    if (patch.translation === null) cleared.push('translation');
    else if (Buffer.byteLength(JSON.stringify(patch.translation)) > MAX_TRANSLATION_BYTES) throw invalidRequest(`Invalid field translation: at most ${MAX_TRANSLATION_BYTES} bytes of JSON`);
    else data.translation = patch.translation;
  }
  return { data, cleared, muted: patch.muted as boolean | undefined };
}

function checkKey(key: string): void {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) throw invalidRequest(`A preference key is 1-${MAX_KEY_LENGTH} characters`);
}
