import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { AppError, invalidRequest } from '../errors.js';
import type { DomainEvent } from '../events/bus.js';
import { isUniqueViolation } from '../store/database.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { PrefsRepo } from '../store/prefs-repo.js';
import { type MemberRow, type RoomListQuery, RoomsRepo, type RoomRow } from '../store/rooms-repo.js';
import type { Database } from '../store/schema.js';
import { GroupsRepo } from '../store/groups-repo.js';
import { UsersRepo, type UserRow } from '../store/users-repo.js';
import { type ChatContext, parseTime, transact } from './chat-context.js';
import { appendMessage } from './message-writer.js';
import { authorize, banned, type Caller, isBanned, type RoomAction, roleIn, roleInSnapshot, type RoomRole } from './policy.js';
import { memberSummary } from './render.js';
import type { RoomSnapshot } from './room-cache.js';
import { checkRoomWebhook } from '../webhooks/ssrf.js';

type Json = Record<string, unknown>;

export interface RoomInput {
  _id?: string;
  name?: string;
  cover?: string;
  description?: string;
  roomType?: string;
  roomTags?: string[];
  webhook?: string;
  botMode?: boolean;
  botState?: string;
  extParams?: string;
  encrypted?: boolean;
  opening?: number;
  owner?: string;
  managers?: string[];
  status?: number;
  systemMessage?: boolean;
  invitationRequired?: boolean;
  /** Members to add (admin `members`, user `invitee`/`invitees`). */
  members?: string[];
}

export interface ListRoomsInput {
  sort?: string;
  skip?: number;
  limit?: number;
  updatedAfter?: string;
  q?: string;
  pref?: string;
  sortUnreadFirst?: number;
}

// A Map: `sort` is user input, and an object literal would answer "constructor" or "toString" from its prototype.
const SORT_FIELDS = new Map<string, RoomListQuery['sort'][number]['field']>([
  ['lastMessage', 'last_message_id'],
  ['createdTime', 'created_at'],
  ['createdAt', 'created_at'],
  ['updatedAt', 'updated_at'],
  ['name', 'name'],
  ['_id', 'id'],
]);

/**
 * The largest page of `GET /rooms` (each room is rendered with its members) and of `GET /rooms/ids`. The spec's
 * `limit=0`, the default, means "all": it gets a full page, and `totalCount` tells whether there are more (page on
 * with `skip`). A larger `limit` is refused by the route's schema.
 */
export const MAX_ROOMS_PAGE = 1_000;
export const MAX_ROOM_IDS_PAGE = 100_000;

/**
 * Rooms, members, invitations and read state. Rules live here (through policy.ts); every change is committed
 * first and announced after, as one domain event per change.
 */
export class RoomsService {
  constructor(private readonly ctx: ChatContext) {}

  // ---------------------------------------------------------------- create

  /**
   * `POST /rooms/` (admin form: `members`, caller not joined), `POST /rooms` with a user (creator joins and owns
   * a group room) and `POST /rooms/createAndJoin` (the same, with `invitee`; an existing room is joined).
   */
  async create(caller: Caller, input: RoomInput, mode: 'create' | 'createAndJoin'): Promise<Json> {
    const now = this.ctx.clock.now();
    const roomType = input.roomType ?? 'group';
    if (roomType !== 'group' && roomType !== 'direct') throw invalidRequest('Invalid field roomType: must be "direct" or "group"');
    const joiner = caller.userId;
    const invitees = unique((input.members ?? []).filter((m) => m !== joiner));
    const everyone = unique([...(joiner ? [joiner] : []), ...invitees]);
    if (roomType === 'direct' && everyone.length > 2) throw invalidRequest('A direct room has at most two members');
    const pairId = roomType === 'direct' && everyone.length === 2 ? directRoomId(everyone[0]!, everyone[1]!) : undefined;
    const id = input._id ?? pairId ?? newRoomId(now);
    validateRoomId(id);
    assertDirectIdUse(id, roomType, pairId);

    const existing = await new RoomsRepo(this.ctx.db).get(caller.appId, id);
    if (existing) {
      if (mode !== 'createAndJoin') throw new AppError('ROOM_EXISTS', `Room ${id} already exists`);
      // A pair's direct room is answered only with that pair's direct room: never a group room under its id.
      if (roomType === 'direct' && !(await this.isPairRoom(existing, everyone))) throw new AppError('ROOM_EXISTS', `Room ${id} already exists and is not the direct room of these members`);
      // createAndJoin on an existing room: join it (if allowed) and add the invitees.
      if (joiner && !(await new RoomsRepo(this.ctx.db).member(caller.appId, id, joiner))) await this.join(caller, id, input.systemMessage === true);
      if (invitees.length) return this.addMembers(caller, id, invitees, { systemMessage: input.systemMessage === true, invitationRequired: input.invitationRequired === true });
      return this.get(caller, id);
    }

    const invitationRequired = roomType === 'group' && input.invitationRequired === true;
    const direct = invitationRequired ? (joiner ? [joiner] : []) : everyone;
    const invited = invitationRequired ? invitees : [];
    if (direct.length > this.ctx.limits.maxRoomMembers) throw tooManyMembers(this.ctx.limits.maxRoomMembers);
    const owner = input.owner ?? (roomType === 'group' && !caller.platform ? joiner : null) ?? null;
    if (owner !== null && !direct.includes(owner)) throw invalidRequest('owner must be one of the members');
    await checkRoomWebhook(input.webhook, this.ctx.limits.webhookAllowPrivateNetworks);
    if (input.webhook) this.ctx.outbox.noteRoomWebhook(caller.appId);

    const events: DomainEvent[] = [];
    try {
      await transact(this.ctx, events, async (trx) => {
        const users = await requireUsers(trx, caller.appId, [...everyone, ...(input.managers ?? [])]);
        const repo = new RoomsRepo(trx);
        const row: RoomRow = {
          app_id: caller.appId,
          id,
          name: input.name ?? null,
          cover: input.cover ?? null,
          description: input.description ?? null,
          room_type: roomType,
          room_tags: JSON.stringify(input.roomTags ?? []),
          webhook: input.webhook ?? null,
          bot_mode: input.botMode ? 1 : 0,
          bot_state: input.botState ?? null,
          encrypted: input.encrypted ? 1 : 0,
          ext_params: input.extParams ?? null,
          status: 1,
          opening: input.opening ?? 1,
          owner,
          extra: '{}',
          last_message_id: null,
          message_count: 0,
          created_at: now,
          updated_at: now,
        };
        await repo.insert(row);
        await repo.setTags(caller.appId, id, input.roomTags ?? []);
        await repo.addMembers(caller.appId, id, direct, now);
        await expandGroups(trx, caller.appId, id, direct, now);
        for (const m of input.managers ?? []) {
          if (!direct.includes(m)) throw invalidRequest(`managers: ${m} is not a member`);
          await repo.updateMember(caller.appId, id, m, { role: 'admin' });
        }
        if (invited.length) await repo.addInvitations(caller.appId, id, invited, joiner, now);
        events.push({ type: 'room.created', appId: caller.appId, roomId: id, actorId: joiner, members: direct });
        if (invited.length) events.push({ type: 'invitation.created', appId: caller.appId, roomId: id, actorId: joiner, invitees: invited });
        const added = direct.filter((u) => u !== joiner);
        if (input.systemMessage && added.length) {
          const msg = await this.systemAdd(trx, caller, row, added, users, now);
          events.push(messageEvent(msg));
        }
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('ROOM_EXISTS', `Room ${id} already exists`);
      throw err;
    }
    this.emit(events);
    return this.get(caller, id);
  }

  // ---------------------------------------------------------------- read

  async get(caller: Caller, roomId: string): Promise<Json> {
    const { room, role } = await this.access(caller, roomId, 'read');
    return this.ctx.render.renderRoom(caller.appId, room, { userId: caller.userId, role });
  }

  /** The room as one user sees it (for socket `room` events): their own unread, pref and role. */
  async viewAs(appId: string, roomId: string, userId: string): Promise<Json | undefined> {
    const repo = new RoomsRepo(this.ctx.db);
    const room = await repo.get(appId, roomId);
    if (!room) return undefined;
    const member = await repo.member(appId, roomId, userId);
    const role = roleIn({ appId, userId, platform: false }, room, member);
    return this.ctx.render.renderRoom(appId, room, { userId, role });
  }

  /**
   * The room as each of `viewers` sees it (socket `room` events to the members online): rendered once, each
   * viewer's own unread, pref and role added from one read of their rows; viewers who see the same object are
   * grouped. Viewers who are not members see it as a non-member would.
   */
  async viewsFor(appId: string, roomId: string, viewers: string[]): Promise<Array<{ viewers: string[]; room: Json }>> {
    if (viewers.length === 0) return [];
    const room = await new RoomsRepo(this.ctx.db).get(appId, roomId);
    if (!room) return [];
    return this.ctx.render.renderRoomViews(appId, room, viewers, (userId, member) => roleIn({ appId, userId, platform: false }, room, member));
  }

  /** The payload of the socket `invitation` event: the room as the (first) invitee sees it, and who invited. */
  async invitationView(appId: string, roomId: string, inviterId: string | null, invitee: string): Promise<{ room: Json | undefined; inviter: Json | null }> {
    const room = await this.viewAs(appId, roomId, invitee);
    if (!inviterId) return { room, inviter: null };
    return { room, inviter: memberSummary(inviterId, await this.ctx.userCache.get(appId, inviterId)) };
  }

  async list(caller: Caller, input: ListRoomsInput): Promise<{ totalCount: number; data: Json[] }> {
    const { rows, total } = await this.query(caller, input, MAX_ROOMS_PAGE);
    const mine = new Map<string, MemberRow>();
    if (caller.userId !== null) {
      for (const m of await new RoomsRepo(this.ctx.db).membersOfRooms(caller.appId, rows.map((r) => r.id))) if (m.user_id === caller.userId) mine.set(m.room_id, m);
    }
    const roles = new Map<string, RoomRole>();
    for (const r of rows) roles.set(r.id, roleIn(caller, r, mine.get(r.id)));
    return { totalCount: total, data: await this.ctx.render.renderRooms(caller.appId, rows, { userId: caller.userId, roles }) };
  }

  async listIds(caller: Caller, input: ListRoomsInput): Promise<{ totalCount: number; data: string[] }> {
    const { rows, total } = await this.query(caller, input, MAX_ROOM_IDS_PAGE);
    return { totalCount: total, data: rows.map((r) => r.id) };
  }

  private async query(caller: Caller, input: ListRoomsInput, maxPage: number) {
    const userId = requireUser(caller);
    const q: RoomListQuery = {
      userId,
      activeOnly: true,
      sort: parseSort(input.sort),
      unreadFirst: (input.sortUnreadFirst ?? 0) !== 0,
      now: this.ctx.clock.now(),
      limit: pageSize(input.limit, maxPage),
      skip: input.skip ?? 0,
    };
    if (input.updatedAfter !== undefined) {
      const t = parseTime(input.updatedAfter);
      if (t === undefined || Number.isNaN(t)) throw invalidRequest('Invalid query parameter updatedAfter: use ISO-8601 or epoch milliseconds');
      q.updatedAfter = t;
      // A client resyncing after a disconnect must also see rooms it was removed from being frozen etc.
    }
    if (input.q) {
      const filter = parseJsonObject(input.q, 'q');
      for (const key of Object.keys(filter)) if (key !== 'members' && key !== 'roomTags') throw invalidRequest(`Invalid query parameter q: unsupported field ${key} (use members or roomTags)`);
      if (filter.members !== undefined) q.withMember = scalarString(filter.members, 'q.members');
      if (filter.roomTags !== undefined) q.roomTag = scalarString(filter.roomTags, 'q.roomTags');
    }
    if (input.pref) {
      const pref = parseJsonObject(input.pref, 'pref');
      const prefs = await new PrefsRepo(this.ctx.db).allRoomPrefs(caller.appId, userId);
      q.roomIds = prefs.filter((p) => prefMatches(p.data, p.muted, pref)).map((p) => p.room_id);
    }
    return new RoomsRepo(this.ctx.db).listForUser(caller.appId, q);
  }

  /** `GET /rooms/:id/count?timeInMS=`: messages sent after a time. */
  async count(caller: Caller, roomId: string, timeInMS: number | undefined): Promise<{ count: number }> {
    await this.access(caller, roomId, 'read');
    return { count: await new MessagesRepo(this.ctx.db).count(caller.appId, roomId, timeInMS) };
  }

  // ---------------------------------------------------------------- update / delete

  async update(caller: Caller, roomId: string, input: RoomInput): Promise<Json> {
    const now = this.ctx.clock.now();
    const { room, role } = await this.access(caller, roomId, 'read');
    const changes: string[] = [];
    const patch: Partial<RoomRow> = {};
    const plain: Array<[keyof RoomInput, keyof RoomRow]> = [
      ['name', 'name'], ['cover', 'cover'], ['description', 'description'], ['webhook', 'webhook'], ['extParams', 'ext_params'], ['botState', 'bot_state'],
    ];
    for (const [k, col] of plain) if (input[k] !== undefined) ((patch as Json)[col] = input[k], changes.push(k));
    if (input.botMode !== undefined) (patch.bot_mode = input.botMode ? 1 : 0), changes.push('botMode');
    if (input.encrypted !== undefined) (patch.encrypted = input.encrypted ? 1 : 0), changes.push('encrypted');
    if (input.opening !== undefined) (patch.opening = input.opening), changes.push('opening');
    if (input.roomTags !== undefined) (patch.room_tags = JSON.stringify(input.roomTags)), changes.push('roomTags');
    if (changes.length) authorize(role, 'update', room);
    if (input.status !== undefined) {
      authorize(role, 'freeze', room);
      patch.status = input.status;
      changes.push('status');
    }
    if (input.owner !== undefined || input.managers !== undefined) authorize(role, 'setOwnerOrManagers', room);
    if (input.roomType !== undefined && input.roomType !== room.room_type) throw invalidRequest('roomType cannot be changed');
    // After the authorization above: only a manager makes the server resolve names (no DNS oracle for others).
    await checkRoomWebhook(input.webhook, this.ctx.limits.webhookAllowPrivateNetworks);

    const updated: DomainEvent[] = [{ type: 'room.updated', appId: caller.appId, roomId, actorId: caller.userId, changes }];
    if (input.webhook) this.ctx.outbox.noteRoomWebhook(caller.appId);
    await transact(this.ctx, updated, async (trx) => {
      const repo = new RoomsRepo(trx);
      const members = await repo.members(caller.appId, roomId);
      const isMember = (u: string) => members.some((m) => m.user_id === u);
      if (input.owner !== undefined) {
        if (!isMember(input.owner)) throw invalidRequest(`owner: ${input.owner} is not a member of this room`);
        patch.owner = input.owner;
        changes.push('owner');
      }
      if (input.managers !== undefined) {
        for (const m of input.managers) if (!isMember(m)) throw invalidRequest(`managers: ${m} is not a member of this room`);
        for (const m of members) {
          const role = input.managers.includes(m.user_id) ? 'admin' : 'member';
          if (m.role !== role) await repo.updateMember(caller.appId, roomId, m.user_id, { role });
        }
        changes.push('managers');
      }
      await repo.update(caller.appId, roomId, { ...patch, updated_at: now });
      if (input.roomTags !== undefined) await repo.setTags(caller.appId, roomId, input.roomTags);
    });
    this.emit(updated);
    return this.get(caller, roomId);
  }

  async delete(caller: Caller, roomId: string): Promise<{ n: number; nModified: number; ok: number }> {
    const { room, role } = await this.access(caller, roomId, 'read');
    authorize(role, 'delete', room);
    let members: string[] = [];
    let n = 0;
    const deleted: DomainEvent[] = [];
    await transact(this.ctx, deleted, async (trx) => {
      const repo = new RoomsRepo(trx);
      members = (await repo.members(caller.appId, roomId)).map((m) => m.user_id);
      n = await repo.delete(caller.appId, roomId);
      deleted.push({ type: 'room.deleted', appId: caller.appId, roomId, actorId: caller.userId, members });
    });
    this.emit(deleted);
    return { n, nModified: n, ok: 1 };
  }

  async setBotState(caller: Caller, roomId: string, botState: string): Promise<Json> {
    await this.access(caller, roomId, 'read');
    const events: DomainEvent[] = [{ type: 'room.updated', appId: caller.appId, roomId, actorId: caller.userId, changes: ['botState'] }];
    await transact(this.ctx, events, (trx) => new RoomsRepo(trx).update(caller.appId, roomId, { bot_state: botState, updated_at: this.ctx.clock.now() }));
    this.emit(events);
    return this.get(caller, roomId);
  }

  // ---------------------------------------------------------------- members

  /** `POST /rooms/:id/join`: the caller joins (an open group room, or one they were invited to). */
  async join(caller: Caller, roomId: string, systemMessage: boolean): Promise<Json> {
    const userId = requireUser(caller);
    const now = this.ctx.clock.now();
    const events: DomainEvent[] = [];
    const snap = await this.ctx.roomCache.get(caller.appId, roomId);
    await transact(this.ctx, events, async (trx) => {
      const repo = new RoomsRepo(trx);
      const room = await repo.get(caller.appId, roomId);
      if (!room || !snap) throw roomNotFound(roomId);
      if (await repo.member(caller.appId, roomId, userId)) return;
      // A banned user stays out, even when invited or let in by the platform (the policy's ban, as `access` reads it).
      if (isBanned(snap, userId, now)) throw banned();
      const invited = (await repo.removeInvitations(caller.appId, roomId, [userId])) > 0;
      if (!caller.platform && !invited) {
        if (room.room_type === 'direct') throw new AppError('NOT_ROOM_MEMBER', 'A direct room cannot be joined');
        if (room.opening === 0) throw new AppError('ROOM_CLOSED', 'This room is closed to new members');
      }
      if ((await repo.countMembers(caller.appId, roomId)) >= this.ctx.limits.maxRoomMembers) throw tooManyMembers(this.ctx.limits.maxRoomMembers);
      if (room.room_type === 'direct') assertDirectMembers(roomId, [...(await repo.members(caller.appId, roomId)).map((m) => m.user_id), userId]);
      const users = await requireUsers(trx, caller.appId, [userId]);
      await repo.addMembers(caller.appId, roomId, [userId], now);
      if (invited) events.push({ type: 'invitation.cancelled', appId: caller.appId, roomId, actorId: userId, invitees: [userId], accepted: true });
      events.push({ type: 'members.added', appId: caller.appId, roomId, actorId: userId, userIds: [userId], joined: true });
      if (systemMessage) {
        const client = memberSummary(userId, users.get(userId));
        const msg = await appendMessage(trx, { appId: caller.appId, roomId, senderId: userId, messageType: 'joinRoom', message: client.nickname ?? userId, fields: { member: client, extra: { members: [client] } }, now });
        events.push(messageEvent(msg));
      }
    });
    this.emit(events);
    return this.get(caller, roomId);
  }

  /** `POST /rooms/:id/members` (+ the single-member path): add, or invite when `invitationRequired`. */
  async addMembers(caller: Caller, roomId: string, invitees: string[], opts: { systemMessage: boolean; invitationRequired: boolean }): Promise<Json> {
    const now = this.ctx.clock.now();
    const { room, role } = await this.access(caller, roomId, 'read');
    authorize(role, 'invite', room);
    const wanted = unique(invitees);
    if (wanted.length === 0) throw invalidRequest('Missing required field: invitees');
    const events: DomainEvent[] = [];
    await transact(this.ctx, events, async (trx) => {
      const repo = new RoomsRepo(trx);
      const users = await requireUsers(trx, caller.appId, wanted);
      const current = (await repo.members(caller.appId, roomId)).map((m) => m.user_id);
      const fresh = wanted.filter((u) => !current.includes(u));
      if (room.room_type === 'direct' && current.length + fresh.length > 2) throw invalidRequest('A direct room has at most two members');
      if (room.room_type === 'direct' && fresh.length > 0) assertDirectMembers(room.id, [...current, ...fresh]);
      if (current.length + fresh.length > this.ctx.limits.maxRoomMembers) throw tooManyMembers(this.ctx.limits.maxRoomMembers);
      if (fresh.length === 0) return;
      if (opts.invitationRequired && room.room_type === 'group') {
        const invited = await repo.addInvitations(caller.appId, roomId, fresh, caller.userId, now);
        if (invited.length) events.push({ type: 'invitation.created', appId: caller.appId, roomId, actorId: caller.userId, invitees: invited });
        return;
      }
      await repo.addMembers(caller.appId, roomId, fresh, now);
      await expandGroups(trx, caller.appId, roomId, fresh, now);
      await repo.removeInvitations(caller.appId, roomId, fresh);
      events.push({ type: 'members.added', appId: caller.appId, roomId, actorId: caller.userId, userIds: fresh, joined: false });
      if (opts.systemMessage) events.push(messageEvent(await this.systemAdd(trx, caller, room, fresh, users, now)));
    });
    this.emit(events);
    return this.get(caller, roomId);
  }

  /** `POST /rooms/:id/delete/members` and `DELETE /rooms/:id/members/:uid`: leave, or remove others. */
  async removeMembers(caller: Caller, roomId: string, userIds: string[], systemMessage: boolean): Promise<Json> {
    const now = this.ctx.clock.now();
    const wanted = unique(userIds);
    if (wanted.length === 0) throw invalidRequest('Missing required field: members');
    const others = wanted.filter((u) => u !== caller.userId);
    // Leaving is the one thing a banned member may still do in the room.
    const { room, role } = await this.access(caller, roomId, others.length ? 'removeOthers' : 'leave');
    if (!caller.platform && room.owner !== null && others.includes(room.owner)) throw new AppError('INSUFFICIENT_PERMISSIONS', 'The room owner cannot be removed');
    const events: DomainEvent[] = [];
    await transact(this.ctx, events, async (trx) => {
      const repo = new RoomsRepo(trx);
      const current = (await repo.members(caller.appId, roomId)).map((m) => m.user_id);
      const missing = wanted.filter((u) => !current.includes(u));
      if (missing.length) throw invalidRequest(`Not members of this room: ${missing.join(', ')}`);
      const users = await new UsersRepo(trx).getMany(caller.appId, wanted);
      const byId = new Map(users.map((u) => [u.id, u]));
      await repo.removeMembers(caller.appId, roomId, wanted);
      await repo.removeVia(caller.appId, roomId, wanted);
      if (room.owner !== null && wanted.includes(room.owner)) await repo.update(caller.appId, roomId, { owner: null });
      events.push({ type: 'members.removed', appId: caller.appId, roomId, actorId: caller.userId, userIds: wanted });
      if (systemMessage) {
        const clients = wanted.map((u) => memberSummary(u, byId.get(u)));
        const leaving = others.length === 0;
        const msg = await appendMessage(trx, {
          appId: caller.appId,
          roomId,
          senderId: caller.userId,
          messageType: leaving ? 'leaveRoom' : 'deleteMember',
          message: clients.map((c) => c.nickname ?? c._id).join(', '),
          fields: { member: clients[0], extra: { members: clients } },
          now,
        });
        events.push(messageEvent(msg));
      }
    });
    this.emit(events);
    return this.ctx.render.renderRoom(caller.appId, (await new RoomsRepo(this.ctx.db).get(caller.appId, roomId))!, {
      userId: caller.userId,
      role: caller.platform ? 'platform' : wanted.includes(caller.userId ?? '') ? 'none' : role,
    });
  }

  /** `PUT /rooms/:id/member/:client`: a role ("admin"/"member") or a custom member property. */
  async setMemberProperty(caller: Caller, roomId: string, userId: string, property: string, value: unknown, systemMessage: boolean): Promise<Json> {
    const now = this.ctx.clock.now();
    const { room, role } = await this.access(caller, roomId, 'read');
    const repo = new RoomsRepo(this.ctx.db);
    const target = await repo.member(caller.appId, roomId, userId);
    if (!target) throw new AppError('USER_NOT_FOUND', `${userId} is not a member of this room`);
    const events: DomainEvent[] = [];
    if (property === 'role') {
      authorize(role, 'setRole', room);
      if (value !== 'admin' && value !== 'member') throw invalidRequest('Invalid field value: a role is "admin" or "member"');
      await transact(this.ctx, events, async (trx) => {
        await new RoomsRepo(trx).updateMember(caller.appId, roomId, userId, { role: value });
        if (value === 'admin' && systemMessage) {
          const users = await new UsersRepo(trx).getMany(caller.appId, [userId]);
          const client = memberSummary(userId, users[0]);
          const msg = await appendMessage(trx, { appId: caller.appId, roomId, senderId: caller.userId, messageType: 'assignAdmin', message: client.nickname ?? userId, fields: { member: client, extra: { members: [client] } }, now });
          events.push(messageEvent(msg));
        }
      });
    } else {
      if (userId !== caller.userId) authorize(role, 'setMemberProperty', room);
      if (['client', 'badge', 'lastRead', 'isSuperuser', '__proto__', 'constructor', 'prototype'].includes(property) || !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(property)) {
        throw invalidRequest(`Invalid field property: ${property} cannot be set`);
      }
      const props = { ...(JSON.parse(target.properties) as Json), [property]: value };
      if (value === null) delete props[property];
      if (JSON.stringify(props).length > 16_384) throw invalidRequest('member properties may hold at most 16384 bytes of JSON');
      await repo.updateMember(caller.appId, roomId, userId, { properties: JSON.stringify(props) });
    }
    events.unshift({ type: 'member.updated', appId: caller.appId, roomId, actorId: caller.userId, userId, property });
    this.emit(events);
    return this.get(caller, roomId);
  }

  // ---------------------------------------------------------------- invitations

  async myInvitations(caller: Caller): Promise<{ totalCount: number; data: Json[] }> {
    const userId = requireUser(caller);
    const repo = new RoomsRepo(this.ctx.db);
    const invites = await repo.invitationsOf(caller.appId, userId);
    if (invites.length === 0) return { totalCount: 0, data: [] };
    // All the rooms in one rendering (a fixed number of queries), not one rendering per invitation.
    const rooms = await repo.getMany(caller.appId, invites.map((i) => i.room_id));
    const rendered = await this.ctx.render.renderRooms(caller.appId, rooms, { userId, roles: new Map(rooms.map((r) => [r.id, 'none' as RoomRole])) });
    const byId = new Map(rendered.map((r) => [r._id as string, r]));
    const users = await this.ctx.render.userMap(caller.appId, invites.map((i) => i.inviter));
    const data: Json[] = [];
    for (const inv of invites) {
      const room = byId.get(inv.room_id);
      if (!room) continue;
      data.push({
        room,
        inviter: inv.inviter ? memberSummary(inv.inviter, users.get(inv.inviter)) : null,
        createdTimeMS: inv.created_at,
        updatedTimeMS: inv.created_at,
      });
    }
    return { totalCount: data.length, data };
  }

  async roomInvitations(caller: Caller, roomId: string): Promise<{ totalCount: number; data: Json[] }> {
    await this.access(caller, roomId, 'read');
    const invites = await new RoomsRepo(this.ctx.db).invitations(caller.appId, roomId);
    const users = await this.ctx.render.userMap(caller.appId, invites.flatMap((i) => [i.invitee, i.inviter]));
    return {
      totalCount: invites.length,
      data: invites.map((i) => ({
        invitee: memberSummary(i.invitee, users.get(i.invitee)),
        inviter: i.inviter ? memberSummary(i.inviter, users.get(i.inviter)) : null,
        createdTimeMS: i.created_at,
      })),
    };
  }

  async declineInvitation(caller: Caller, roomId: string): Promise<{ room: string; declined: true }> {
    const userId = requireUser(caller);
    const n = await new RoomsRepo(this.ctx.db).removeInvitations(caller.appId, roomId, [userId]);
    if (n === 0) throw new AppError('INVITATION_NOT_FOUND', `No pending invitation to room ${roomId}`);
    this.emit([{ type: 'invitation.cancelled', appId: caller.appId, roomId, actorId: userId, invitees: [userId], accepted: false }]);
    return { room: roomId, declined: true };
  }

  /** Withdraws invitations: the inviter, a manager, the owner or the platform. */
  async cancelInvitations(caller: Caller, roomId: string, invitees: string[], systemMessage: boolean): Promise<{ room: string; cancelled: string[] }> {
    const now = this.ctx.clock.now();
    const { room, role } = await this.access(caller, roomId, 'read');
    const events: DomainEvent[] = [];
    let cancelled: string[] = [];
    await transact(this.ctx, events, async (trx) => {
      const repo = new RoomsRepo(trx);
      const pending = (await repo.invitations(caller.appId, roomId)).filter((i) => invitees.includes(i.invitee));
      if (pending.length === 0) throw new AppError('INVITATION_NOT_FOUND', 'No such pending invitation');
      for (const inv of pending) if (inv.inviter !== caller.userId) authorize(role, 'removeOthers', room);
      cancelled = pending.map((p) => p.invitee);
      await repo.removeInvitations(caller.appId, roomId, cancelled);
      events.push({ type: 'invitation.cancelled', appId: caller.appId, roomId, actorId: caller.userId, invitees: cancelled, accepted: false });
      if (systemMessage) {
        const users = await new UsersRepo(trx).getMany(caller.appId, cancelled);
        const byId = new Map(users.map((u) => [u.id, u]));
        const clients = cancelled.map((u) => memberSummary(u, byId.get(u)));
        const msg = await appendMessage(trx, { appId: caller.appId, roomId, senderId: caller.userId, messageType: 'cancelInvitations', message: JSON.stringify(clients), fields: { extra: { invitees: clients } }, now });
        events.push(messageEvent(msg));
      }
    });
    this.emit(events);
    return { room: roomId, cancelled };
  }

  // ---------------------------------------------------------------- read state

  /** `PUT /rooms/:id/lastRead`: the caller has read up to a message; their badge becomes what is left. */
  async markRead(caller: Caller, roomId: string, messageId: string): Promise<{ client: string; lastRead: string; badge: number }> {
    const userId = requireUser(caller);
    const { room, role } = await this.access(caller, roomId, 'read');
    if (role === 'platform' && !(await new RoomsRepo(this.ctx.db).member(caller.appId, roomId, userId))) throw new AppError('NOT_ROOM_MEMBER', `${userId} is not a member of this room`);
    const result = await this.ctx.db.transaction().execute(async (trx) => {
      const msg = await new MessagesRepo(trx).get(caller.appId, messageId);
      if (!msg || msg.room_id !== room.id) throw new AppError('MESSAGE_NOT_FOUND', `Message ${messageId} not found in this room`);
      const repo = new RoomsRepo(trx);
      const me = (await repo.member(caller.appId, roomId, userId))!;
      // Reading never moves backwards: an older receipt arriving late keeps the newer position.
      const lastRead = me.last_read !== null && me.last_read > messageId ? me.last_read : messageId;
      const badge = await new MessagesRepo(trx).countAfter(caller.appId, roomId, lastRead, userId);
      await repo.updateMember(caller.appId, roomId, userId, { last_read: lastRead, badge });
      return { client: userId, lastRead, badge };
    });
    this.emit([{ type: 'read', appId: caller.appId, roomId, userId, messageId: result.lastRead }]);
    return result;
  }

  // ---------------------------------------------------------------- helpers

  /**
   * Loads a room and the caller's role in it, refusing callers the policy does not let do `action`: membership and
   * role from the room and member rows read from the store (current for rendering), the ban from the room's
   * snapshot (which every ban change drops).
   */
  async access(caller: Caller, roomId: string, action: RoomAction): Promise<{ room: RoomRow; role: RoomRole; member: MemberRow | undefined }> {
    const snap = await this.ctx.roomCache.get(caller.appId, roomId);
    const repo = new RoomsRepo(this.ctx.db);
    const room = snap && (await repo.get(caller.appId, roomId));
    if (!snap || !room) throw roomNotFound(roomId);
    const member = caller.userId ? await repo.member(caller.appId, roomId, caller.userId) : undefined;
    const role = roleIn(caller, room, member, caller.userId !== null && isBanned(snap, caller.userId, this.ctx.clock.now()));
    authorize(role, action, room);
    return { room, role, member };
  }

  /**
   * The same decision as `access`, from the room cache alone: for the paths that run on every message (send,
   * history). The snapshot's room row may lag in its last message and update time; use `access` to render a room.
   */
  async accessCached(caller: Caller, roomId: string, action: RoomAction): Promise<{ snap: RoomSnapshot; role: RoomRole }> {
    const snap = await this.ctx.roomCache.get(caller.appId, roomId);
    if (!snap) throw roomNotFound(roomId);
    const role = roleInSnapshot(caller, snap, this.ctx.clock.now());
    authorize(role, action, snap.room);
    return { snap, role };
  }

  /** Whether an existing room is the direct room of these (one or two) users: direct, and nobody else in it. */
  private async isPairRoom(room: RoomRow, users: string[]): Promise<boolean> {
    if (room.room_type !== 'direct') return false;
    const members = (await new RoomsRepo(this.ctx.db).members(room.app_id, room.id)).map((m) => m.user_id);
    return members.every((m) => users.includes(m));
  }

  private async systemAdd(trx: Kysely<Database>, caller: Caller, room: RoomRow, added: string[], users: Map<string, UserRow>, now: number): Promise<MessageRow> {
    const clients = added.map((u) => memberSummary(u, users.get(u)));
    const single = clients.length === 1;
    return appendMessage(trx, {
      appId: caller.appId,
      roomId: room.id,
      senderId: caller.userId,
      messageType: single ? 'addMember' : 'addMembers',
      // addMember: the invitee's name; addMembers: the JSON text of the invitees (what the web UI parses)
      message: single ? (clients[0]!.nickname ?? added[0]) : JSON.stringify(clients),
      fields: { member: clients[0], extra: { invitees: clients, members: clients } },
      now,
    });
  }

  private emit(events: DomainEvent[]): void {
    for (const e of events) this.ctx.bus.emit(e);
  }
}

export function messageEvent(msg: MessageRow): DomainEvent {
  return { type: 'message.created', appId: msg.app_id, roomId: msg.room_id, messageId: msg.id, senderId: msg.sender_id, system: true, row: msg };
}

export function requireUser(caller: Caller): string {
  if (caller.userId === null) throw invalidRequest('IM-CLIENT-ID header is required to act as a user with the API key');
  return caller.userId;
}

export function roomNotFound(roomId: string): AppError {
  return new AppError('ROOM_NOT_FOUND', `Room ${roomId} not found`);
}

function tooManyMembers(max: number): AppError {
  return new AppError('TOO_MANY_MEMBERS', `A room may have at most ${max} members`);
}

async function requireUsers(db: Kysely<Database>, appId: string, ids: string[]): Promise<Map<string, UserRow>> {
  const wanted = unique(ids);
  const rows = await new UsersRepo(db).getMany(appId, wanted);
  const found = new Map(rows.map((u) => [u.id, u]));
  const rest = wanted.filter((id) => !found.has(id));
  // User groups stand in a room's members like users do (spec §3.2).
  const groups = new Set((await new GroupsRepo(db).getMany(appId, rest)).map((g) => g.id));
  const missing = rest.filter((id) => !groups.has(id));
  if (missing.length) throw new AppError('USER_NOT_FOUND', `Users not found: ${missing.slice(0, 20).join(', ')}`);
  return found;
}

/** For every user group among `ids`, adds its users as members too, marked as coming through that group. */
async function expandGroups(db: Kysely<Database>, appId: string, roomId: string, ids: string[], now: number): Promise<string[]> {
  const added: string[] = [];
  for (const g of await new GroupsRepo(db).getMany(appId, ids)) {
    added.push(...(await new RoomsRepo(db).addMembers(appId, roomId, g.members, now, 'member', g.id)));
  }
  return added;
}

/** The direct-room id the Flutter SDK computes: md5 of the two lower-cased ids, sorted, joined by "_". */
export function directRoomId(a: string, b: string): string {
  return createHash('md5').update([a.toLowerCase(), b.toLowerCase()].sort().join('_')).digest('hex');
}

function newRoomId(now: number): string {
  return `${Math.floor(now / 1000).toString(16).padStart(8, '0')}${createHash('md5').update(`${now}${Math.random()}`).digest('hex').slice(0, 16)}`;
}

/**
 * Ids of 32 lower-case hex digits are the direct-room ids the SDKs compute from a pair of users (`directRoomId`),
 * and are reserved for that pair's direct room: no other kind of room may take one (whoever asks, the platform
 * included), and a direct room may take one only when it is its two members' id. Otherwise a user could create
 * a group room under the id of two other users' future direct room, own it, and receive what they send there.
 */
export function isDirectShapedId(id: string): boolean {
  return /^[0-9a-f]{32}$/.test(id);
}

function assertDirectIdUse(id: string, roomType: string, pairId: string | undefined): void {
  if (!isDirectShapedId(id)) return;
  if (roomType !== 'direct') throw invalidRequest('Invalid field _id: ids of 32 hexadecimal digits are reserved for direct rooms');
  if (id !== pairId) throw invalidRequest("Invalid field _id: a direct room with an id of 32 hexadecimal digits must have the id of its two members' pair");
}

/** Members joining a direct room under a reserved id must be its pair (the id is checked against every two of them). */
function assertDirectMembers(roomId: string, members: string[]): void {
  if (!isDirectShapedId(roomId)) return;
  const all = unique(members);
  if (all.length === 2 && directRoomId(all[0]!, all[1]!) === roomId) return;
  if (all.length < 2) throw invalidRequest('A direct room under its pair id takes its members together: add both');
  throw invalidRequest('This direct room belongs to another pair of users');
}

function validateRoomId(id: string): void {
  if (id.length === 0 || id.length > 128 || /[\s/?#]/.test(id)) throw invalidRequest('Invalid field _id: a room id is 1-128 characters without spaces, "/", "?" or "#"');
}

function unique(ids: string[]): string[] {
  return [...new Set(ids)];
}

function parseSort(sort: string | undefined): RoomListQuery['sort'] {
  const text = sort?.trim() || '-lastMessage';
  return text.split(/[\s,]+/).map((part) => {
    const desc = part.startsWith('-');
    const name = part.replace(/^[-+]/, '');
    const field = SORT_FIELDS.get(name);
    if (!field) throw invalidRequest(`Invalid query parameter sort: unknown field ${name.slice(0, 64)} (use ${[...SORT_FIELDS.keys()].join(', ')})`);
    return { field, desc };
  });
}

/** `limit` of a room list: 0 or absent (the spec's "all") is a full page; above the largest page is refused. */
function pageSize(limit: number | undefined, maxPage: number): number {
  if (limit === undefined || limit === 0) return maxPage;
  if (!Number.isInteger(limit) || limit < 0 || limit > maxPage) {
    throw invalidRequest(`Invalid query parameter limit: must be between 0 and ${maxPage} (0 means a full page of ${maxPage})`);
  }
  return limit;
}

function parseJsonObject(text: string, name: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalidRequest(`Invalid query parameter ${name}: must be a JSON object`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidRequest(`Invalid query parameter ${name}: must be a JSON object`);
  return v as Json;
}

function scalarString(v: unknown, name: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).$eq === 'string') return (v as Json).$eq as string;
  throw invalidRequest(`Invalid query parameter ${name}: must be a string`);
}

/** Does a stored room preference match a `pref` filter such as {"tags":"work"} or {"folder":"x","hidden":false}? */
function prefMatches(data: string, muted: number, filter: Json): boolean {
  const pref: Json = { ...(JSON.parse(data) as Json), muted: muted === 1 };
  for (const [k, want] of Object.entries(filter)) {
    // The filter's keys are user input: only the preference's own fields count, never its prototype's.
    const have = Object.hasOwn(pref, k) ? pref[k] : undefined;
    if (k === 'tags') {
      const tags = Array.isArray(have) ? have : [];
      const wanted = Array.isArray(want) ? want : [want];
      if (!wanted.every((w) => tags.includes(w))) return false;
    } else if (have !== want && !(want === false && have === undefined)) {
      return false;
    }
  }
  return true;
}

