import type { Kysely } from 'kysely';
import { iso } from '../lib/clock.js';
import { withCustom } from '../lib/objects.js';
import type { Database } from '../store/schema.js';
import { GroupsRepo } from '../store/groups-repo.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { PrefsRepo } from '../store/prefs-repo.js';
import { RoomsRepo, type MemberRow, type RoomRow } from '../store/rooms-repo.js';
import { UsersRepo, type UserRow } from '../store/users-repo.js';
import type { PresenceSource } from './chat-context.js';
import type { UserCache } from './user-cache.js';
import { isSuperuser, type RoomRole } from './policy.js';

type Json = Record<string, unknown>;

/**
 * Turns stored rows into the objects the IMKIT clients read (spec realtime §4): `_id` and `id`, ISO times with
 * `...MS` twins, populated senders, members, replies and last messages. Loads what it needs in batches.
 */
export class ChatRenderer {
  private readonly users: UsersRepo;
  private readonly messages: MessagesRepo;
  private readonly rooms: RoomsRepo;
  private readonly prefs: PrefsRepo;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly presence: PresenceSource,
    private readonly userCache: UserCache,
  ) {
    this.users = new UsersRepo(db);
    this.messages = new MessagesRepo(db);
    this.rooms = new RoomsRepo(db);
    this.prefs = new PrefsRepo(db);
  }

  async userMap(appId: string, ids: Array<string | null>): Promise<Map<string, UserRow>> {
    const rows = await this.users.getMany(appId, ids.filter((i): i is string => i !== null));
    return new Map(rows.map((u) => [u.id, u]));
  }

  /** Messages with sender, reply and reactions populated. */
  async renderMessages(appId: string, rows: MessageRow[]): Promise<Json[]> {
    if (rows.length === 0) return [];
    const replyIds = rows.map((r) => r.reply_id).filter((x): x is string => x !== null);
    const replies = new Map((await this.messages.getMany(appId, replyIds)).map((m) => [m.id, m]));
    const users = await this.userMap(appId, [...rows, ...replies.values()].map((r) => r.sender_id));
    const reactions = await this.messages.reactionsOf(appId, rows.map((r) => r.id));
    const byMessage = new Map<string, Array<{ client: string; reaction: string }>>();
    for (const r of reactions) byMessage.set(r.message_id, [...(byMessage.get(r.message_id) ?? []), { client: r.user_id, reaction: r.reaction }]);
    return rows.map((row) => {
      const out = messageObject(row, users, byMessage.get(row.id) ?? []);
      const reply = row.reply_id ? replies.get(row.reply_id) : undefined;
      if (reply) out.reply = messageObject(reply, users, []);
      return out;
    });
  }

  /**
   * A message just stored: it has no reactions yet, so only its sender (and reply) are read, from the user cache
   * (concurrent misses share one query).
   */
  async renderNewMessage(appId: string, row: MessageRow, parsed?: { message: unknown; fields: Json }): Promise<Json> {
    const reply = row.reply_id ? await this.messages.get(appId, row.reply_id) : undefined;
    const users = new Map<string, UserRow>();
    for (const id of [row.sender_id, reply?.sender_id ?? null]) {
      const u = id === null || users.has(id) ? undefined : await this.userCache.get(appId, id);
      if (u) users.set(u.id, u);
    }
    const out = messageObject(row, users, [], parsed);
    if (reply) out.reply = messageObject(reply, users, []);
    return out;
  }

  async renderMessage(appId: string, row: MessageRow): Promise<Json> {
    return (await this.renderMessages(appId, [row]))[0]!;
  }

  /**
   * Rooms as one caller sees them: members populated, memberProperties, lastMessage, and the caller's own
   * unread, muted, pref and isSuperuser.
   */
  async renderRooms(appId: string, rooms: RoomRow[], viewer: { userId: string | null; roles: Map<string, RoomRole> }): Promise<Json[]> {
    if (rooms.length === 0) return [];
    const ids = rooms.map((r) => r.id);
    const members = await this.rooms.membersOfRooms(appId, ids);
    const byRoom = new Map<string, MemberRow[]>();
    // Users who are in a room through a user group are listed inside the group's entry, not beside it.
    for (const m of members) if (m.via === null) byRoom.set(m.room_id, [...(byRoom.get(m.room_id) ?? []), m]);
    const shown = members.filter((m) => m.via === null);
    const groups = new Map((await new GroupsRepo(this.db).getMany(appId, shown.map((m) => m.user_id))).map((g) => [g.id, g]));
    const users = await this.userMap(appId, [...members.map((m) => m.user_id), ...[...groups.values()].flatMap((g) => g.members)]);
    const lastRows = await this.messages.getMany(appId, rooms.map((r) => r.last_message_id).filter((x): x is string => x !== null));
    const last = new Map((await this.renderMessages(appId, lastRows)).map((m) => [m._id as string, m]));
    const prefs = viewer.userId ? await this.prefs.roomPrefs(appId, viewer.userId, ids) : [];
    const prefByRoom = new Map(prefs.map((p) => [p.room_id, p]));

    return rooms.map((room) => {
      const ms = byRoom.get(room.id) ?? [];
      const mine = viewer.userId ? members.find((m) => m.room_id === room.id && m.user_id === viewer.userId) : undefined;
      const pref = prefByRoom.get(room.id);
      const prefData = pref ? (JSON.parse(pref.data) as Json) : {};
      const out: Json = {
        _id: room.id,
        id: room.id,
        appID: room.app_id,
        roomType: room.room_type,
        roomTags: JSON.parse(room.room_tags),
        status: room.status,
        opening: room.opening,
        botMode: room.bot_mode === 1,
        encrypted: room.encrypted === 1,
        serviceStatus: 0,
      };
      if (room.name !== null) out.name = room.name;
      if (room.cover !== null) out.cover = room.cover;
      if (room.description !== null) out.description = room.description;
      if (room.webhook !== null) out.webhook = room.webhook;
      if (room.bot_state !== null) out.botState = room.bot_state;
      if (room.ext_params !== null) out.extParams = room.ext_params;
      if (room.owner !== null) out.owner = room.owner;
      out.managers = ms.filter((m) => m.role === 'admin').map((m) => m.user_id);
      out.members = ms.map((m) => {
        const group = groups.get(m.user_id);
        if (group) {
          const inner = group.members.map((u) => ({ ...memberSummary(u, users.get(u)), isSocketConnected: this.presence.online(appId, u) }));
          return { _id: group.id, id: group.id, nickname: group.nickname, ...(group.avatar_url ? { avatarUrl: group.avatar_url } : {}), clientType: 'group', isRobot: false, lastLoginTimeMS: 0, members: inner };
        }
        return { ...memberSummary(m.user_id, users.get(m.user_id)), isSocketConnected: this.presence.online(appId, m.user_id) };
      });
      out.memberProperties = ms.map((m) => memberProperty(m, room));
      if (room.last_message_id && last.has(room.last_message_id)) out.lastMessage = last.get(room.last_message_id);
      out.createdTime = iso(room.created_at);
      out.createdTimeMS = room.created_at;
      out.updatedAt = iso(room.updated_at);
      out.updatedAtMS = room.updated_at;
      out.unread = mine?.badge ?? 0;
      out.muted = pref?.muted === 1;
      out.isMentioned = false;
      out.pref = { tags: [], tagColors: {}, hidden: false, sticky: false, ...prefData, muted: pref?.muted === 1 };
      out.isSuperuser = isSuperuser(viewer.roles.get(room.id) ?? 'none');
      return withCustom(out, JSON.parse(room.extra) as Json);
    });
  }

  async renderRoom(appId: string, room: RoomRow, viewer: { userId: string | null; role: RoomRole }): Promise<Json> {
    return (await this.renderRooms(appId, [room], { userId: viewer.userId, roles: new Map([[room.id, viewer.role]]) }))[0]!;
  }
}

/** The Member / Client summary embedded in rooms and messages. A deleted user keeps its id. */
export function memberSummary(id: string, user: UserRow | undefined): Json {
  const out: Json = { _id: id, id, clientType: 'user' };
  if (!user) return { ...out, nickname: id, isRobot: false, lastLoginTimeMS: 0 };
  const custom = JSON.parse(user.extra) as Json;
  if (user.nickname !== null) out.nickname = user.nickname;
  if (user.avatar_url !== null) out.avatarUrl = user.avatar_url;
  if (user.description !== null) out.description = user.description;
  if (typeof custom.publicKey === 'string') out.publicKey = custom.publicKey;
  out.isRobot = user.is_robot === 1;
  if (user.last_login_at !== null) out.lastLoginTime = iso(user.last_login_at);
  out.lastLoginTimeMS = user.last_login_at ?? 0;
  return out;
}

export function memberProperty(m: MemberRow, room: RoomRow): Json {
  const out: Json = { client: m.user_id, badge: m.badge, role: m.role };
  if (m.last_read !== null) out.lastRead = m.last_read;
  if (room.owner === m.user_id) out.isSuperuser = true;
  else if (m.role === 'admin') out.isSuperuser = true;
  return withCustom(out, JSON.parse(m.properties) as Json);
}

/** `parsed`: the message and fields the row was just serialized from, when the caller still has them. */
function messageObject(row: MessageRow, users: Map<string, UserRow>, reactions: Array<{ client: string; reaction: string }>, parsed?: { message: unknown; fields: Json }): Json {
  const fields = parsed ? parsed.fields : (JSON.parse(row.fields) as Json);
  const created = iso(row.created_at);
  const out: Json = {
    _id: row.id,
    id: row.id,
    appID: row.app_id,
    room: row.room_id,
    messageType: row.message_type,
    message: parsed ? (parsed.message ?? '') : JSON.parse(row.message),
    sender: row.sender_id === null ? null : memberSummary(row.sender_id, users.get(row.sender_id)),
    messageTime: row.message_time === row.created_at ? created : iso(row.message_time),
    messageTimeMS: row.message_time,
    createdAt: created,
    createdAtMS: row.created_at,
    updatedAt: row.updated_at === row.created_at ? created : iso(row.updated_at),
    updatedAtMS: row.updated_at,
    pinned: row.pinned === 1,
    reactions,
    reactionCount: reactions.length,
    isDeleted: false,
  };
  if (row.reply_id !== null) out.reply = row.reply_id;
  if (row.edited_at !== null) {
    out.editedAt = iso(row.edited_at);
    out.editedAtMS = row.edited_at;
  }
  return withCustom(out, fields);
}
