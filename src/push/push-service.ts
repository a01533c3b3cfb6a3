import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { AppError, invalidRequest } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import { iso } from '../lib/clock.js';
import type { Caller } from '../chat/policy.js';
import { newObjectId } from '../lib/ids.js';
import { PushRepo, type Provider } from '../store/push-repo.js';
import type { Database } from '../store/schema.js';
import { UsersRepo } from '../store/users-repo.js';
import { WebhooksRepo } from '../store/webhooks-repo.js';
import { pushSendRow, type Outbox } from '../webhooks/outbox.js';
import { checkWebhookUrl } from '../webhooks/ssrf.js';
import { noticeFromPayload } from './notice.js';
import { parseSubscription, PROVIDERS, type ProviderName, type PushProvider } from './providers.js';
import { DEVICE_TYPES } from './push-sender.js';

type Json = Record<string, unknown>;

/** Devices one user may have registered; subscribing one more forgets the least recently subscribed. */
export const MAX_DEVICES_PER_USER = 20;
/** Recipients of one POST /push/push2clients, tokens of one /push/push2tokens. */
export const MAX_PUSH_TARGETS = 1_000;

/**
 * Device registration, the platform's push routes and the applications' push credentials (docs/push.md). Sending
 * is the dispatcher's (push-sender.ts): these routes only write, and push2clients / push2tokens write an outbox
 * row, so an accepted push survives a restart.
 */
export class PushService {
  private readonly repo: PushRepo;
  /** Called when an outbox row was written (the dispatcher wakes up). */
  onDue: () => void = () => {};
  /** Called when credentials changed (the sender drops what it cached). */
  onChange: (appId: string) => void = () => {};

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly outbox: Outbox,
    private readonly providers: () => Record<ProviderName, Pick<PushProvider, 'checkCredentials'>>,
    private readonly limits: { allowPrivate: boolean },
  ) {
    this.repo = new PushRepo(db);
  }

  // ---------------------------------------------------------------- devices

  /** `POST /me/subscribe {type, token, deviceId?}`: the caller's device receives pushes. */
  async subscribe(caller: Caller, body: Json): Promise<Json> {
    const userId = await this.existingUser(caller);
    const { type, provider } = typeOf(body.type);
    const token = await this.checkToken(provider, body.token ?? body.subscription);
    const deviceId = optionalDeviceId(body.deviceId);
    const now = this.clock.now();
    const tokenKey = keyOf(token);
    await this.db.transaction().execute(async (trx) => {
      const repo = new PushRepo(trx);
      if (deviceId !== null) await repo.deleteOtherTokensOfDevice(caller.appId, userId, deviceId, provider, tokenKey);
      await repo.upsertDevice({ app_id: caller.appId, id: `pd_${newObjectId(now)}${randomBytes(2).toString('hex')}`, user_id: userId, type, provider, device_id: deviceId, token, token_key: tokenKey, created_at: now, updated_at: now });
      const mine = await repo.devicesOfUser(caller.appId, userId);
      for (const old of mine.slice(0, Math.max(0, mine.length - MAX_DEVICES_PER_USER))) await repo.deleteDevice(caller.appId, old.id);
    });
    this.outbox.noteDevice(caller.appId);
    return {};
  }

  /** `POST /me/unsubscribe {type, deviceId | token}`: answers `{n, ok}` (how many devices were removed). */
  async unsubscribe(caller: Caller, body: Json): Promise<Json> {
    const userId = await this.existingUser(caller);
    const { provider } = typeOf(body.type);
    const deviceId = optionalDeviceId(body.deviceId);
    const given = body.token ?? body.subscription;
    if (deviceId === null && (given === undefined || given === null)) throw new AppError('MISSING_PARAMETER', 'deviceId or token is required');
    let tokenKey: string | undefined;
    if (given !== undefined && given !== null) {
      const sub = provider === 'web' ? parseSubscription(given) : undefined;
      if (provider === 'web' && !sub) throw new AppError('INVALID_DEVICE_TOKEN', 'Invalid field token: not a web push subscription ({endpoint, keys: {p256dh, auth}})', { field: 'token' });
      if (provider !== 'web' && (typeof given !== 'string' || given.length > 4096)) throw new AppError('INVALID_DEVICE_TOKEN', 'Invalid field token: must be a string', { field: 'token' });
      tokenKey = keyOf(sub ? JSON.stringify(sub) : (given as string));
    }
    const n = await this.repo.deleteDevices(caller.appId, userId, provider, { ...(deviceId !== null ? { deviceId } : {}), ...(tokenKey !== undefined ? { tokenKey } : {}) });
    return { n, ok: 1 };
  }

  /** The caller's user, which must exist (the API key with IM-CLIENT-ID may name anyone). */
  private async existingUser(caller: Caller): Promise<string> {
    const userId = requireUser(caller);
    if (!(await new UsersRepo(this.db).get(caller.appId, userId))) throw new AppError('USER_NOT_FOUND', `User ${userId} does not exist`);
    return userId;
  }

  /** A device token as the provider issues it; for web the subscription object, kept as JSON text. */
  private async checkToken(provider: Provider, token: unknown): Promise<string> {
    const invalid = (why: string) => new AppError('INVALID_DEVICE_TOKEN', `Invalid field token: ${why}`, { field: 'token' });
    if (token === undefined || token === null || token === '') throw new AppError('MISSING_PARAMETER', 'type and token are required');
    if (provider === 'apns') {
      if (typeof token !== 'string' || !/^[0-9a-fA-F]{32,200}$/.test(token)) throw invalid('an APNs device token is 32-200 hexadecimal characters');
      return token.toLowerCase();
    }
    if (provider === 'fcm') {
      if (typeof token !== 'string' || !/^[A-Za-z0-9_:.\-]{16,4096}$/.test(token)) throw invalid('an FCM registration token is 16-4096 characters of A-Z, a-z, 0-9, _ : . -');
      return token;
    }
    const sub = parseSubscription(token);
    if (!sub) throw invalid('a web push subscription is {endpoint, keys: {p256dh, auth}} (PushSubscription.toJSON()), as an object or JSON text');
    await checkWebhookUrl(sub.endpoint, { allowPrivate: this.limits.allowPrivate, field: 'token.endpoint' });
    return JSON.stringify(sub);
  }

  // ---------------------------------------------------------------- the platform's pushes

  /** `POST /push/push2clients {clients, payload}`: to every device of these users (online or not). */
  async push2clients(appId: string, body: Json): Promise<Json> {
    const { clients, payload } = body;
    if (!Array.isArray(clients) || clients.length === 0 || typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new AppError('MISSING_PARAMETER', 'clients and payload are required');
    }
    if (clients.length > MAX_PUSH_TARGETS || clients.some((c) => typeof c !== 'string' || c.length === 0 || c.length > 128)) {
      throw invalidRequest(`Invalid field clients: 1-${MAX_PUSH_TARGETS} user ids`, { field: 'clients' });
    }
    const notice = noticeFromPayload(payload as Json);
    await this.enqueue(appId, { notice: notice as Json, userIds: [...new Set(clients as string[])] });
    return {};
  }

  /** `POST /push/push2tokens {type, tokens, payload}`: to these device tokens, registered or not. */
  async push2tokens(appId: string, body: Json): Promise<Json> {
    const { tokens, payload } = body;
    if (body.type === undefined || !Array.isArray(tokens) || tokens.length === 0 || typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new AppError('MISSING_PARAMETER', 'type, tokens and payload are required');
    }
    const { type, provider } = typeOf(body.type);
    if (tokens.length > MAX_PUSH_TARGETS) throw invalidRequest(`Invalid field tokens: at most ${MAX_PUSH_TARGETS}`, { field: 'tokens' });
    const checked: string[] = [];
    for (const t of tokens) checked.push(await this.checkToken(provider, t));
    const notice = noticeFromPayload(payload as Json);
    await this.enqueue(appId, { notice: notice as Json, tokens: [...new Set(checked)], type });
    return {};
  }

  /** Writes the push as an outbox row (nothing when the application has no credentials: no provider could send it). */
  private async enqueue(appId: string, send: { notice: Json; userIds?: string[]; tokens?: string[]; type?: string }): Promise<void> {
    if (!this.outbox.hasPushCredentials(appId)) await this.outbox.loadPush();
    if (!this.outbox.hasPushCredentials(appId)) return;
    await new WebhooksRepo(this.db).insertEvents([pushSendRow(appId, send, this.clock.now())]);
    this.onDue();
  }

  // ---------------------------------------------------------------- credentials

  /** `PUT /admin/push/credentials/:provider`: checks and stores them; answers what may be shown (never a secret). */
  async putCredentials(appId: string, provider: string, body: Json): Promise<Json> {
    const name = providerName(provider);
    const { data, info } = await this.providers()[name].checkCredentials(body);
    const now = this.clock.now();
    await this.repo.putCredentials({ app_id: appId, provider: name, data: JSON.stringify(data), info: JSON.stringify(info), created_at: now, updated_at: now });
    await this.outbox.loadPush();
    this.onChange(appId);
    return { provider: name, ...info, updatedAt: iso(now) };
  }

  /** `GET /admin/push/credentials`: which providers are configured, with what may be shown. */
  async listCredentials(appId: string): Promise<Json> {
    const rows = await this.repo.credentials(appId);
    const data = rows.map((r) => ({ provider: r.provider, ...(JSON.parse(r.info) as Json), createdAt: iso(r.created_at), updatedAt: iso(r.updated_at) }));
    return { totalCount: data.length, data };
  }

  /** `DELETE /admin/push/credentials/:provider`. */
  async deleteCredentials(appId: string, provider: string): Promise<Json> {
    const name = providerName(provider);
    if (!(await this.repo.deleteCredentials(appId, name))) throw new AppError('PUSH_CREDENTIALS_NOT_FOUND', `No ${name} push credentials are set`);
    await this.outbox.loadPush();
    this.onChange(appId);
    return {};
  }
}

function requireUser(caller: Caller): string {
  if (caller.userId === null) throw new AppError('MISSING_PARAMETER', 'A user is required: a user token, or the API key with IM-CLIENT-ID');
  return caller.userId;
}

function typeOf(value: unknown): { type: string; provider: Provider } {
  if (value === undefined || value === null) throw new AppError('MISSING_PARAMETER', 'type is required (ios, android, fcm or web)');
  const type = typeof value === 'string' ? value.toLowerCase() : undefined;
  const provider = type !== undefined && Object.prototype.hasOwnProperty.call(DEVICE_TYPES, type) ? DEVICE_TYPES[type] : undefined;
  if (!provider || type === undefined) throw invalidRequest(`Invalid field type: one of ${Object.keys(DEVICE_TYPES).join(', ')}`, { field: 'type' });
  return { type, provider };
}

function optionalDeviceId(value: unknown): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' || value.length > 256) throw invalidRequest('Invalid field deviceId: a string of at most 256 characters', { field: 'deviceId' });
  return value;
}

function providerName(value: string): ProviderName {
  if (!(PROVIDERS as readonly string[]).includes(value)) throw invalidRequest(`Invalid provider: one of ${PROVIDERS.join(', ')}`, { field: 'provider' });
  return value as ProviderName;
}

function keyOf(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
