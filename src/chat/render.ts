import type { Kysely } from 'kysely';
import { iso } from '../lib/clock.js';
import { withCustom } from '../lib/objects.js';
import type { Database } from '../store/schema.js';
import { GroupsRepo, type GroupRow } from '../store/groups-repo.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { PrefsRepo, type RoomPrefRow } from '../store/prefs-repo.js';
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
    const byMessage = groupBy(reactions, (r) => r.message_id, (r) => ({ client: r.user_id, reaction: r.reaction }));
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

  /** A stored message as clients read it now (edits, reactions, pins); undefined when it is gone. */
  async renderStoredMessage(appId: string, messageId: string): Promise<Json | undefined> {
    const row = await this.messages.get(appId, messageId);
    return row ? this.renderMessage(appId, row) : undefined;
  }

  /**
   * Rooms as one caller sees them: members populated, memberProperties, lastMessage, and the caller's own
   * unread, muted, pref and isSuperuser.
   */
  async renderRooms(appId: string, rooms: RoomRow[], viewer: { userId: string | null; roles: Map<string, RoomRole> }): Promise<Json[]> {
    if (rooms.length === 0) return [];
    const parts = await this.roomParts(appId, rooms);
    const prefs = viewer.userId ? await this.prefs.roomPrefs(appId, viewer.userId, rooms.map((r) => r.id)) : [];
    const prefByRoom = new Map(prefs.map((p) => [p.room_id, p]));
    return rooms.map((room) => {
      const mine = viewer.userId ? parts.memberOf.get(room.id)?.get(viewer.userId) : undefined;
      return withViewer(this.roomHead(appId, room, parts), room, mine, prefByRoom.get(room.id), viewer.roles.get(room.id) ?? 'none');
    });
  }

  async renderRoom(appId: string, room: RoomRow, viewer: { userId: string | null; role: RoomRole }): Promise<Json> {
    return (await this.renderRooms(appId, [room], { userId: viewer.userId, roles: new Map([[room.id, viewer.role]]) }))[0]!;
  }

  /**
   * One room as each of `viewers` sees it, for the socket `room` events: what every viewer sees alike (members,
   * last message...) is read and built once, then each viewer's own fields (unread, muted, pref, isSuperuser) are
   * added from their member row and one read of their preferences. The same objects `renderRoom` makes for each
   * of them, at a fixed number of queries however many viewers and members there are. Viewers whose own fields
   * are alike (most members of a big room: no unread, no preference, no role) share one object, so that it is
   * serialized once for all of them.
   */
  async renderRoomViews(
    appId: string,
    room: RoomRow,
    viewers: string[],
    roleOf: (userId: string, member: MemberRow | undefined) => RoomRole,
  ): Promise<Array<{ viewers: string[]; room: Json }>> {
    if (viewers.length === 0) return [];
    const parts = await this.roomParts(appId, [room]);
    const prefs = new Map((await this.prefs.roomPrefsOfUsers(appId, room.id, viewers)).map((p) => [p.user_id, p]));
    const head = this.roomHead(appId, room, parts);
    const members = parts.memberOf.get(room.id);
    const alike = new Map<string, { viewers: string[]; room: Json }>();
    for (const userId of viewers) {
      const mine = members?.get(userId);
      const pref = prefs.get(userId);
      const role = roleOf(userId, mine);
      const key = `${mine?.badge ?? 0}\u0000${isSuperuser(role)}\u0000${pref?.muted ?? 0}\u0000${pref?.data ?? ''}`;
      const same = alike.get(key);
      if (same) same.viewers.push(userId);
      // A shallow copy: the members, memberProperties and lastMessage inside are shared by every viewer's object.
      else alike.set(key, { viewers: [userId], room: withViewer({ ...head }, room, mine, pref, role) });
    }
    return [...alike.values()];
  }

  /** Everything a room's rendering needs besides the viewer's own rows, for many rooms in a fixed number of queries. */
  private async roomParts(appId: string, rooms: RoomRow[]): Promise<RoomParts> {
    const members = await this.rooms.membersOfRooms(appId, rooms.map((r) => r.id));
    const shownByRoom = new Map<string, MemberRow[]>();
    const memberOf = new Map<string, Map<string, MemberRow>>();
    const shown: MemberRow[] = [];
    for (const m of members) {
      let byUser = memberOf.get(m.room_id);
      if (!byUser) memberOf.set(m.room_id, (byUser = new Map()));
      byUser.set(m.user_id, m);
      // Users who are in a room through a user group are listed inside the group's entry, not beside it.
      if (m.via !== null) continue;
      shown.push(m);
      const list = shownByRoom.get(m.room_id);
      if (list) list.push(m);
      else shownByRoom.set(m.room_id, [m]);
    }
    const groups = new Map((await new GroupsRepo(this.db).getMany(appId, shown.map((m) => m.user_id))).map((g) => [g.id, g]));
    const userIds = members.map((m) => m.user_id);
    for (const g of groups.values()) for (const u of g.members) userIds.push(u);
    const users = await this.userMap(appId, userIds);
    const lastRows = await this.messages.getMany(appId, rooms.map((r) => r.last_message_id).filter((x): x is string => x !== null));
    const last = new Map((await this.renderMessages(appId, lastRows)).map((m) => [m._id as string, m]));
    return { shownByRoom, memberOf, groups, users, last };
  }

  /** A room's fields that every viewer sees alike, in the order clients have always received them. */
  private roomHead(appId: string, room: RoomRow, parts: RoomParts): Json {
    const ms = parts.shownByRoom.get(room.id) ?? [];
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
      const group = parts.groups.get(m.user_id);
      if (group) {
        const inner = group.members.map((u) => ({ ...memberSummary(u, parts.users.get(u)), isSocketConnected: this.presence.online(appId, u) }));
        return { _id: group.id, id: group.id, nickname: group.nickname, ...(group.avatar_url ? { avatarUrl: group.avatar_url } : {}), clientType: 'group', isRobot: false, lastLoginTimeMS: 0, members: inner };
      }
      return { ...memberSummary(m.user_id, parts.users.get(m.user_id)), isSocketConnected: this.presence.online(appId, m.user_id) };
    });
    out.memberProperties = ms.map((m) => memberProperty(m, room));
    if (room.last_message_id && parts.last.has(room.last_message_id)) out.lastMessage = parts.last.get(room.last_message_id);
    out.createdTime = iso(room.created_at);
    out.createdTimeMS = room.created_at;
    out.updatedAt = iso(room.updated_at);
    out.updatedAtMS = room.updated_at;
    return out;
  }
}

interface RoomParts {
  /** The members each room lists (users in through a group are listed inside the group's entry). */
  shownByRoom: Map<string, MemberRow[]>;
  /** Every member row of each room, by user. */
  memberOf: Map<string, Map<string, MemberRow>>;
  groups: Map<string, GroupRow>;
  users: Map<string, UserRow>;
  last: Map<string, Json>;
}

/** Adds one viewer's own fields to a room's shared fields (`head` is completed in place and returned). */
function withViewer(head: Json, room: RoomRow, mine: MemberRow | undefined, pref: RoomPrefRow | undefined, role: RoomRole): Json {
  const prefData = pref ? (JSON.parse(pref.data) as Json) : {};
  head.unread = mine?.badge ?? 0;
  head.muted = pref?.muted === 1;
  head.isMentioned = false;
  head.pref = { tags: [], tagColors: {}, hidden: false, sticky: false, ...prefData, muted: pref?.muted === 1 };
  head.isSuperuser = isSuperuser(role);
  return withCustom(head, JSON.parse(room.extra) as Json);
}

function groupBy<T, V>(items: T[], key: (item: T) => string, value: (item: T) => V): Map<string, V[]> {
  const out = new Map<string, V[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(value(item));
    else out.set(k, [value(item)]);
  }
  return out;
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
