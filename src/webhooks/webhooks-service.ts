import type { Kysely } from 'kysely';
import { AppError, invalidRequest } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import { iso } from '../lib/clock.js';
import { newObjectId } from '../lib/ids.js';
import { parseDuration } from '../lib/duration.js';
import { isUniqueViolation } from '../store/database.js';
import type { Database, DeliveryStatus } from '../store/schema.js';
import { type DeliveryRow, type EndpointRow, WebhooksRepo } from '../store/webhooks-repo.js';
import type { Outbox } from './outbox.js';
import { WEBHOOK_EVENT_TYPES } from './outbox.js';
import { newWebhookSecret } from './signing.js';
import { checkWebhookUrl, isWebhookUrl } from './ssrf.js';

type Json = Record<string, unknown>;

export interface EndpointInput {
  url: string;
  events: string[];
  key?: string;
  description?: string;
}

export const MAX_ENDPOINTS_PER_APP = 50;
/** How long a replaced secret keeps signing after a rotation, unless the caller says otherwise. */
export const DEFAULT_ROTATION_OVERLAP_MS = 24 * 3_600_000;
const MAX_ROTATION_OVERLAP_MS = 7 * 24 * 3_600_000;
const STATUSES: ReadonlySet<string> = new Set<DeliveryStatus>(['pending', 'sending', 'delivered', 'failed', 'refused']);
const TYPES: ReadonlySet<string> = new Set<string>(WEBHOOK_EVENT_TYPES);

/** The admin side of webhooks: endpoints, their secrets, the application's secret, the delivery log. */
export class WebhooksService {
  private readonly repo: WebhooksRepo;
  /** Called when a delivery was made due by hand (the server's dispatcher wakes up). */
  onDue: () => void = () => {};
  /** Called when an endpoint or a secret changed (the dispatcher drops what it cached of them). */
  onChange: () => void = () => {};

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly outbox: Outbox,
    private readonly limits: { allowPrivate: boolean },
  ) {
    this.repo = new WebhooksRepo(db);
  }

  /** `POST /admin/webhooks`: the new endpoint, with its signing secret (shown this once). */
  async create(appId: string, input: EndpointInput): Promise<Json> {
    const events = [...new Set(input.events)];
    const unknown = events.filter((t) => t !== '*' && !TYPES.has(t));
    if (unknown.length) throw invalidRequest(`Invalid field events: unknown event types ${unknown.map((t) => JSON.stringify(t)).join(', ')} (docs/webhooks.md lists them; "*" is all)`, { field: 'events' });
    if (input.key !== undefined && isWebhookUrl(input.key)) throw invalidRequest('Invalid field key: a key must not look like a URL (scheme:...), or a room could not tell it from one', { field: 'key' });
    await checkWebhookUrl(input.url, { allowPrivate: this.limits.allowPrivate, field: 'url' });
    if ((await this.repo.endpoints(appId)).length >= MAX_ENDPOINTS_PER_APP) {
      throw new AppError('TOO_MANY_WEBHOOKS', `An application may have at most ${MAX_ENDPOINTS_PER_APP} webhook endpoints`);
    }
    const now = this.clock.now();
    const row: EndpointRow = {
      app_id: appId,
      id: `we_${newObjectId(now)}`,
      url: input.url,
      events: JSON.stringify(events),
      key: input.key ?? null,
      description: input.description ?? null,
      secret: newWebhookSecret(),
      previous_secret: null,
      previous_expires_at: null,
      created_at: now,
      updated_at: now,
    };
    if (input.key !== undefined && (await this.repo.endpointByKey(appId, input.key))) throw new AppError('WEBHOOK_KEY_TAKEN', `Another endpoint has the key "${input.key}"`, { field: 'key' });
    try {
      await this.repo.insertEndpoint(row);
    } catch (err) {
      // Two requests with the same key at once: the unique index decides.
      if (isUniqueViolation(err)) throw new AppError('WEBHOOK_KEY_TAKEN', `Another endpoint has the key "${input.key}"`, { field: 'key' });
      throw err;
    }
    await this.outbox.load();
    this.onChange();
    return { ...renderEndpoint(row), secret: row.secret };
  }

  async list(appId: string): Promise<{ data: Json[] }> {
    return { data: (await this.repo.endpoints(appId)).map(renderEndpoint) };
  }

  /** `DELETE /admin/webhooks/:id`: its pending deliveries end as failed. */
  async delete(appId: string, id: string): Promise<Json> {
    if (!(await this.repo.deleteEndpoint(appId, id))) throw notFound(id);
    await this.repo.failPendingOf(appId, id, this.clock.now());
    await this.outbox.load();
    this.onChange();
    return { id, deleted: true };
  }

  /**
   * `POST /admin/webhooks/:id/rotate-secret`: a new secret signs from now on; the one it replaces signs too for
   * `expiresIn` (default 24 h, 0 = stops at once), so receivers can switch without losing a request.
   */
  async rotate(appId: string, id: string, expiresIn?: string): Promise<Json> {
    const ep = await this.repo.endpoint(appId, id);
    if (!ep) throw notFound(id);
    const overlap = overlapOf(expiresIn);
    const now = this.clock.now();
    const secret = newWebhookSecret();
    const previousExpiresAt = overlap > 0 ? now + overlap : null;
    await this.repo.setEndpointSecret(appId, id, { secret, previous_secret: overlap > 0 ? ep.secret : null, previous_expires_at: previousExpiresAt, updated_at: now });
    this.onChange();
    return { id, secret, previousSecretExpiresAt: previousExpiresAt === null ? null : iso(previousExpiresAt) };
  }

  /**
   * The secret that signs room webhooks given as a URL (`imkit-server app webhook-secret`), made on first use;
   * with `rotate`, a new one, the old one signing on for the overlap.
   */
  async appSecret(appId: string, rotate = false, expiresIn?: string): Promise<Json> {
    const now = this.clock.now();
    let row = await this.repo.ensureAppSecret({ app_id: appId, secret: newWebhookSecret(), previous_secret: null, previous_expires_at: null, created_at: now });
    if (rotate) {
      const overlap = overlapOf(expiresIn);
      row = { ...row, secret: newWebhookSecret(), previous_secret: overlap > 0 ? row.secret : null, previous_expires_at: overlap > 0 ? now + overlap : null };
      await this.repo.setAppSecret(row);
      this.onChange();
    }
    return {
      appId,
      secret: row.secret,
      previousSecretExpiresAt: row.previous_secret !== null && row.previous_expires_at !== null && row.previous_expires_at > now ? iso(row.previous_expires_at) : null,
    };
  }

  /** Work waiting, for /metrics. */
  backlog(): Promise<{ events: number; byStatus: Record<string, number> }> {
    return this.repo.backlog();
  }

  /** `GET /admin/webhooks/deliveries`: newest first; `before` is the last id of the previous page. */
  async deliveries(appId: string, q: { endpoint?: string; room?: string; status?: string; limit?: number; before?: string }): Promise<Json> {
    if (q.status !== undefined && !STATUSES.has(q.status)) throw invalidRequest(`Invalid query parameter status: one of ${[...STATUSES].join(', ')}`);
    const limit = q.limit ?? 50;
    const rows = await this.repo.deliveries(appId, { endpointId: q.endpoint, roomId: q.room, status: q.status as DeliveryStatus | undefined, before: q.before, limit });
    return { data: rows.map(renderDelivery), nextBefore: rows.length === limit ? rows[rows.length - 1]!.id : null };
  }

  /** `POST /admin/webhooks/deliveries/:id/retry`: one more attempt now (a failed one that fails again stays failed). */
  async retry(appId: string, id: string): Promise<Json> {
    const row = await this.repo.delivery(appId, id);
    if (!row) throw new AppError('DELIVERY_NOT_FOUND', `Delivery ${id} not found`);
    if (row.status === 'refused' && row.target.startsWith('key:')) throw invalidRequest('This delivery names no endpoint (its room webhook key matched none): there is nothing to retry');
    if (!(await this.repo.retryNow(appId, id, this.clock.now()))) {
      throw new AppError('DELIVERY_NOT_RETRYABLE', row.status === 'delivered' ? 'This delivery was delivered already' : 'This delivery is being sent right now');
    }
    this.onDue();
    return renderDelivery((await this.repo.delivery(appId, id))!);
  }
}

function overlapOf(expiresIn: string | undefined): number {
  if (expiresIn === undefined) return DEFAULT_ROTATION_OVERLAP_MS;
  const ms = parseDuration(expiresIn);
  if (ms === undefined || ms > MAX_ROTATION_OVERLAP_MS) throw invalidRequest('Invalid field expiresIn: a duration such as 24h, 30m or 0, at most 7d', { field: 'expiresIn' });
  return ms;
}

function notFound(id: string): AppError {
  return new AppError('WEBHOOK_NOT_FOUND', `Webhook endpoint ${id} not found`);
}

/** An endpoint as the admin routes show it: never its secret. */
function renderEndpoint(row: EndpointRow): Json {
  return {
    id: row.id,
    url: row.url,
    events: JSON.parse(row.events) as string[],
    key: row.key,
    description: row.description,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    ...(row.previous_expires_at !== null ? { previousSecretExpiresAt: iso(row.previous_expires_at) } : {}),
  };
}

/** A delivery as the log shows it: the target URL without its query (which may hold a token), never the payload. */
function renderDelivery(row: DeliveryRow): Json {
  return {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type,
    kind: row.kind,
    endpointId: row.endpoint_id,
    roomId: row.room_id,
    target: redactTarget(row.target),
    status: row.status,
    attempts: row.attempts,
    lastStatusCode: row.last_status,
    lastError: row.last_error,
    nextAttemptAt: row.next_attempt_at === null || row.status !== 'pending' ? null : iso(row.next_attempt_at),
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

function redactTarget(target: string): string {
  if (!URL.canParse(target)) return target;
  const u = new URL(target);
  return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
}
