import { Periodic } from '../lib/periodic.js';
import ipaddr from 'ipaddr.js';
import type { Kysely } from 'kysely';
import { AppError, invalidRequest } from '../errors.js';
import { iso, type Clock } from '../lib/clock.js';
import { newObjectId } from '../lib/ids.js';
import type { PlannedStatement } from '../store/append-repo.js';
import { KeyAlertsRepo, type KeyAlertRow } from '../store/key-alerts-repo.js';
import type { Database, WebhookEventsTable } from '../store/schema.js';
import type { AuditLog } from './audit.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** The baseline of a key's rate: its mean requests per minute over at most this many minutes before the current one. */
const BASELINE_MINUTES = 60;
/** A key seen for fewer minutes than this has no baseline yet (a new key's first burst is not a jump). */
const MIN_BASELINE_MINUTES = 10;
/** Addresses remembered per key; a key used from more is treated as used from anywhere (no new-address alerts). */
export const MAX_ADDRESSES_PER_KEY = 1_000;
/** New-address alerts per key per hour; further new addresses are recorded silently. */
export const NEW_ADDRESS_ALERTS_PER_HOUR = 10;
/** The window in which invalid keys from one address are counted. */
export const INVALID_KEY_WINDOW_MS = 10 * MINUTE;
/** Addresses whose invalid keys are being counted at once; the oldest is forgotten beyond this. */
const MAX_COUNTED_ADDRESSES = 10_000;
/** Uses of a key that arrive while its history is being read are kept (up to this many) and judged after. */
const MAX_PENDING_PER_KEY = 10_000;

export type AlertKind = 'key.new_address' | 'key.rate_jump' | 'key.invalid_keys';

/** The application id of alerts that concern the whole server (an invalid key names no application). */
export const SERVER_ALERTS = '*';

export interface KeyAlertSettings {
  /** A minute's requests above this many times the key's baseline is a jump ... */
  rateFactor: number;
  /** ... and above at least this many requests in the minute. */
  rateMin: number;
  /** Invalid API keys from one address within 10 minutes that raise an alert. */
  invalidKeys: number;
  retentionMs: number;
}

export interface KeyRef {
  appId: string;
  keyId: string;
  fingerprint: string | null;
  last4: string;
}

interface KeyState {
  appId: string;
  keyId: string;
  loaded: boolean;
  pending: Array<[address: string, at: number]>;
  addresses: Set<string>;
  full: boolean;
  firstSeen: number | undefined;
  /** Requests per minute start. */
  minutes: Map<number, number>;
  /** The current minute and its threshold (computed once per minute). */
  minute: number;
  threshold: number;
  baseline: number;
  newAddressAlerts: number[];
  rateAlertAt: number;
}

interface InvalidCount {
  start: number;
  count: number;
  alertedAt: number;
  /** Revoked or expired keys among the invalid ones, per application (fingerprints). */
  known: Map<string, Set<string>>;
}

/**
 * Key anomaly alerts (docs/security.md, Alerts): an API key used from an address never seen for it, a key whose
 * requests per minute jump far above its own baseline, an address sending many invalid keys. Each alert is stored
 * (open until acknowledged: the dashboard's banner), written to the audit log and sent as a `key.alert` webhook
 * event. The guard reports every use of a key; judging one costs a map lookup and a set lookup. A key's history
 * (its addresses, its last hour of usage) is read once per process, the first time it is used; writes are
 * collected and made together, on SQLite through the writer thread.
 */
export class KeyAlerts {
  private keys = new Map<string, KeyState>();
  private invalid = new Map<string, InvalidCount>();
  private addressRows: Array<{ app_id: string; key_id: string; address: string; first_seen_at: number }> = [];
  private alertRows: KeyAlertRow[] = [];
  private eventRows: WebhookEventsTable[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private loads = new Set<Promise<void>>();
  /** Pruning once an hour (in a cluster, by one node per hour). */
  readonly pruning = new Periodic('prune:key-alerts', HOUR);

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly settings: KeyAlertSettings,
    private readonly o: {
      /** Store.runBatch: the rows of one write as one transaction. */
      write(statements: PlannedStatement[]): Promise<void>;
      audit?: AuditLog;
      /** Whether an endpoint of the application subscribes to `key.alert` (the webhook outbox). */
      wantsWebhook?(appId: string): boolean;
      /** After a write that added webhook events (the dispatcher looks at once). */
      onEvents?(): void;
      onError(err: unknown): void;
    },
  ) {}

  /** A live API key was presented from `address` (before its allowlist and rate limit are applied). */
  used(ref: KeyRef, address: string): void {
    const now = this.clock.now();
    let s = this.keys.get(ref.keyId);
    if (!s) {
      s = { appId: ref.appId, keyId: ref.keyId, loaded: false, pending: [], addresses: new Set(), full: false, firstSeen: undefined, minutes: new Map(), minute: -1, threshold: Infinity, baseline: 0, newAddressAlerts: [], rateAlertAt: -Infinity };
      this.keys.set(ref.keyId, s);
      this.load(s, ref, now);
    }
    if (!s.loaded) {
      if (s.pending.length < MAX_PENDING_PER_KEY) s.pending.push([address, now]);
      return;
    }
    this.judge(s, ref, address, now);
  }

  /**
   * An API key that opens nothing was presented from `address`; `known` when it is a revoked or expired key of an
   * application (then that application is told too).
   */
  invalidKey(address: string, known?: KeyRef): void {
    const now = this.clock.now();
    const where = addressGroup(address);
    let c = this.invalid.get(where);
    if (c && now - c.start >= INVALID_KEY_WINDOW_MS) {
      c.start = now;
      c.count = 0;
      c.known.clear();
    }
    if (!c) {
      if (this.invalid.size >= MAX_COUNTED_ADDRESSES) this.invalid.delete(this.invalid.keys().next().value!);
      c = { start: now, count: 0, alertedAt: -Infinity, known: new Map() };
      this.invalid.set(where, c);
    }
    c.count++;
    if (known && c.known.size < 20) {
      const set = c.known.get(known.appId) ?? new Set<string>();
      if (set.size < 20) set.add(known.fingerprint ?? known.keyId);
      c.known.set(known.appId, set);
    }
    if (c.count < this.settings.invalidKeys || now - c.alertedAt < HOUR) return;
    c.alertedAt = now;
    const detail = { attempts: c.count, windowMinutes: INVALID_KEY_WINDOW_MS / MINUTE };
    this.raise(SERVER_ALERTS, 'key.invalid_keys', undefined, where, detail, now);
    // An application whose revoked or expired keys are among them hears of it in its own log.
    for (const [appId, fingerprints] of c.known) this.raise(appId, 'key.invalid_keys', undefined, where, { ...detail, revokedKeys: [...fingerprints] }, now);
  }

  private load(s: KeyState, ref: KeyRef, now: number): void {
    const since = now - (now % MINUTE) - BASELINE_MINUTES * MINUTE;
    const p = new KeyAlertsRepo(this.db)
      .history(ref.appId, ref.keyId, since, MAX_ADDRESSES_PER_KEY)
      .then(
        (h) => {
          for (const a of h.addresses) s.addresses.add(a);
          s.full = s.addresses.size >= MAX_ADDRESSES_PER_KEY;
          s.firstSeen = h.firstSeen;
          for (const m of h.minutes) s.minutes.set(m.minute, (s.minutes.get(m.minute) ?? 0) + m.requests);
        },
        (err) => this.o.onError(err),
      )
      .finally(() => {
        s.loaded = true;
        const pending = s.pending;
        s.pending = [];
        for (const [address, at] of pending) this.judge(s, ref, address, at);
        this.loads.delete(p);
      });
    this.loads.add(p);
  }

  private judge(s: KeyState, ref: KeyRef, address: string, now: number): void {
    s.firstSeen ??= now;
    // The rate: this minute's requests against the threshold the baseline gave at its start.
    const minute = now - (now % MINUTE);
    if (minute !== s.minute) this.newMinute(s, minute);
    const n = (s.minutes.get(minute) ?? 0) + 1;
    s.minutes.set(minute, n);
    if (n > s.threshold && now - s.rateAlertAt >= HOUR) {
      s.rateAlertAt = now;
      this.raise(ref.appId, 'key.rate_jump', ref, address, { requestsThisMinute: n, baselinePerMinute: round(s.baseline), threshold: Math.ceil(s.threshold) }, now);
    }
    // The address.
    if (s.full || s.addresses.has(address)) return;
    const known = s.addresses.size;
    s.addresses.add(address);
    s.full = s.addresses.size >= MAX_ADDRESSES_PER_KEY;
    this.addressRows.push({ app_id: ref.appId, key_id: ref.keyId, address, first_seen_at: now });
    this.schedule();
    // The first address a key is used from is where it lives, not an anomaly.
    if (known === 0) return;
    s.newAddressAlerts = s.newAddressAlerts.filter((t) => now - t < HOUR);
    if (s.newAddressAlerts.length >= NEW_ADDRESS_ALERTS_PER_HOUR) return;
    s.newAddressAlerts.push(now);
    this.raise(ref.appId, 'key.new_address', ref, address, { knownAddresses: known }, now);
  }

  private newMinute(s: KeyState, minute: number): void {
    s.minute = minute;
    for (const m of s.minutes.keys()) if (m < minute - BASELINE_MINUTES * MINUTE) s.minutes.delete(m);
    const from = Math.max(minute - BASELINE_MINUTES * MINUTE, s.firstSeen! - (s.firstSeen! % MINUTE));
    const span = (minute - from) / MINUTE;
    if (span < MIN_BASELINE_MINUTES) {
      s.threshold = Infinity;
      s.baseline = 0;
      return;
    }
    let sum = 0;
    for (const [m, n] of s.minutes) if (m >= from && m < minute) sum += n;
    s.baseline = sum / span;
    s.threshold = Math.max(this.settings.rateMin, this.settings.rateFactor * s.baseline);
  }

  private raise(appId: string, kind: AlertKind, key: KeyRef | undefined, ip: string, detail: Record<string, unknown>, now: number): void {
    const row: KeyAlertRow = {
      app_id: appId,
      id: newObjectId(now),
      at: now,
      kind,
      key_id: key?.keyId ?? null,
      key_fingerprint: key?.fingerprint ?? null,
      key_last4: key?.last4 ?? null,
      ip: ip.slice(0, 64),
      detail: JSON.stringify(detail),
      acknowledged_at: null,
      acknowledged_by: null,
    };
    this.alertRows.push(row);
    this.o.audit?.record({
      appId,
      actor: key ? { type: 'apiKey', id: key.keyId, fingerprint: key.fingerprint, last4: key.last4 } : { type: 'system', id: 'alerts' },
      ip,
      action: `alert.${kind}`,
      target: `alert=${row.id}`,
      outcome: kind === 'key.invalid_keys' ? 'denied' : 'ok',
    });
    if (appId !== SERVER_ALERTS && this.o.wantsWebhook?.(appId)) {
      this.eventRows.push({ id: `evt_${newObjectId(now)}`, app_id: appId, type: 'key.alert', room_id: null, data: JSON.stringify({ alert: render(row) }), state: 'new', created_at: now });
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, 50);
    this.timer.unref();
  }

  /** Writes what is waiting: the key histories being read first, then new addresses, alerts and their webhook events. */
  flush(): Promise<void> {
    this.writing = this.writing.then(async () => {
      await Promise.all([...this.loads]);
      const addresses = this.addressRows;
      const alerts = this.alertRows;
      const events = this.eventRows;
      this.addressRows = [];
      this.alertRows = [];
      this.eventRows = [];
      const now = this.clock.now();
      const prune = await this.pruning.due(now);
      if (!addresses.length && !alerts.length && !prune) return;
      try {
        await this.o.write(new KeyAlertsRepo(this.db).plan(addresses, alerts, events, prune ? now - this.settings.retentionMs : undefined));
        if (events.length) this.o.onEvents?.();
      } catch (err) {
        if (prune) this.pruning.again();
        this.o.onError(err);
      }
    });
    return this.writing;
  }

  /** `GET /admin/alerts`: the application's alerts, newest first (`open`: not yet acknowledged). */
  async list(appId: string, q: { open?: boolean; limit?: number; before?: string }, withServer = false): Promise<{ data: Record<string, unknown>[]; totalCount: number }> {
    if (q.before !== undefined && !/^[0-9a-f]{24}$/.test(q.before)) throw invalidRequest('Invalid query parameter before: an alert _id');
    await this.flush();
    const { rows, total } = await new KeyAlertsRepo(this.db).list(withServer ? [appId, SERVER_ALERTS] : [appId], { open: q.open, limit: q.limit ?? 50, before: q.before });
    return { data: rows.map(render), totalCount: total };
  }

  /** `POST /admin/alerts/:id/acknowledge`: the banner goes away; the alert stays in the list (and the audit log). */
  async acknowledge(appId: string, id: string, by: string): Promise<Record<string, unknown>> {
    if (!/^[0-9a-f]{24}$/.test(id)) throw new AppError('ALERT_NOT_FOUND', 'Alert not found: an alert _id is 24 hex characters');
    await this.flush();
    const repo = new KeyAlertsRepo(this.db);
    if (!(await repo.get(appId, id))) throw new AppError('ALERT_NOT_FOUND', `Alert ${id} not found`);
    await repo.acknowledge(appId, id, by.slice(0, 64), this.clock.now());
    return render((await repo.get(appId, id))!);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

/** Invalid keys are counted per address, and per /64 for IPv6 (one host usually holds a whole /64). */
export function addressGroup(address: string): string {
  try {
    const a = ipaddr.process(address);
    if (a.kind() === 'ipv6') return `${ipaddr.IPv6.networkAddressFromCIDR(`${a.toString()}/64`).toString()}/64`;
    return a.toString();
  } catch {
    return address.slice(0, 64);
  }
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

export function render(r: KeyAlertRow): Record<string, unknown> {
  return {
    _id: r.id,
    at: iso(r.at),
    atMS: r.at,
    kind: r.kind,
    server: r.app_id === SERVER_ALERTS,
    key: r.key_id === null ? null : { id: r.key_id, fingerprint: r.key_fingerprint, last4: r.key_last4 },
    ip: r.ip,
    detail: JSON.parse(r.detail) as unknown,
    acknowledged: r.acknowledged_at !== null,
    acknowledgedAt: r.acknowledged_at === null ? null : iso(r.acknowledged_at),
    acknowledgedBy: r.acknowledged_by,
  };
}
