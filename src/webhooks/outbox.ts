import type { Kysely } from 'kysely';
import type { DomainEvent, PushRequest } from '../events/bus.js';
import { newObjectId } from '../lib/ids.js';
import type { MessageRow } from '../store/messages-repo.js';
import type { Database, WebhookEventsTable } from '../store/schema.js';
import { PushRepo } from '../store/push-repo.js';
import { RoomsRepo } from '../store/rooms-repo.js';
import { WebhooksRepo } from '../store/webhooks-repo.js';

/** The event types an application-level endpoint may subscribe to (docs/webhooks.md); "*" is all of them. */
export const WEBHOOK_EVENT_TYPES = [
  'message.created', 'message.edited', 'message.recalled', 'message.deleted',
  'room.created', 'room.updated', 'room.deleted',
  'members.added', 'members.removed',
  'user.created', 'user.deleted',
  'user.banned', 'user.unbanned', 'user.muted', 'user.unmuted',
  'key.alert',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The types a room's own `webhook` receives, as IMKIT names them (spec §4.5). */
export const ROOM_WEBHOOK_EVENTS: ReadonlyMap<string, (facts: Facts) => string> = new Map<string, (facts: Facts) => string>([
  ['message.created', () => 'MESSAGE'],
  ['members.added', (f: Facts) => (f.joined ? 'JOIN_ROOM' : 'ADD_MEMBERS')],
  ['members.removed', () => 'DELETE_MEMBERS'],
]);

/** What an outbox row says about its event: ids and the actor, never rendered content (rendered at fan-out). */
export interface Facts {
  actorId?: string | null;
  messageId?: string;
  messageIds?: string[] | 'all';
  userId?: string;
  userIds?: string[];
  joined?: boolean;
  changes?: string[];
  members?: string[];
  unblockAt?: number | null;
  /** Posted by a room webhook's reply: the room's own webhook is not told of it (it would answer itself). */
  fromBot?: boolean;
  /** message.created: the message as stored, so the payload shows it as it was created (later edits or a deletion aside). */
  row?: MessageRow;
  /** key.alert: the alert as `GET /admin/alerts` shows it (src/monitoring/key-alerts.ts). */
  alert?: Record<string, unknown>;
  /** message.created: present when the send asked for a push (docs/push.md); absent for `push: false`. */
  push?: PushRequest;
  /** push.send (POST /push/push2clients, /push/push2tokens): what to send to whom. */
  pushSend?: { notice: Record<string, unknown>; userIds?: string[]; tokens?: string[]; type?: string };
}


export interface WebhookFact {
  type: WebhookEventType;
  appId: string;
  roomId: string | null;
  facts: Facts;
}

/** The webhook events a domain event stands for (none for most). */
export function factsOf(e: DomainEvent): WebhookFact[] {
  const room = (type: WebhookEventType, facts: Facts): WebhookFact[] => [{ type, appId: e.appId, roomId: 'roomId' in e ? e.roomId : null, facts }];
  switch (e.type) {
    case 'message.created':
      return room('message.created', { messageId: e.messageId, actorId: e.senderId, ...(e.row ? { row: e.row } : {}), ...(e.push ? { push: e.push } : {}) });
    case 'message.updated':
      if (e.change === 'edit') return room('message.edited', { messageId: e.messageId, actorId: e.actorId });
      if (e.change === 'recall') return room('message.recalled', { messageId: e.messageId, actorId: e.actorId });
      return [];
    case 'messages.deleted':
      return room('message.deleted', { messageIds: e.messageIds, actorId: e.actorId });
    case 'room.created':
      return room('room.created', { actorId: e.actorId, members: e.members });
    case 'room.updated':
      return room('room.updated', { actorId: e.actorId, changes: e.changes });
    case 'room.deleted':
      return room('room.deleted', { actorId: e.actorId, members: e.members });
    case 'members.added':
      return room('members.added', { actorId: e.actorId, userIds: e.userIds, joined: e.joined });
    case 'members.removed':
      return room('members.removed', { actorId: e.actorId, userIds: e.userIds });
    case 'room.ban':
      return room(e.banned ? 'user.banned' : 'user.unbanned', { actorId: e.actorId, userId: e.userId, unblockAt: e.unblockAt });
    default:
      return [];
  }
}

/**
 * The write half of the transactional outbox. A service that commits a change subscribers want to hear of adds its
 * event rows to the same transaction (`record`), so a crash can neither lose an event of a committed change nor
 * leave one of a change rolled back. Events nobody subscribes to are not written: the outbox knows, in memory,
 * which types each application's endpoints subscribe to and which applications have rooms with a webhook. The
 * dispatcher (webhooks/dispatcher.ts) reads the rows, renders payloads and delivers them.
 */
export class Outbox {
  /** Per application: event types its endpoints subscribe to ("*" = all). */
  private subs = new Map<string, Set<string>>();
  /** Applications that have (or had, since start) a room with a webhook. */
  private roomHooks = new Set<string>();
  /** Applications with push credentials, and those of them with devices: their new messages are wanted (docs/push.md). */
  private pushCredentialed = new Set<string>();
  private pushApps = new Set<string>();
  private loaded = false;
  /** Told when this process noted something the other nodes of a cluster keep too (docs/cluster.md). */
  onNote: ((what: 'room webhook' | { push: string }) => void) | undefined;

  constructor(private readonly db: Kysely<Database>) {}

  /** Reads every application's subscriptions (at start, and after an endpoint is created or deleted). */
  async load(db: Kysely<Database> = this.db): Promise<void> {
    const repo = new WebhooksRepo(db);
    const subs = new Map<string, Set<string>>();
    for (const row of await repo.subscriptions()) {
      const set = subs.get(row.app_id) ?? new Set<string>();
      for (const t of JSON.parse(row.events) as string[]) set.add(t);
      subs.set(row.app_id, set);
    }
    const hooks = new Set(await repo.appsWithRoomWebhooks());
    for (const app of this.roomHooks) hooks.add(app);
    this.subs = subs;
    this.roomHooks = hooks;
    await this.loadPush(db);
    this.loaded = true;
  }

  /**
   * Reads which applications have push credentials and devices (at start, after credentials change here, and
   * every few seconds from the dispatcher: the CLI may have changed them in another process).
   */
  async loadPush(db: Kysely<Database> = this.db): Promise<void> {
    const { credentialed, withDevices } = await new PushRepo(db).pushApps();
    this.pushCredentialed = new Set(credentialed);
    this.pushApps = new Set(withDevices);
  }

  /** A user of this application subscribed a device: with push credentials, its new messages are now wanted. */
  noteDevice(appId: string): void {
    if (this.pushCredentialed.has(appId) && !this.pushApps.has(appId)) {
      this.pushApps.add(appId);
      this.onNote?.({ push: appId });
    }
  }

  /** Whether new messages of this application may notify someone by push (credentials and devices). */
  wantsPush(appId: string): boolean {
    return this.pushApps.has(appId);
  }

  /** Whether the application has credentials for some push provider (push2clients writes nothing otherwise). */
  hasPushCredentials(appId: string): boolean {
    return this.pushCredentialed.has(appId);
  }

  /** A room of this application was given a webhook (before its transaction commits: over-noting is harmless). */
  noteRoomWebhook(appId: string): void {
    if (this.roomHooks.has(appId)) return;
    this.roomHooks.add(appId);
    this.onNote?.('room webhook');
  }

  /**
   * Whether a committed change, announced on the bus, may have written outbox rows (the dispatcher then looks at
   * once; otherwise at its next poll). Changes of applications without webhooks never wake it.
   */
  mayConcern(e: DomainEvent): boolean {
    if (e.type === 'user.changed') return this.wants(e.appId, 'user.created') || this.wants(e.appId, 'user.deleted');
    if (e.type === 'roomPref.changed') return this.wants(e.appId, 'user.muted') || this.wants(e.appId, 'user.unmuted');
    if (e.type === 'message.created' && e.push && this.pushApps.has(e.appId)) return true;
    return factsOf(e).some((f) => this.wants(f.appId, f.type) || (ROOM_WEBHOOK_EVENTS.has(f.type) && this.roomHooks.has(f.appId)));
  }

  /** Whether an endpoint of the application subscribes to this type. */
  wants(appId: string, type: string): boolean {
    const set = this.subs.get(appId);
    return set !== undefined && (set.has(type) || set.has('*'));
  }

  /**
   * The outbox row of a new message sent through the message writer, or undefined when nobody wants it.
   * `roomWebhook`: the room's `webhook` as the sender's room snapshot holds it; `push`: the send's push options
   * (undefined: `push: false`). An application without webhooks and without push pays one Set lookup here.
   */
  messageRow(message: MessageRow, roomWebhook: string | null, fromBot = false, push?: PushRequest): WebhookEventsTable | undefined {
    const forRoom = !fromBot && roomWebhook !== null && roomWebhook !== '';
    const forPush = push !== undefined && this.pushApps.has(message.app_id);
    if (!forRoom && !forPush && !this.wants(message.app_id, 'message.created')) return undefined;
    const facts: Facts = { messageId: message.id, actorId: message.sender_id, row: message, ...(fromBot ? { fromBot } : {}), ...(forPush ? { push } : {}) };
    return row({ type: 'message.created', appId: message.app_id, roomId: message.room_id, facts }, message.created_at);
  }

  /** Adds the rows of these domain events that someone wants to the caller's transaction. */
  recordEvents(trx: Kysely<Database>, events: DomainEvent[], now: number): Promise<void> {
    return this.record(trx, events.flatMap(factsOf), now);
  }

  /** Adds the rows of these facts that someone wants to the caller's transaction. */
  async record(trx: Kysely<Database>, facts: WebhookFact[], now: number): Promise<void> {
    if (facts.length === 0) return;
    // The CLI never loads at start; inside a transaction only the transaction's connection may be used.
    if (!this.loaded) await this.load(trx);
    const repo = new WebhooksRepo(trx);
    const hooks = new Map<string, boolean>();
    const rows: WebhookEventsTable[] = [];
    for (const f of facts) {
      let wanted = this.wants(f.appId, f.type) || (f.type === 'message.created' && f.facts.push !== undefined && this.pushApps.has(f.appId));
      if (!wanted && f.roomId !== null && !f.facts.fromBot && ROOM_WEBHOOK_EVENTS.has(f.type) && this.roomHooks.has(f.appId)) {
        const key = `${f.appId}\u0000${f.roomId}`;
        let has = hooks.get(key);
        if (has === undefined) {
          const r = await new RoomsRepo(trx).get(f.appId, f.roomId);
          has = !!r?.webhook;
          hooks.set(key, has);
        }
        wanted = has;
      }
      if (wanted) rows.push(row(f, now));
    }
    await repo.insertEvents(rows);
  }
}

/** The outbox row of a push asked for by the platform (push2clients, push2tokens): written whoever subscribes. */
export function pushSendRow(appId: string, pushSend: NonNullable<Facts['pushSend']>, now: number): WebhookEventsTable {
  return row({ type: 'push.send' as WebhookEventType, appId, roomId: null, facts: { pushSend } }, now);
}

function row(f: WebhookFact, now: number): WebhookEventsTable {
  return { id: `evt_${newObjectId(now)}`, app_id: f.appId, type: f.type, room_id: f.roomId, data: JSON.stringify(f.facts), state: 'new', created_at: now };
}
