import type { Logger } from 'pino';
import type { Server } from 'socket.io';
import type { DomainEvent } from '../events/bus.js';
import type { Services } from '../services.js';
import { audience } from '../chat/policy.js';
import type { RoomSnapshot } from '../chat/room-cache.js';
import { encode, type Encoding } from './codec.js';

/** Each user has one channel per encoding, so one emit reaches all of their sockets in the form each expects. */
export function userChannel(appId: string, userId: string, encoding: Encoding): string {
  return `u:${encoding}:${appId}:${userId}`;
}

/** The application and user of a user channel, or undefined for any other room. */
export function parseUserChannel(room: string): { appId: string; userId: string } | undefined {
  if (!room.startsWith('u:')) return undefined;
  const encEnd = room.indexOf(':', 2);
  if (encEnd < 0) return undefined;
  const appEnd = room.indexOf(':', encEnd + 1);
  if (appEnd < 0) return undefined;
  return { appId: room.slice(encEnd + 1, appEnd), userId: room.slice(appEnd + 1) };
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
    switch (e.type) {
      case 'message.created':
      case 'message.updated': {
        const snap = await this.services.chat.roomCache.get(e.appId, e.roomId);
        if (!snap) return;
        const message = (e.type === 'message.created' ? e.message : undefined) ?? (await this.services.chat.render.renderStoredMessage(e.appId, e.messageId));
        if (!message) return;
        this.toChannels(this.channelsOf(snap), 'chat message', message);
        return;
      }
      case 'room.created':
      case 'room.updated':
      case 'members.added':
      case 'member.updated':
      case 'members.removed': {
        // Each member online here gets the room as they see it; the others resync over REST when they connect.
        // Rendered once for all of them (rooms.viewsFor), so the queries do not grow with the room's size, and
        // emitted once per group of members who see the same object.
        const snap = await this.services.chat.roomCache.get(e.appId, e.roomId);
        if (!snap) return;
        const viewers = this.onlineHere(e.appId, audience(snap, this.services.chat.clock.now()));
        if (viewers.length === 0) return;
        for (const view of await this.services.rooms.viewsFor(e.appId, e.roomId, viewers)) this.toUsers(e.appId, view.viewers, 'room', view.room);
        return;
      }
      case 'read':
        this.toUsers(e.appId, await this.audienceOf(e.appId, e.roomId), 'lastRead', { roomID: e.roomId, memberID: e.userId, messageID: e.messageId });
        return;
      case 'typing': {
        const others = (await this.audienceOf(e.appId, e.roomId)).filter((u) => u !== e.userId);
        this.toUsers(e.appId, others, 'typing', await this.services.prefs.typingEvent(e.appId, e.roomId, e.userId, e.message));
        return;
      }
      case 'roomPref.changed':
        this.toUsers(e.appId, [e.userId], 'roomPref', await this.services.prefs.roomPrefEvent(e.appId, e.userId, e.roomId, e.scope));
        return;
      case 'userPref.changed': {
        if (e.deleted) {
          this.toUsers(e.appId, [e.userId], 'myPrefDelete', e.key);
          return;
        }
        const pref = await this.services.prefs.userPrefEvent(e.appId, e.userId, e.key);
        if (pref) this.toUsers(e.appId, [e.userId], 'myPrefChange', pref);
        return;
      }
      case 'invitation.created': {
        const { room, inviter } = await this.services.rooms.invitationView(e.appId, e.roomId, e.actorId, e.invitees[0] ?? '');
        const now = Date.now();
        this.toUsers(e.appId, e.invitees, 'invitation', { room, inviter, createdTimeMS: now, updatedTimeMS: now });
        return;
      }
      case 'invitation.cancelled':
        if (!e.accepted) this.toUsers(e.appId, e.invitees, 'cancelInvitation', { room: e.roomId });
        return;
      case 'messages.userDeleted': {
        const ids = e.messageIds === 'all' ? await this.services.hiddenMessages.hiddenIdsOf(e.appId, e.userId, e.roomId) : e.messageIds;
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

  /** Who receives the room's events: the policy's audience (members, less the banned). */
  private async audienceOf(appId: string, roomId: string): Promise<string[]> {
    const snap = await this.services.chat.roomCache.get(appId, roomId);
    return snap ? audience(snap, this.services.chat.clock.now()) : [];
  }

  /** The users among `userIds` with a socket on this node. */
  private onlineHere(appId: string, userIds: string[]): string[] {
    const rooms = this.io.sockets.adapter.rooms;
    return userIds.filter((u) => rooms.has(userChannel(appId, u, 'base64')) || rooms.has(userChannel(appId, u, 'plain')));
  }

  /**
   * The user channels of the members who receive a room's new messages: a user banned from the room reads none.
   * Kept with the snapshot while no ban is in force (a ban can run out, so then they are worked out each time).
   */
  private channelsOf(snap: RoomSnapshot): Channels {
    const kept = this.channelCache.get(snap);
    if (kept) return kept;
    const channels = channelsFor(snap.room.app_id, audience(snap, this.services.chat.clock.now()));
    if (snap.bans.size === 0) this.channelCache.set(snap, channels);
    return channels;
  }

  /**
   * Emits to the given user channels in each encoding that has a socket online on this node; nothing is encoded for
   * nobody. Only this node's sockets: in a cluster every node receives every event and delivers it to its own
   * sockets (docs/cluster.md), so nothing is broadcast through the adapter.
   */
  private toChannels(channels: Channels, event: string, payload: unknown): void {
    const online = this.io.sockets.adapter.rooms;
    for (const enc of ENCODINGS) {
      const list = channels[enc];
      if (list.some((c) => online.has(c))) this.io.local.to(list).emit(event, encode(payload, enc));
    }
  }

  /** Emits to every socket of the given users, base64 or plain as each socket chose. */
  private toUsers(appId: string, userIds: string[], event: string, payload: unknown): void {
    if (userIds.length === 0) return;
    this.toChannels(channelsFor(appId, userIds), event, payload);
  }
}
