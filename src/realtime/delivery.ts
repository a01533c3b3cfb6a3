import type { Logger } from 'pino';
import type { Server } from 'socket.io';
import type { DomainEvent } from '../events/bus.js';
import type { Services } from '../services.js';
import type { Store } from '../store/database.js';
import { MessagesRepo } from '../store/messages-repo.js';
import { PrefsRepo } from '../store/prefs-repo.js';
import { UsersRepo } from '../store/users-repo.js';
import { memberSummary } from '../chat/render.js';
import { recipients, type RoomSnapshot } from '../chat/room-cache.js';
import { encode, type Encoding } from './codec.js';

/** Each user has one channel per encoding, so one emit reaches all of their sockets in the form each expects. */
export function userChannel(appId: string, userId: string, encoding: Encoding): string {
  return `u:${encoding}:${appId}:${userId}`;
}

type Channels = Record<Encoding, string[]>;
const ENCODINGS = ['base64', 'plain'] as const;

function channelsFor(appId: string, userIds: string[]): Channels {
  return { base64: userIds.map((u) => userChannel(appId, u, 'base64')), plain: userIds.map((u) => userChannel(appId, u, 'plain')) };
}

/**
 * Turns committed domain events into the server->client events of realtime spec §3.2. Recipients are looked up
 * when the event is delivered (room members from the room cache, which membership events keep current), so
 * membership changes take effect at once. Events of one room are delivered in the order they were committed.
 */
export class Delivery {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly channelCache = new WeakMap<RoomSnapshot, Channels>();
  private readonly off: () => void;
  private stopped = false;

  constructor(
    private readonly io: Server,
    private readonly services: Services,
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly dropSockets: (appId: string, userId: string, digests: string[] | 'all') => void,
  ) {
    this.off = services.bus.on((e) => this.enqueue(e));
  }

  stop(): void {
    this.stopped = true;
    this.off();
  }

  private enqueue(e: DomainEvent): void {
    if (this.stopped) return;
    const key = 'roomId' in e ? `${e.appId}:${e.roomId}` : `${e.appId}:user:${'userId' in e ? e.userId : ''}`;
    // The common case, a new message to a room whose snapshot is cached with nothing queued before it, is
    // delivered at once: no promise chain, no second look at the store.
    if (e.type === 'message.created' && e.message && !this.queues.has(key)) {
      const snap = this.services.chat.roomCache.peek(e.appId, e.roomId);
      if (snap) {
        this.toChannels(this.channelsOf(snap), 'chat message', e.message);
        return;
      }
    }
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev
      .then(() => this.deliver(e))
      .catch((err) => this.logger.error({ err, event: e.type }, 'realtime delivery failed'))
      .finally(() => {
        if (this.queues.get(key) === next) this.queues.delete(key);
      });
    this.queues.set(key, next);
  }

  private async deliver(e: DomainEvent): Promise<void> {
    const db = this.store.db;
    switch (e.type) {
      case 'message.created':
      case 'message.updated': {
        const snap = await this.services.chat.roomCache.get(e.appId, e.roomId);
        if (!snap) return;
        let message = e.type === 'message.created' ? e.message : undefined;
        if (!message) {
          const row = await new MessagesRepo(db).get(e.appId, e.messageId);
          if (!row) return;
          message = await this.services.chat.render.renderMessage(e.appId, row);
        }
        this.toChannels(this.channelsOf(snap), 'chat message', message);
        return;
      }
      case 'room.created':
      case 'room.updated':
      case 'members.added':
      case 'member.updated':
      case 'members.removed': {
        for (const uid of await this.memberIds(e.appId, e.roomId)) {
          const room = await this.services.rooms.viewAs(e.appId, e.roomId, uid);
          if (room) this.toUsers(e.appId, [uid], 'room', room);
        }
        return;
      }
      case 'read':
        this.toUsers(e.appId, await this.memberIds(e.appId, e.roomId), 'lastRead', { roomID: e.roomId, memberID: e.userId, messageID: e.messageId });
        return;
      case 'typing': {
        const others = (await this.memberIds(e.appId, e.roomId)).filter((u) => u !== e.userId);
        const [user] = await new UsersRepo(db).getMany(e.appId, [e.userId]);
        const s = memberSummary(e.userId, user);
        const payload: Record<string, unknown> = { room: e.roomId, sender: e.userId, senderInfo: { _id: s._id, id: s.id, nickname: s.nickname, avatarUrl: s.avatarUrl, isRobot: s.isRobot } };
        if (e.message !== undefined && e.message !== null && e.message !== '') payload.message = e.message;
        this.toUsers(e.appId, others, 'typing', payload);
        return;
      }
      case 'roomPref.changed': {
        const [pref] = await new PrefsRepo(db).roomPrefs(e.appId, e.userId, [e.roomId], e.scope);
        const data = pref ? (JSON.parse(pref.data) as Record<string, unknown>) : {};
        this.toUsers(e.appId, [e.userId], 'roomPref', { room: e.roomId, ...data, muted: pref?.muted === 1, ...(e.scope ? { roomTag: e.scope } : {}) });
        return;
      }
      case 'userPref.changed': {
        if (e.deleted) {
          this.toUsers(e.appId, [e.userId], 'myPrefDelete', e.key);
          return;
        }
        const pref = (await new PrefsRepo(db).userPrefs(e.appId, e.userId)).find((p) => p.key === e.key);
        if (pref) this.toUsers(e.appId, [e.userId], 'myPrefChange', { key: e.key, data: JSON.parse(pref.data) });
        return;
      }
      case 'invitation.created': {
        const room = await this.services.rooms.viewAs(e.appId, e.roomId, e.invitees[0] ?? '');
        const [inviter] = e.actorId ? await new UsersRepo(db).getMany(e.appId, [e.actorId]) : [];
        const now = Date.now();
        const payload = { room, inviter: e.actorId ? memberSummary(e.actorId, inviter) : null, createdTimeMS: now, updatedTimeMS: now };
        this.toUsers(e.appId, e.invitees, 'invitation', payload);
        return;
      }
      case 'invitation.cancelled':
        if (!e.accepted) this.toUsers(e.appId, e.invitees, 'cancelInvitation', { room: e.roomId });
        return;
      case 'messages.userDeleted': {
        const ids = e.messageIds === 'all' ? await new MessagesRepo(db).hiddenIds(e.appId, e.userId, e.roomId) : e.messageIds;
        this.toUsers(e.appId, [e.userId], 'userDeleteMessages', { room: e.roomId, messages: ids });
        return;
      }
      case 'credentials.revoked':
        this.dropSockets(e.appId, e.userId, e.tokenDigests);
        return;
      case 'room.deleted':
      case 'messages.deleted':
      case 'config.changed':
      case 'user.blocked':
      case 'user.changed':
      case 'room.ban':
        // No IMKIT client event exists for these; clients see them on their next REST resync.
        return;
      case 'credentials.changed':
        // For the auth guard's credential cache; sockets are dropped on credentials.revoked.
        return;
    }
  }

  private async memberIds(appId: string, roomId: string): Promise<string[]> {
    const snap = await this.services.chat.roomCache.get(appId, roomId);
    return snap ? [...snap.members.keys()] : [];
  }

  /**
   * The user channels of the members who receive a room's new messages: a user banned from the room reads none.
   * Kept with the snapshot while no ban is in force (a ban can run out, so then they are worked out each time).
   */
  private channelsOf(snap: RoomSnapshot): Channels {
    const kept = this.channelCache.get(snap);
    if (kept) return kept;
    const channels = channelsFor(snap.room.app_id, recipients(snap, this.services.chat.clock.now()));
    if (snap.bans.size === 0) this.channelCache.set(snap, channels);
    return channels;
  }

  /**
   * Emits to the given user channels in each encoding that has a socket online; nothing is encoded for nobody.
   * (A cluster adapter broadcasts to other nodes too; there the check moves to each node.)
   */
  private toChannels(channels: Channels, event: string, payload: unknown): void {
    const online = this.io.sockets.adapter.rooms;
    for (const enc of ENCODINGS) {
      const list = channels[enc];
      if (list.some((c) => online.has(c))) this.io.to(list).emit(event, encode(payload, enc));
    }
  }

  /** Emits to every socket of the given users, base64 or plain as each socket chose. */
  private toUsers(appId: string, userIds: string[], event: string, payload: unknown): void {
    if (userIds.length === 0) return;
    this.toChannels(channelsFor(appId, userIds), event, payload);
  }
}
