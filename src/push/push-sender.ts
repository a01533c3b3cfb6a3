import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { PresenceSource } from '../chat/chat-context.js';
import type { Clock } from '../lib/clock.js';
import type { PlannedStatement } from '../store/append-repo.js';
import { BadgesRepo } from '../store/badges-repo.js';
import type { Dialect } from '../store/database.js';
import { type DeviceRow, type Provider, PushRepo } from '../store/push-repo.js';
import { audience } from '../chat/policy.js';
import type { RoomCache } from '../chat/room-cache.js';
import type { Database } from '../store/schema.js';
import { type DeliveryRow, newDelivery, type OutboxRow } from '../store/webhooks-repo.js';
import type { Facts, Outbox } from '../webhooks/outbox.js';
import type { PayloadRenderer } from '../webhooks/payloads.js';
import { chatNotice, messageText, type Notice } from './notice.js';
import { type ProviderName, type PushProvider, type PushResult } from './providers.js';

type Json = Record<string, unknown>;

/** How long a chat push is worth delivering (FCM `timeToLive: 3600` of IMKIT's chat pushes, spec §3.11). */
export const CHAT_PUSH_TTL_S = 3_600;
/** How long credentials read for sending may be reused. */
const CACHE_MS = 1_000;

/** What a push delivery row holds as `payload`: the provider, the device (or a token given by push2tokens), the notice. */
interface PushPayload {
  provider: ProviderName;
  device?: string;
  tokenKey?: string;
  token?: string;
  type?: string;
  userId?: string | null;
  notice: Notice;
}

/** The subscription types and the provider each stands for (docs/push.md). */
export const DEVICE_TYPES: Readonly<Record<string, Provider>> = { ios: 'apns', apns: 'apns', android: 'fcm', fcm: 'fcm', web: 'web' };

/** What the webhook dispatcher asks of push (the dispatcher owns the queue: claims, retries, restarts). */
export interface PushWork {
  /** The push deliveries an outbox event makes (none for most). */
  fanOut(e: OutboxRow, facts: Facts, now: number): Promise<DeliveryRow[]>;
  /** One attempt of a push delivery. */
  send(r: DeliveryRow): Promise<PushResult>;
  /** Re-reads which applications use push (the CLI may have changed credentials in another process). */
  refresh(): Promise<void>;
  close(): void;
}

export interface PushSenderOptions {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  logger: Logger;
  presence: PresenceSource;
  /** Room snapshots (the room cache): a room's audience comes from the policy. */
  rooms: Pick<RoomCache, 'get'>;
  payloads: PayloadRenderer;
  outbox: Pick<Outbox, 'loadPush'>;
  providers: Record<ProviderName, PushProvider>;
  /** SQLite: writes away from the event loop (Store.runBatch), as the dispatcher's rounds. */
  runBatch?: (statements: PlannedStatement[]) => Promise<void>;
  /** Told of every attempt's outcome (metrics). */
  onAttempt?: (provider: string, outcome: PushResult['outcome']) => void;
}

/**
 * Push notifications through the outbox (docs/push.md, Delivery). A new message's outbox row (written by the send's
 * own transaction) is fanned out by the webhook dispatcher's round, which asks `fanOut` for the push deliveries:
 * recipients are computed then (members without a live socket at that moment, not muting the room, not blocking the
 * sender, not banned), one delivery per device, each with the recipient's unread count as badge. The rows join the
 * dispatcher's queue (kind 'push'): claimed, retried with the retry schedule, resumed after a restart; `send` makes
 * one attempt with the device's provider, and removes a device whose token the provider reports invalid.
 */
export class PushSender implements PushWork {
  private readonly repo: PushRepo;
  private readonly creds = new Map<string, { at: number; byProvider: Map<ProviderName, Json> }>();

  constructor(private readonly o: PushSenderOptions) {
    this.repo = new PushRepo(o.db);
  }

  async refresh(): Promise<void> {
    await this.o.outbox.loadPush();
  }

  /** Drops cached credentials (they were changed in this process). */
  forget(appId?: string): void {
    if (appId === undefined) this.creds.clear();
    else this.creds.delete(appId);
  }

  private async credentialsOf(appId: string): Promise<Map<ProviderName, Json>> {
    const cached = this.creds.get(appId);
    if (cached && performance.now() - cached.at < CACHE_MS) return cached.byProvider;
    const rows = await this.repo.credentials(appId);
    const byProvider = new Map(rows.map((r) => [r.provider as ProviderName, JSON.parse(r.data) as Json]));
    this.creds.set(appId, { at: performance.now(), byProvider });
    return byProvider;
  }

  async fanOut(e: OutboxRow, facts: Facts, now: number): Promise<DeliveryRow[]> {
    if (e.type === 'message.created' && facts.push && facts.row && e.room_id !== null) return this.messagePush(e, facts, now);
    if (e.type === 'push.send' && facts.pushSend) return this.platformPush(e, facts.pushSend, now);
    return [];
  }

  private async messagePush(e: OutboxRow, facts: Facts, now: number): Promise<DeliveryRow[]> {
    const creds = await this.credentialsOf(e.app_id);
    if (creds.size === 0) return [];
    const row = facts.row!;
    const roomId = e.room_id!;
    // Who may read the room is the policy's (its audience: members but the banned), as for socket delivery.
    const snap = await this.o.rooms.get(e.app_id, roomId);
    if (!snap) return [];
    const offline = audience(snap, now).filter((u) => u !== row.sender_id && !this.o.presence.online(e.app_id, u));
    if (offline.length === 0) return [];
    const users = await this.repo.recipients(e.app_id, roomId, offline, row.sender_id);
    if (users.length === 0) return [];
    const devices = await this.repo.devicesOf(e.app_id, users, creds.has('hook') ? ['apns', 'fcm', 'web'] : (['apns', 'fcm', 'web'] as const).filter((p) => creds.has(p)));
    if (devices.length === 0) return [];
    const badges = facts.push!.skipTotalBadge ? undefined : await new BadgesRepo(this.o.db).totals(e.app_id, [...new Set(devices.map((d) => d.user_id))]);
    const message = await this.o.payloads.message(e.app_id, roomId, row.id, true);
    const room = snap.room;
    const sender = message.sender as { nickname?: unknown } | null | undefined;
    const senderName = typeof sender?.nickname === 'string' && sender.nickname ? sender.nickname : (row.sender_id ?? '');
    const text = facts.push!.text ?? messageText(JSON.parse(row.message), row.message_type);
    const expiry = Math.floor(now / 1000) + CHAT_PUSH_TTL_S;
    const out: DeliveryRow[] = [];
    for (const d of devices) {
      const provider = creds.has(d.provider) ? d.provider : 'hook';
      const notice = chatNotice({ roomId, roomName: room.name ?? null, messageId: row.id, messageType: row.message_type, senderName, text, message }, badges?.get(d.user_id) ?? (badges ? 0 : undefined), expiry);
      out.push(this.delivery(e, now, provider, d, { provider, device: d.id, tokenKey: d.token_key, userId: d.user_id, notice }, row.id));
    }
    return out;
  }

  private async platformPush(e: OutboxRow, p: NonNullable<Facts['pushSend']>, now: number): Promise<DeliveryRow[]> {
    const creds = await this.credentialsOf(e.app_id);
    if (creds.size === 0) return [];
    const notice = p.notice as Notice;
    const out: DeliveryRow[] = [];
    if (p.userIds) {
      const devices = await this.repo.devicesOf(e.app_id, p.userIds, ['apns', 'fcm', 'web']);
      for (const d of devices) {
        const provider = creds.has(d.provider) ? d.provider : creds.has('hook') ? 'hook' : undefined;
        if (provider) out.push(this.delivery(e, now, provider, d, { provider, device: d.id, tokenKey: d.token_key, userId: d.user_id, notice }, null));
      }
    }
    if (p.tokens && p.type) {
      const native = DEVICE_TYPES[p.type]!;
      const provider = creds.has(native) ? native : creds.has('hook') ? 'hook' : undefined;
      if (provider) {
        p.tokens.forEach((token, i) => out.push(this.delivery(e, now, provider, undefined, { provider, token, type: p.type, userId: null, notice }, null, `t${i}`)));
      }
    }
    return out;
  }

  private delivery(e: OutboxRow, now: number, provider: ProviderName, d: DeviceRow | undefined, payload: PushPayload, messageId: string | null, suffix?: string): DeliveryRow {
    const part = d ? d.id : suffix!;
    return newDelivery(e, now, {
      id: `${e.id}.p.${part}`,
      kind: 'push',
      endpoint_id: null,
      // Per device (its own concurrency and, within a room, order).
      target: `push:${provider}:${part}`,
      payload: JSON.stringify(payload),
      message_id: messageId,
      device_id: d?.id ?? null,
    });
  }

  async send(r: DeliveryRow): Promise<PushResult> {
    const p = JSON.parse(r.payload) as PushPayload;
    if (p.notice.expiry !== undefined && Math.floor(this.o.clock.now() / 1000) > p.notice.expiry) return { outcome: 'failed', status: null, error: 'expired before it could be delivered' };
    const creds = (await this.credentialsOf(r.app_id)).get(p.provider);
    if (!creds) return { outcome: 'failed', status: null, error: `no ${p.provider} credentials (deleted?)` };
    let token = p.token;
    let type = p.type ?? '';
    let deviceId: string | null = null;
    if (p.device !== undefined) {
      const device = await this.repo.device(r.app_id, p.device);
      if (!device || device.token_key !== p.tokenKey) return { outcome: 'failed', status: null, error: 'the device was unsubscribed' };
      token = device.token;
      type = device.type;
      deviceId = device.device_id;
    }
    const provider = this.o.providers[p.provider];
    let result: PushResult;
    try {
      result = await provider.send(r.app_id, creds, { token: token!, type, userId: p.userId ?? null, deviceId }, p.notice, r.id);
    } catch (err) {
      this.o.logger.error({ err, delivery: r.id, provider: p.provider }, 'push: an attempt failed unexpectedly');
      result = { outcome: 'retry', status: null, error: `${p.provider}: ${(err as Error).message ?? 'error'}`.slice(0, 200) };
    }
    if (result.outcome === 'invalid' && p.device !== undefined) {
      // The provider says this token is dead: the device is removed (unless it got a new token meanwhile).
      try {
        if (this.o.dialect === 'sqlite' && this.o.runBatch) await this.o.runBatch([this.repo.planRemoveDevice(r.app_id, p.device, p.tokenKey!)]);
        else await this.repo.removeDevice(r.app_id, p.device, p.tokenKey!);
      } catch (err) {
        this.o.logger.error({ err, delivery: r.id }, 'push: removing an invalid device failed');
      }
    }
    this.o.onAttempt?.(p.provider, result.outcome);
    return result;
  }

  close(): void {
    for (const p of Object.values(this.o.providers)) p.close();
  }
}
