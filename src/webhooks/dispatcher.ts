import { Periodic } from '../lib/periodic.js';
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { valueTooDeep } from '../lib/json-depth.js';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../lib/clock.js';
import type { Dialect } from '../store/database.js';
import type { Database } from '../store/schema.js';
import type { PlannedStatement } from '../store/append-repo.js';
import { RoomsRepo } from '../store/rooms-repo.js';
import { type AppSecretRow, type DeliveryRow, type EndpointRow, type FinishPatch, newDelivery, type OutboxRow, WebhooksRepo } from '../store/webhooks-repo.js';
import type { Facts, Outbox } from './outbox.js';
import { ROOM_WEBHOOK_EVENTS } from './outbox.js';
import type { PayloadRenderer } from './payloads.js';
import { liveSecrets, newWebhookSecret, signatureHeader } from './signing.js';
import { checkWebhookUrl, isWebhookUrl, pinnedLookup, type VettedUrl } from './ssrf.js';
import type { PushWork } from '../push/push-sender.js';

type Json = Record<string, unknown>;

/** What a room webhook's receiver may answer (spec §4.5): a message to post, and the room's next bot state. */
export interface BotReply {
  senderID?: unknown;
  toBotState?: unknown;
  data?: unknown;
}

/** What the dispatcher asks of the chat services (a room webhook's reply). */
export interface BotActions {
  setBotState(appId: string, roomId: string, state: string): Promise<void>;
  post(appId: string, roomId: string, senderId: string | null, data: Json): Promise<void>;
}

/** Outcomes counted by the metrics (docs/monitoring.md). */
export type AttemptOutcome = 'delivered' | 'retry' | 'failed' | 'refused';

export interface DispatcherOptions {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  bus: EventBus;
  logger: Logger;
  config: Pick<Config, 'webhookRetrySchedule' | 'webhookTimeoutMs' | 'webhookConcurrency' | 'webhookAllowPrivateNetworks' | 'maxJsonDepth'>;
  payloads: PayloadRenderer;
  /** Says whether a committed change may have written outbox rows (wake-ups after commits). */
  outbox: Pick<Outbox, 'mayConcern'>;
  bot: BotActions;
  /** Told of every attempt's outcome (metrics). */
  onAttempt?: (outcome: AttemptOutcome) => void;
  /**
   * Push notifications (src/push/push-sender.ts): their deliveries are rows of this queue (kind 'push'), made from
   * the same outbox events in the same rounds, claimed, retried and resumed like webhook deliveries.
   */
  push?: PushWork;
  /** How often the queue is looked at when nothing woke the dispatcher (retries due, other processes' events). */
  pollMs?: number;
  /**
   * SQLite: runs a round's writes away from the event loop (Store.runBatch: the writer thread). A write on the
   * event loop's connection waits for the thread's commits (busy_timeout) and blocks the loop meanwhile.
   */
  runBatch?: (statements: PlannedStatement[]) => Promise<void>;
}

/** The most of a receiver's answer that is read (a room webhook's reply must fit). */
export const MAX_RESPONSE_BYTES = 64 * 1024;
/** Requests in flight from this node, all targets together. */
const MAX_IN_FLIGHT = 256;
/** Events one round turns into deliveries (a full round is followed by another at once). */
const EVENTS_PER_ROUND = 100;
/** How long past the timeout an unrenewed claim is kept (PostgreSQL) before another process may take it. */
const CLAIM_MARGIN_MS = 5_000;
/** Least time between two rounds (real time). */
const MIN_ROUND_MS = 20;
/** Claimed deliveries a target may hold, as a multiple of its concurrency, and this process in all. */
const QUEUE_FACTOR = 16;
const MAX_QUEUED = 4_096;
/** Least time between two reads of the due deliveries while deliveries wait in memory. */
const DUE_EVERY_MS = 100;
/** How long endpoints and the application's secret read for signing may be reused. */
const CACHE_MS = 1_000;

/** How long finished deliveries stay in the log (GET /admin/webhooks/deliveries), and how often it is pruned. */
export const DELIVERY_LOG_DAYS = 30;
const PRUNE_EVERY_MS = 3_600_000;
/** How often which applications use push is read again (credentials set by the CLI in another process). */
const PUSH_REFRESH_MS = 5_000;
const USER_AGENT = 'imkit-server-webhooks/1';

/**
 * Turns outbox rows into deliveries and sends them (docs/webhooks.md, Delivery).
 *
 * 1. **Fan-out.** Each new event becomes one delivery per target: every endpoint of the application subscribed to
 *    its type (payload in this server's format) and, for the IMKIT types, the room's own `webhook` (IMKIT's
 *    payload). Payloads are rendered once, here, and kept: every retry sends the same bytes. A delivery's id is
 *    `<event id>.<endpoint id | "room">`, so fanning an event out twice (a crash in between) adds nothing.
 * 2. **Delivery.** Due deliveries are claimed (status `sending`), posted, and their outcome recorded: a 2xx ends
 *    one; anything else, a timeout or a refused connection schedules the next attempt by the retry schedule;
 *    after the last, it is `failed`. A target whose address is not allowed (DNS rebinding) is `refused`, never
 *    sent. A claim left by a process that died goes back to the queue (at start on SQLite, where only one
 *    server runs; on PostgreSQL once unrenewed for the timeout and 5 s), so a delivery pending at a crash is sent
 *    after the restart: at-least-once, with the event id in `webhook-id` for receivers to drop duplicates.
 * 3. **Order.** At most `webhookConcurrency` requests per target at once, and per target and room one at a time,
 *    in event order, so a healthy receiver sees a room's events in order. A delivery that fails steps aside: the
 *    room's later events go on while it waits for its retry (docs/webhooks.md says why).
 */
export class WebhookDispatcher {
  private readonly id = `d-${randomBytes(6).toString('hex')}`;
  private readonly repo: WebhooksRepo;
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private offBus: (() => void) | undefined;
  /** Requests in flight per target, and the rooms each target has one in flight for. */
  private readonly perTarget = new Map<string, number>();
  private readonly busyRooms = new Set<string>();
  private inFlight = 0;
  /**
   * Claimed deliveries waiting for a free request slot of their target, in event order: a slot that frees up takes
   * the next one at once, without waiting for a round (a target gets `webhookConcurrency` requests in flight
   * continuously, however short its answers).
   */
  private readonly queued = new Map<string, DeliveryRow[]>();
  private queuedCount = 0;
  private readonly attempts = new Set<Promise<void>>();
  private agents = createAgents();
  /** Outcomes of finished attempts, written by the next round. */
  private finished: Array<{ id: string; patch: FinishPatch }> = [];
  private pushRefreshedAt = performance.now();
  private lastRound = -Infinity;
  private dueAt = -Infinity;
  /** Pruning the delivery log (in a cluster, by one node per period). */
  readonly pruning = new Periodic('prune:webhook-deliveries', PRUNE_EVERY_MS);
  private releasedAt = 0;
  private graceMs = 2_000;
  private readonly endpointCache = new Map<string, { rows: EndpointRow[]; at: number }>();
  private readonly appSecrets = new Map<string, { row: AppSecretRow; at: number }>();
  /** What this dispatcher did since it was made, for tests and the bench. */
  readonly stats = { fannedOut: 0, delivered: 0, retried: 0, failed: 0, refused: 0 };

  constructor(private readonly o: DispatcherOptions) {
    this.repo = new WebhooksRepo(o.db);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.agents = createAgents();
    // Every committed change announces itself on the bus after its transaction: the outbox rows it wrote are
    // visible by then. Changes that wrote none do not wake the dispatcher.
    this.offBus = this.o.bus.on((e) => {
      if (this.o.outbox.mayConcern(e)) this.wake();
    });
    this.loop = this.run();
  }

  /** Stops taking work, waits up to `graceMs` for requests in flight, and gives back what is still claimed. */
  async stop(graceMs = 2_000): Promise<void> {
    this.graceMs = graceMs;
    this.running = false;
    this.offBus?.();
    this.wake();
    await this.loop;
    await this.repo.release({ worker: this.id }).catch(() => undefined);
    this.o.push?.close();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  private async run(): Promise<void> {
    try {
      // On SQLite one server owns the file: whatever is still `sending` was left by a process that died.
      if (this.o.dialect === 'sqlite') await this.repo.release('all');
    } catch (err) {
      this.o.logger.error({ err }, 'webhooks: releasing claims failed');
    }
    while (this.running) {
      // Rounds are at least MIN_ROUND_MS apart (real time): under load a round takes the events and outcomes of
      // many changes, and writes them in one transaction, instead of one transaction per change.
      const pause = this.lastRound + MIN_ROUND_MS - performance.now();
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      this.lastRound = performance.now();
      this.woken = false;
      let next = this.o.clock.now() + (this.o.pollMs ?? 1_000);
      try {
        const now = this.o.clock.now();
        // Claims are renewed every round while held (below), and no attempt lasts longer than the timeout: a claim
        // older than that and a margin belongs to a process that died. Its finish, should it come after all, is
        // ignored (claimed_by).
        if (this.o.dialect === 'postgres' && now - this.releasedAt >= CLAIM_MARGIN_MS) {
          this.releasedAt = now;
          await this.repo.release({ staleBefore: now - this.o.config.webhookTimeoutMs - CLAIM_MARGIN_MS, exceptWorker: this.id });
        }
        if ((await this.round()) === EVENTS_PER_ROUND) this.woken = true;
        if (this.o.push && performance.now() - this.pushRefreshedAt >= PUSH_REFRESH_MS) {
          this.pushRefreshedAt = performance.now();
          await this.o.push.refresh();
        }
        if (await this.pruning.due(now)) await this.repo.pruneDeliveries(now - DELIVERY_LOG_DAYS * 86_400_000);
        const due = await this.repo.nextDue();
        if (due !== undefined) next = Math.min(next, due);
      } catch (err) {
        this.o.logger.error({ err }, 'webhooks: dispatcher round failed');
      }
      if (!this.running || this.woken) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(10, next - this.o.clock.now()));
        this.wakeUp = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
    // Outcomes of the last attempts are written before the claims that remain are given back.
    await Promise.race([Promise.allSettled([...this.attempts]), new Promise((r) => setTimeout(r, this.graceMs).unref())]);
    await this.round(false).catch((err) => this.o.logger.error({ err }, 'webhooks: writing the last outcomes failed'));
  }

  /**
   * One round: new events become deliveries (payloads rendered), finished attempts are recorded, due deliveries
   * (and the new ones) are claimed, all in one transaction; then the claimed ones are sent. Answers how many
   * events it took. With `send` false it only records outcomes (at stop).
   */
  private async round(send = true): Promise<number> {
    const now = this.o.clock.now();
    // On PostgreSQL the events are claimed, so that each is rendered by one node; a claim older than the timeout and
    // a margin belongs to a node that died (its deliveries, had it written them, have the same ids: its rows won).
    const events = !send
      ? []
      : this.o.dialect === 'postgres'
        ? await this.repo.claimEvents(EVENTS_PER_ROUND, this.id, now, now - this.o.config.webhookTimeoutMs - CLAIM_MARGIN_MS)
        : await this.repo.newEvents(EVENTS_PER_ROUND);
    const fresh: DeliveryRow[] = [];
    if (events.length) {
      const parsed = events.map((e) => ({ e, facts: JSON.parse(e.data) as Facts }));
      await this.o.payloads.prepare(parsed.map((p) => ({ app_id: p.e.app_id, facts: p.facts })));
      const endpoints = new Map<string, EndpointRow[]>();
      for (const { e, facts } of parsed) {
        let list = endpoints.get(e.app_id);
        if (!list) endpoints.set(e.app_id, (list = await this.endpointsOf(e.app_id, true)));
        try {
          // push.* events are for push only (no webhook endpoint subscribes to them).
          if (!e.type.startsWith('push.')) fresh.push(...(await this.deliveriesOf(e, facts, list, now)));
        } catch (err) {
          // An event that cannot be rendered (a bug) must not stop the others: it is logged and dropped.
          this.o.logger.error({ err, event: e.id, type: e.type }, 'webhooks: rendering an event failed');
        }
        try {
          if (this.o.push) fresh.push(...(await this.o.push.fanOut(e, facts, now)));
        } catch (err) {
          this.o.logger.error({ err, event: e.id, type: e.type }, 'push: fanning an event out failed');
        }
      }
    }
    const finished = this.finished.splice(0);
    // What to send now: due deliveries of the store, then the new ones, within the limits per target and room.
    const picked: DeliveryRow[] = [];
    if (send && this.queuedCount < MAX_QUEUED) {
      // A target holds at most `perTarget` claimed deliveries (in flight and waiting); targets that have them are
      // left out of the query, so a slow receiver's backlog does not crowd out the others.
      const perTarget = this.o.config.webhookConcurrency * QUEUE_FACTOR;
      const held = (target: string) => (this.perTarget.get(target) ?? 0) + (this.queued.get(target)?.length ?? 0);
      const saturated = [...new Set([...this.perTarget.keys(), ...this.queued.keys()])].filter((k) => held(k) >= perTarget);
      // The query walks the due rows of the targets it leaves out before it finds others: under load (a backlog,
      // deliveries waiting in memory) it runs at most every DUE_EVERY_MS, and new deliveries reach the queues from
      // memory in between.
      let due: DeliveryRow[] = [];
      if (this.queuedCount === 0 || performance.now() - this.dueAt >= DUE_EVERY_MS) {
        this.dueAt = performance.now();
        due = await this.repo.due(now, 500, saturated);
      }
      const reserved = new Map<string, number>();
      for (const r of [...due, ...fresh.filter((f) => f.status === 'pending')]) {
        if (this.queuedCount + picked.length >= MAX_QUEUED) break;
        const target = targetKey(r);
        if (held(target) + (reserved.get(target) ?? 0) >= perTarget) continue;
        reserved.set(target, (reserved.get(target) ?? 0) + 1);
        picked.push(r);
      }
    }
    // On PostgreSQL the claims this process holds are renewed every round (at least every poll), so other nodes
    // take them over only from a process that stopped renewing them (it died).
    const renew = this.o.dialect === 'postgres' && this.queuedCount + this.inFlight > 0;
    if (events.length === 0 && finished.length === 0 && picked.length === 0 && !renew) return 0;
    let claimed: Set<string>;
    try {
      if (this.o.dialect === 'sqlite' && this.o.runBatch) {
        await this.o.runBatch(this.repo.planRound({ finished, fresh, eventIds: events.map((e) => e.id), claimIds: picked.map((r) => r.id), worker: this.id, now }));
        claimed = new Set(picked.map((r) => r.id));
      } else claimed = await this.o.db.transaction().execute(async (trx) => {
        // Rendering read the store outside the transaction (on SQLite a transaction holds the one connection).
        const repo = new WebhooksRepo(trx);
        if (this.o.dialect === 'postgres') await repo.finishMany(this.id, finished);
        else for (const f of finished) await repo.finish(f.id, this.id, f.patch);
        if (renew) await repo.renewClaims(this.id, now);
        await repo.insertDeliveries(fresh);
        await repo.removeEvents(events.map((e) => e.id));
        // The new ones too: another node may have fanned the same event out first (its rows won).
        return new Set(await repo.claim(picked.map((r) => r.id), this.id, now, this.o.dialect === 'postgres'));
      });
    } catch (err) {
      // Nothing of the round was written: the outcomes wait for the next one, the events stay in the outbox.
      this.finished.unshift(...finished);
      throw err;
    }
    this.stats.fannedOut += events.length;
    const targets = new Set<string>();
    for (const r of picked) {
      if (!claimed.has(r.id)) continue;
      const target = targetKey(r);
      const q = this.queued.get(target);
      if (q) q.push(r);
      else this.queued.set(target, [r]);
      this.queuedCount++;
      targets.add(target);
    }
    for (const target of targets) this.pump(target);
    return events.length;
  }

  /** The application's endpoints; `fresh` reads them (fan-out), else a copy up to a second old is fine (secrets). */
  private async endpointsOf(appId: string, fresh = false): Promise<EndpointRow[]> {
    const cached = this.endpointCache.get(appId);
    if (!fresh && cached && performance.now() - cached.at < CACHE_MS) return cached.rows;
    const rows = await this.repo.endpoints(appId);
    this.endpointCache.set(appId, { rows, at: performance.now() });
    return rows;
  }

  /** Drops what is cached of endpoints and secrets (one was created, deleted or rotated in this process). */
  forget(): void {
    this.endpointCache.clear();
    this.appSecrets.clear();
  }

  private async deliveriesOf(e: OutboxRow, facts: Facts, endpoints: EndpointRow[], now: number): Promise<DeliveryRow[]> {
    const out: DeliveryRow[] = [];
    const delivery = (part: Pick<DeliveryRow, 'kind' | 'endpoint_id' | 'target' | 'payload'> & Partial<DeliveryRow>): DeliveryRow =>
      newDelivery(e, now, { id: `${e.id}.${part.kind === 'room' ? 'room' : part.endpoint_id}`, ...part });
    const subscribed = endpoints.filter((ep) => {
      const types = JSON.parse(ep.events) as string[];
      return types.includes(e.type) || types.includes('*');
    });
    if (subscribed.length) {
      const body = JSON.stringify({ id: e.id, type: e.type, createdAt: e.created_at, appID: e.app_id, data: await this.o.payloads.endpointData(e, facts) });
      for (const ep of subscribed) out.push(delivery({ kind: 'endpoint', endpoint_id: ep.id, target: ep.url, payload: body }));
    }
    const imkitEvent = ROOM_WEBHOOK_EVENTS.get(e.type);
    if (imkitEvent && e.room_id !== null && !facts.fromBot) {
      const room = await new RoomsRepo(this.o.db).get(e.app_id, e.room_id);
      if (room?.webhook) {
        const payload = JSON.stringify({
          appID: e.app_id,
          clientID: facts.actorId ?? null,
          roomID: e.room_id,
          event: imkitEvent(facts),
          botState: room.bot_state,
          data: await this.o.payloads.roomData(e, facts),
        });
        if (isWebhookUrl(room.webhook)) out.push(delivery({ kind: 'room', endpoint_id: null, target: room.webhook, payload }));
        else {
          // A key names an application-level endpoint: its URL and its secret.
          const ep = endpoints.find((x) => x.key === room.webhook);
          if (ep) out.push(delivery({ kind: 'room', endpoint_id: ep.id, target: ep.url, payload }));
          else {
            out.push(
              delivery({ kind: 'room', endpoint_id: null, target: `key:${room.webhook}`, payload, status: 'refused', next_attempt_at: null, last_error: `No webhook endpoint has the key "${room.webhook}"` }),
            );
          }
        }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- delivery

  /**
   * Starts the target's waiting deliveries while it has free slots (and this process has), taking per room only
   * the first one whose room has nothing in flight: a room's events go one at a time, in order.
   */
  private pump(target: string): void {
    const q = this.queued.get(target);
    if (!q) return;
    const cap = this.o.config.webhookConcurrency;
    // Rooms passed over in this walk: their later deliveries wait too.
    const skipped = new Set<string>();
    for (let i = 0; i < q.length && (this.perTarget.get(target) ?? 0) < cap && this.inFlight < MAX_IN_FLIGHT; ) {
      const r = q[i]!;
      if (r.room_id !== null && (skipped.has(r.room_id) || this.busyRooms.has(`${target}\u0000${r.room_id}`))) {
        skipped.add(r.room_id);
        i++;
        continue;
      }
      q.splice(i, 1);
      this.queuedCount--;
      this.send(r, target);
    }
    if (q.length === 0) this.queued.delete(target);
  }

  /** Sends one claimed delivery; its outcome is written by the next round. */
  private send(r: DeliveryRow, target: string): void {
    const roomKey = r.room_id === null ? undefined : `${target}\u0000${r.room_id}`;
    this.perTarget.set(target, (this.perTarget.get(target) ?? 0) + 1);
    if (roomKey !== undefined) this.busyRooms.add(roomKey);
    this.inFlight++;
    const p = this.attempt(r)
      .catch((err) => this.o.logger.error({ err, delivery: r.id }, 'webhooks: an attempt failed unexpectedly'))
      .finally(() => {
        this.inFlight--;
        const left = (this.perTarget.get(target) ?? 1) - 1;
        if (left > 0) this.perTarget.set(target, left);
        else this.perTarget.delete(target);
        if (roomKey !== undefined) this.busyRooms.delete(roomKey);
        this.attempts.delete(p);
        if (this.running) this.pump(target);
        this.wake();
      });
    this.attempts.add(p);
  }

  private async attempt(r: DeliveryRow): Promise<void> {
    const attempts = r.attempts + 1;
    const finish = async (status: DeliveryRow['status'], fields: { lastStatus?: number | null; error?: string | null; next?: number | null }) => {
      this.finished.push({
        id: r.id,
        patch: {
          status,
          attempts,
          next_attempt_at: fields.next ?? null,
          last_status: fields.lastStatus ?? null,
          last_error: fields.error === undefined || fields.error === null ? null : fields.error.slice(0, 500),
          updated_at: this.o.clock.now(),
        },
      });
    };
    if (r.kind === 'push') return this.attemptPush(r, attempts, finish);
    const secrets = await this.secretsOf(r);
    if (secrets === undefined) {
      await finish('failed', { error: 'the endpoint was deleted' });
      this.count('failed');
      return;
    }
    let vetted: VettedUrl;
    try {
      vetted = await checkWebhookUrl(r.target, { allowPrivate: this.o.config.webhookAllowPrivateNetworks, field: 'url' });
    } catch (err) {
      // Checked when it was configured; refused now means the name points elsewhere (DNS rebinding) or no longer
      // resolves. A name that does not resolve right now is retried like an unreachable receiver.
      const message = err instanceof AppError ? err.message : String(err);
      if (/could not be resolved right now/.test(message)) return this.retryOrFail(r, attempts, finish, null, message);
      await finish('refused', { error: `refused: ${message}` });
      this.count('refused');
      return;
    }
    const ts = Math.floor(this.o.clock.now() / 1000);
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': r.event_id,
      'webhook-timestamp': String(ts),
      'webhook-signature': signatureHeader(secrets, r.event_id, ts, r.payload),
    };
    let res: { status: number; body: Buffer };
    try {
      res = await post(vetted, r.payload, headers, this.o.config.webhookTimeoutMs, this.agents);
    } catch (err) {
      return this.retryOrFail(r, attempts, finish, null, (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? `no answer within ${this.o.config.webhookTimeoutMs} ms` : describeNetworkError(err));
    }
    if (res.status < 200 || res.status > 299) return this.retryOrFail(r, attempts, finish, res.status, `answered ${res.status}`);
    let note: string | null = null;
    if (r.kind === 'room') note = await this.botReply(r, res.body);
    await finish('delivered', { lastStatus: res.status, error: note });
    this.count('delivered');
  }

  /** One attempt of a push delivery: the provider's verdict, retried by the same schedule as webhooks. */
  private async attemptPush(r: DeliveryRow, attempts: number, finish: (status: DeliveryRow['status'], f: { lastStatus?: number | null; error?: string | null; next?: number | null }) => Promise<void>): Promise<void> {
    const result = await this.o.push!.send(r);
    if (result.outcome === 'delivered') return finish('delivered', { lastStatus: result.status });
    if (result.outcome === 'retry') return this.retryOrFail(r, attempts, finish, result.status, result.error, false);
    return finish('failed', { lastStatus: result.status, error: result.outcome === 'invalid' ? `${result.error}; the device was removed` : result.error });
  }

  private async retryOrFail(
    r: DeliveryRow,
    attempts: number,
    finish: (status: DeliveryRow['status'], f: { lastStatus?: number | null; error?: string | null; next?: number | null }) => Promise<void>,
    lastStatus: number | null,
    error: string,
    counted = true,
  ): Promise<void> {
    const delay = this.o.config.webhookRetrySchedule[attempts - 1];
    if (delay === undefined) {
      await finish('failed', { lastStatus, error });
      if (counted) this.count('failed');
    } else {
      await finish('pending', { lastStatus, error, next: this.o.clock.now() + delay });
      if (counted) this.count('retry');
    }
  }

  private count(outcome: AttemptOutcome): void {
    if (outcome === 'delivered') this.stats.delivered++;
    else if (outcome === 'retry') this.stats.retried++;
    else if (outcome === 'failed') this.stats.failed++;
    else this.stats.refused++;
    this.o.onAttempt?.(outcome);
  }

  /** The secrets that sign a delivery: its endpoint's, or for a room webhook given as a URL the application's. */
  private async secretsOf(r: DeliveryRow): Promise<string[] | undefined> {
    const now = this.o.clock.now();
    if (r.endpoint_id !== null) {
      const ep = (await this.endpointsOf(r.app_id)).find((x) => x.id === r.endpoint_id);
      return ep ? liveSecrets(ep, now) : undefined;
    }
    let cached = this.appSecrets.get(r.app_id);
    if (!cached || performance.now() - cached.at >= CACHE_MS) {
      const row = await this.repo.ensureAppSecret({ app_id: r.app_id, secret: newWebhookSecret(), previous_secret: null, previous_expires_at: null, created_at: now });
      this.appSecrets.set(r.app_id, (cached = { row, at: performance.now() }));
    }
    return liveSecrets(cached.row, now);
  }

  /**
   * A room webhook's answer (spec §4.5): `toBotState` sets the room's bot state, then `data` is posted into the
   * room as `senderID`. Answers a note for the delivery log when the reply was not usable; an empty or non-JSON
   * answer is no reply.
   */
  private async botReply(r: DeliveryRow, body: Buffer): Promise<string | null> {
    if (body.length === 0 || r.room_id === null) return null;
    let reply: BotReply;
    try {
      reply = JSON.parse(body.toString('utf8')) as BotReply;
    } catch {
      return null;
    }
    if (typeof reply !== 'object' || reply === null || Array.isArray(reply)) return null;
    // A receiver's answer is another party's input: bounded as a request body is (IMKIT_MAX_JSON_DEPTH).
    if (valueTooDeep(reply, this.o.config.maxJsonDepth)) return `bot reply refused: nested deeper than ${this.o.config.maxJsonDepth} levels`;
    try {
      if (typeof reply.toBotState === 'string' && reply.toBotState.length <= 256) await this.o.bot.setBotState(r.app_id, r.room_id, reply.toBotState);
      if (typeof reply.data === 'object' && reply.data !== null && !Array.isArray(reply.data)) {
        const sender = typeof reply.senderID === 'string' && reply.senderID.length > 0 ? reply.senderID : null;
        await this.o.bot.post(r.app_id, r.room_id, sender, reply.data as Json);
      }
      return null;
    } catch (err) {
      if (err instanceof AppError) return `bot reply refused: ${err.code}: ${err.message}`;
      this.o.logger.error({ err, delivery: r.id }, 'webhooks: applying a bot reply failed');
      return 'bot reply refused: INTERNAL_ERROR';
    }
  }
}

/** Deliveries to one target share its concurrency: an endpoint by id, a room webhook URL by itself. */
function targetKey(r: Pick<DeliveryRow, 'endpoint_id' | 'target'>): string {
  return r.endpoint_id ?? r.target;
}

/**
 * Connections are kept open between requests to a receiver (a new TCP, and for https TLS, connection per delivery
 * cost more than the request). A kept connection was opened to an address the guard vetted. No limit on sockets
 * here: the dispatcher limits requests per target itself, and a request waiting in an agent's queue would spend its
 * timeout there. Idle connections close after 4 s, before the usual 5 s of servers (Node's keepAliveTimeout), so
 * a request rarely meets a connection the receiver is closing; one that does is sent again on a new one.
 */
export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

export function createAgents(): Agents {
  const opts = { keepAlive: true, maxFreeSockets: 32, timeout: 4_000, scheduling: 'lifo' as const };
  return { http: new http.Agent(opts), https: new https.Agent(opts) };
}

/**
 * One POST to a vetted address: no redirects followed (node:http follows none), the whole exchange bounded by
 * `timeoutMs`, at most MAX_RESPONSE_BYTES of the answer read. node:http rather than fetch: fetch (undici) has no
 * per-request `lookup`, and the connection must go to the address the SSRF guard vetted.
 */
export async function post(vetted: VettedUrl, body: string | Buffer, headers: Record<string, string>, timeoutMs: number, agents: Agents): Promise<{ status: number; body: Buffer }> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    return await postOnce(vetted, body, headers, signal, agents);
  } catch (err) {
    // A kept connection the receiver closed at the moment it was reused: once more, on a new connection.
    if ((err as { reused?: boolean }).reused && (err as NodeJS.ErrnoException).code === 'ECONNRESET' && !signal.aborted) return postOnce(vetted, body, headers, signal, agents, true);
    throw err;
  }
}

function postOnce(vetted: VettedUrl, body: string | Buffer, headers: Record<string, string>, signal: AbortSignal, agents: Agents, fresh = false): Promise<{ status: number; body: Buffer }> {
  const https_ = vetted.url.protocol === 'https:';
  const mod = https_ ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      vetted.url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: pinnedLookup(vetted),
        signal,
        agent: fresh ? false : https_ ? agents.https : agents.http,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size >= MAX_RESPONSE_BYTES) return;
          chunks.push(c);
          size += c.length;
          if (size >= MAX_RESPONSE_BYTES) {
            // Enough: the rest is not read, and the connection is not reused.
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BYTES) });
            res.destroy();
          }
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('the answer was cut off')));
      },
    );
    req.on('error', (err) => reject(signal.aborted ? signal.reason : Object.assign(err, { reused: req.reusedSocket })));
    req.end(body);
  });
}

export function describeNetworkError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ECONNREFUSED') return 'connection refused';
  if (e?.code === 'ECONNRESET') return 'connection reset';
  if (e?.code) return `network error (${e.code})`;
  return `network error (${e?.message ?? String(err)})`;
}
