import type { MessageRow } from '../store/messages-repo.js';

/** A send's push options (docs/push.md): a custom text instead of the message's, and whether to leave the badge out. */
export interface PushRequest {
  text?: string;
  skipTotalBadge?: boolean;
}

/**
 * Typed domain events. A service emits one after its change is committed; the realtime layer turns them into
 * socket events and webhooks will consume them too. Listeners run synchronously and must not throw into the
 * service: a failing listener is reported to `onError` and the others still run.
 */
export type DomainEvent =
  | { type: 'room.created'; appId: string; roomId: string; actorId: string | null; members: string[] }
  | { type: 'room.updated'; appId: string; roomId: string; actorId: string | null; changes: string[] }
  | { type: 'room.deleted'; appId: string; roomId: string; actorId: string | null; members: string[] }
  | { type: 'members.added'; appId: string; roomId: string; actorId: string | null; userIds: string[]; joined: boolean }
  | { type: 'members.removed'; appId: string; roomId: string; actorId: string | null; userIds: string[] }
  | { type: 'member.updated'; appId: string; roomId: string; actorId: string | null; userId: string; property: string }
  | { type: 'invitation.created'; appId: string; roomId: string; actorId: string | null; invitees: string[] }
  | { type: 'invitation.cancelled'; appId: string; roomId: string; actorId: string | null; invitees: string[]; accepted: boolean }
  /**
   * `message`, when present, is the message as clients read it (rendered once by the service that stored it); `row`,
   * when present, the row as stored (webhooks render their payload from it).
   */
  | { type: 'message.created'; appId: string; roomId: string; messageId: string; senderId: string | null; system: boolean; message?: Record<string, unknown>; row?: MessageRow; push?: PushRequest }
  | { type: 'message.updated'; appId: string; roomId: string; messageId: string; actorId: string | null; change: 'edit' | 'recall' | 'pin' | 'unpin' | 'reaction' }
  | { type: 'messages.deleted'; appId: string; roomId: string; messageIds: string[] | 'all'; actorId: string | null }
  | { type: 'messages.userDeleted'; appId: string; roomId: string; userId: string; messageIds: string[] | 'all' }
  | { type: 'read'; appId: string; roomId: string; userId: string; messageId: string }
  | { type: 'typing'; appId: string; roomId: string; userId: string; message: unknown }
  | { type: 'roomPref.changed'; appId: string; roomId: string; userId: string; scope: string }
  | { type: 'userPref.changed'; appId: string; userId: string; key: string; deleted: boolean }
  | { type: 'config.changed'; appId: string; keys: string[]; deleted: boolean }
  /** Profiles were created, changed (the login time included) or deleted. */
  | { type: 'user.changed'; appId: string; userIds: string[] }
  | { type: 'user.blocked'; appId: string; blocker: string; blockee: string; blocked: boolean }
  | { type: 'room.ban'; appId: string; roomId: string; actorId: string | null; userId: string; banned: boolean; unblockAt: number | null }
  /** Tokens of a user stopped working (revoked, replaced, or the user was deleted): drop their sockets. */
  | { type: 'credentials.revoked'; appId: string; userId: string; tokenDigests: string[] | 'all' }
  /**
   * Rows that authenticate requests were written (an application, its domains or keys, user tokens) without a
   * revocation event saying so: what was cached from them must be dropped. `tokenDigests`, when given, says the
   * write concerned only these tokens of the application (empty: only new tokens, which nothing has cached).
   */
  | { type: 'credentials.changed'; appId: string; tokenDigests?: string[] };

export type DomainEventType = DomainEvent['type'];
/** `remote`: the event was committed by another node of the cluster and relayed here (docs/cluster.md). */
type Listener = (event: DomainEvent, remote: boolean) => void;

export class EventBus {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly onError: (err: unknown, event: DomainEvent) => void = () => {}) {}

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Announces a change committed by this process. */
  emit(event: DomainEvent): void {
    this.dispatch(event, false);
  }

  /** Announces a change another node committed (cluster mode): caches and socket delivery act on it, nothing else. */
  emitRemote(event: DomainEvent): void {
    this.dispatch(event, true);
  }

  private dispatch(event: DomainEvent, remote: boolean): void {
    for (const l of this.listeners) {
      try {
        l(event, remote);
      } catch (err) {
        this.onError(err, event);
      }
    }
  }
}
