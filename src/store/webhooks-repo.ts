import { type Kysely, sql } from 'kysely';
import type { PlannedStatement } from './append-repo.js';
import type {
  AppWebhookSecretsTable,
  Database,
  DeliveryStatus,
  WebhookDeliveriesTable,
  WebhookEndpointsTable,
  WebhookEventsTable,
} from './schema.js';

export type EndpointRow = WebhookEndpointsTable;
export type AppSecretRow = AppWebhookSecretsTable;
export type OutboxRow = WebhookEventsTable;
export type DeliveryRow = WebhookDeliveriesTable;

/**
 * A new delivery of an outbox event (a webhook or a push): pending, never tried, due now. `part` names what it is
 * (its id, kind, target, payload, and for a push the message and device).
 */
export function newDelivery(e: Pick<OutboxRow, 'app_id' | 'id' | 'type' | 'room_id'>, now: number, part: Pick<DeliveryRow, 'id' | 'kind' | 'endpoint_id' | 'target' | 'payload'> & Partial<DeliveryRow>): DeliveryRow {
  return {
    app_id: e.app_id,
    event_id: e.id,
    event_type: e.type,
    room_id: e.room_id,
    status: 'pending',
    attempts: 0,
    next_attempt_at: now,
    last_status: null,
    last_error: null,
    claimed_by: null,
    claimed_at: null,
    created_at: now,
    updated_at: now,
    message_id: null,
    device_id: null,
    ...part,
  };
}
/** What an attempt's outcome changes in its delivery. */
export type FinishPatch = Pick<DeliveryRow, 'status' | 'attempts' | 'next_attempt_at' | 'last_status' | 'last_error' | 'updated_at'>;

export interface DeliveryFilter {
  endpointId?: string;
  roomId?: string;
  status?: DeliveryStatus;
  /** Deliveries whose id sorts before this one (the previous page's last id). */
  before?: string;
  limit: number;
}

const DELIVERY_COLUMNS = [
  'id', 'app_id', 'event_id', 'event_type', 'kind', 'endpoint_id', 'room_id', 'target', 'payload', 'status', 'attempts', 'next_attempt_at',
  'last_status', 'last_error', 'claimed_by', 'claimed_at', 'created_at', 'updated_at', 'message_id', 'device_id',
] as const satisfies ReadonlyArray<keyof DeliveryRow>;

/** The one-row statements of a dispatcher round on SQLite (planRound). */
const ROUND_SQL = {
  finish: `update webhook_deliveries set status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, last_error = ?, updated_at = ?,
    claimed_by = null, claimed_at = null where id = ? and status = 'sending' and claimed_by = ?`,
  insert: `insert into webhook_deliveries (${DELIVERY_COLUMNS.join(', ')}) values (${DELIVERY_COLUMNS.map(() => '?').join(', ')}) on conflict do nothing`,
  removeEvent: 'delete from webhook_events where id = ?',
  claim: `update webhook_deliveries set status = 'sending', claimed_by = ?, claimed_at = ? where id = ? and status = 'pending'`,
};

/** Endpoints, the application's webhook secret, the outbox and the delivery log (docs/webhooks.md). */
export class WebhooksRepo {
  constructor(private readonly db: Kysely<Database>) {}

  // ---------------------------------------------------------------- endpoints

  insertEndpoint(row: EndpointRow): Promise<unknown> {
    return this.db.insertInto('webhook_endpoints').values(row).execute();
  }

  endpoints(appId: string): Promise<EndpointRow[]> {
    return this.db.selectFrom('webhook_endpoints').selectAll().where('app_id', '=', appId).orderBy('created_at').orderBy('id').execute();
  }

  endpoint(appId: string, id: string): Promise<EndpointRow | undefined> {
    return this.db.selectFrom('webhook_endpoints').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  endpointByKey(appId: string, key: string): Promise<EndpointRow | undefined> {
    return this.db.selectFrom('webhook_endpoints').selectAll().where('app_id', '=', appId).where('key', '=', key).executeTakeFirst();
  }

  /** Every endpoint's subscriptions, to know at once whether an event is wanted (webhooks/outbox.ts). */
  subscriptions(): Promise<Array<Pick<EndpointRow, 'app_id' | 'events'>>> {
    return this.db.selectFrom('webhook_endpoints').select(['app_id', 'events']).execute();
  }

  async deleteEndpoint(appId: string, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom('webhook_endpoints').where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async setEndpointSecret(appId: string, id: string, patch: Pick<EndpointRow, 'secret' | 'previous_secret' | 'previous_expires_at' | 'updated_at'>): Promise<void> {
    await this.db.updateTable('webhook_endpoints').set(patch).where('app_id', '=', appId).where('id', '=', id).execute();
  }

  // ---------------------------------------------------------------- the application's secret (room URL webhooks)

  appSecret(appId: string): Promise<AppSecretRow | undefined> {
    return this.db.selectFrom('app_webhook_secrets').selectAll().where('app_id', '=', appId).executeTakeFirst();
  }

  /** Stores the row unless the application has one already; answers the stored row. */
  async ensureAppSecret(row: AppSecretRow): Promise<AppSecretRow> {
    const existing = await this.appSecret(row.app_id);
    if (existing) return existing;
    await this.db.insertInto('app_webhook_secrets').values(row).onConflict((oc) => oc.column('app_id').doNothing()).execute();
    return (await this.appSecret(row.app_id))!;
  }

  async setAppSecret(row: AppSecretRow): Promise<void> {
    await this.db
      .insertInto('app_webhook_secrets')
      .values(row)
      .onConflict((oc) => oc.column('app_id').doUpdateSet({ secret: row.secret, previous_secret: row.previous_secret, previous_expires_at: row.previous_expires_at }))
      .execute();
  }

  // ---------------------------------------------------------------- outbox

  async insertEvents(rows: OutboxRow[]): Promise<void> {
    if (rows.length) await this.db.insertInto('webhook_events').values(rows).execute();
  }

  /**
   * The oldest events not yet turned into deliveries. Two processes that take the same event write the same
   * delivery ids (the first insert wins), so no lock is taken.
   */
  newEvents(limit: number): Promise<OutboxRow[]> {
    return this.db.selectFrom('webhook_events').selectAll().where('state', '=', 'new').orderBy('id').limit(limit).execute();
  }

  /** Events turned into deliveries leave the outbox (the deliveries carry their id, type and payload). */
  async removeEvents(ids: string[]): Promise<void> {
    if (ids.length) await this.db.deleteFrom('webhook_events').where('id', 'in', ids).execute();
  }

  /** Removes finished deliveries (delivered, failed, refused) last changed before `before`; answers how many. */
  async pruneDeliveries(before: number): Promise<number> {
    const r = await this.db
      .deleteFrom('webhook_deliveries')
      .where('status', 'in', ['delivered', 'failed', 'refused'])
      .where('updated_at', '<', before)
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * Inserts deliveries; one that exists already (same event and target, or for a push the same message and device)
   * is left as it is.
   */
  async insertDeliveries(rows: DeliveryRow[]): Promise<void> {
    if (rows.length) await this.db.insertInto('webhook_deliveries').values(rows).onConflict((oc) => oc.doNothing()).execute();
  }

  /**
   * Pending deliveries due at `now`, the earliest due first, leaving out those of targets (an endpoint id, or a room
   * webhook's URL) that have all the requests in flight they may have: a slow receiver's backlog does not fill the
   * page and hold up the others.
   */
  due(now: number, limit: number, excludeTargets: string[] = []): Promise<DeliveryRow[]> {
    let q = this.db.selectFrom('webhook_deliveries').selectAll().where('status', '=', 'pending').where('next_attempt_at', '<=', now);
    if (excludeTargets.length) q = q.where((eb) => eb.not(eb(eb.fn.coalesce('endpoint_id', 'target'), 'in', excludeTargets)));
    return q.orderBy('next_attempt_at').orderBy('id').limit(limit).execute();
  }

  /** The earliest time a pending delivery is due (undefined: none pending). */
  async nextDue(): Promise<number | undefined> {
    const r = await this.db.selectFrom('webhook_deliveries').select((eb) => eb.fn.min('next_attempt_at').as('t')).where('status', '=', 'pending').executeTakeFirst();
    return r?.t == null ? undefined : Number(r.t);
  }

  /**
   * PostgreSQL, several nodes: takes up to `limit` outbox events for this worker to render, oldest first: those nobody
   * has, its own, and those whose claim is older than `staleBefore` (the node rendering them died). Rows another
   * node is taking at this moment are skipped (FOR UPDATE SKIP LOCKED), not waited for.
   */
  async claimEvents(limit: number, worker: string, now: number, staleBefore: number): Promise<OutboxRow[]> {
    // Picked in a CTE (run once), not as `id in (subquery)`, which PostgreSQL may run once per row.
    const { rows } = await sql<OutboxRow>`
      with picked as (
        select id from webhook_events
        where state = 'new' and (claimed_by is null or claimed_by = ${worker} or claimed_at < ${staleBefore})
        order by id limit ${limit}
        for update skip locked)
      update webhook_events e set claimed_by = ${worker}, claimed_at = ${now}
      from picked where e.id = picked.id
      returning e.*`.execute(this.db);
    return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Takes the listed pending deliveries for one worker; answers the ids it got (another node may have taken some). */
  async claim(ids: string[], worker: string, now: number, skipLocked = false): Promise<string[]> {
    if (ids.length === 0) return [];
    if (skipLocked) {
      // PostgreSQL: rows another node is claiming right now are left to it rather than waited for.
      const { rows } = await sql<{ id: string }>`
        with picked as (
          select id from webhook_deliveries where id in (${sql.join(ids)}) and status = 'pending' for update skip locked)
        update webhook_deliveries d set status = 'sending', claimed_by = ${worker}, claimed_at = ${now}
        from picked where d.id = picked.id
        returning d.id`.execute(this.db);
      return rows.map((r) => r.id);
    }
    await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'sending', claimed_by: worker, claimed_at: now })
      .where('id', 'in', ids)
      .where('status', '=', 'pending')
      .execute();
    const rows = await this.db.selectFrom('webhook_deliveries').select('id').where('id', 'in', ids).where('status', '=', 'sending').where('claimed_by', '=', worker).execute();
    return rows.map((r) => r.id);
  }

  /** Records an attempt's outcome, only while this worker still holds the claim. */
  async finish(id: string, worker: string, patch: FinishPatch): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ ...patch, claimed_by: null, claimed_at: null })
      .where('id', '=', id)
      .where('status', '=', 'sending')
      .where('claimed_by', '=', worker)
      .execute();
  }

  /**
   * A dispatcher round's writes as statements of one row each (a few fixed shapes, prepared once), for the SQLite
   * writer thread (Store.runBatch): outcomes of finished attempts, new deliveries, events leaving the outbox, and
   * claims. On SQLite one server owns the file, so every claim of a pending delivery succeeds.
   */
  planRound(r: { finished: Array<{ id: string; patch: FinishPatch }>; fresh: DeliveryRow[]; eventIds: string[]; claimIds: string[]; worker: string; now: number }): PlannedStatement[] {
    // Written as SQL text once (SQLite placeholders), not built with Kysely per row: building and compiling a
    // query costs more than running it, and a busy round has thousands of rows.
    const out: PlannedStatement[] = [];
    for (const { id, patch: p } of r.finished) out.push({ sql: ROUND_SQL.finish, params: [p.status, p.attempts, p.next_attempt_at, p.last_status, p.last_error, p.updated_at, id, r.worker] });
    for (const row of r.fresh) out.push({ sql: ROUND_SQL.insert, params: DELIVERY_COLUMNS.map((c) => row[c]) });
    for (const id of r.eventIds) out.push({ sql: ROUND_SQL.removeEvent, params: [id] });
    for (const id of r.claimIds) out.push({ sql: ROUND_SQL.claim, params: [r.worker, r.now, id] });
    return out;
  }

  /**
   * Records many outcomes in one statement (PostgreSQL: the lists travel as arrays), each only while `worker`
   * still holds the claim: one round trip whatever their number.
   */
  async finishMany(worker: string, items: Array<{ id: string; patch: FinishPatch }>): Promise<void> {
    if (items.length === 0) return;
    const col = <K extends keyof FinishPatch>(k: K) => items.map((i) => i.patch[k]);
    await sql`update webhook_deliveries d
      set status = v.status, attempts = v.attempts, next_attempt_at = v.next_at, last_status = v.last_status, last_error = v.last_error,
        updated_at = v.updated_at, claimed_by = null, claimed_at = null
      from unnest(${items.map((i) => i.id)}::text[], ${col('status')}::text[], ${col('attempts')}::integer[], ${col('next_attempt_at')}::bigint[],
        ${col('last_status')}::integer[], ${col('last_error')}::text[], ${col('updated_at')}::bigint[])
        as v(id, status, attempts, next_at, last_status, last_error, updated_at)
      where d.id = v.id and d.status = 'sending' and d.claimed_by = ${worker}`.execute(this.db);
  }

  /** Marks a worker's claims as still held (PostgreSQL, where other processes release stale ones). */
  async renewClaims(worker: string, now: number): Promise<void> {
    await this.db.updateTable('webhook_deliveries').set({ claimed_at: now }).where('status', '=', 'sending').where('claimed_by', '=', worker).execute();
  }

  /**
   * Gives claims back to the queue: those of a worker that stopped, or those of other workers not renewed since
   * `staleBefore`, or all ('all').
   */
  async release(which: { worker: string } | { staleBefore: number; exceptWorker: string } | 'all'): Promise<number> {
    let q = this.db.updateTable('webhook_deliveries').set({ status: 'pending', claimed_by: null, claimed_at: null }).where('status', '=', 'sending');
    if (which !== 'all' && 'worker' in which) q = q.where('claimed_by', '=', which.worker);
    else if (which !== 'all') q = q.where('claimed_at', '<', which.staleBefore).where('claimed_by', '!=', which.exceptWorker);
    return Number((await q.executeTakeFirst()).numUpdatedRows);
  }

  /** Pending deliveries of an endpoint that was deleted end as failed. */
  async failPendingOf(appId: string, endpointId: string, now: number): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'failed', last_error: 'the endpoint was deleted', next_attempt_at: null, updated_at: now })
      .where('app_id', '=', appId)
      .where('endpoint_id', '=', endpointId)
      .where('status', '=', 'pending')
      .execute();
  }

  /** A webhook delivery (push deliveries share the queue but are not part of the webhook log). */
  delivery(appId: string, id: string): Promise<DeliveryRow | undefined> {
    return this.db.selectFrom('webhook_deliveries').selectAll().where('app_id', '=', appId).where('id', '=', id).where('kind', '!=', 'push').executeTakeFirst();
  }

  /** Newest first; webhook deliveries only. */
  deliveries(appId: string, f: DeliveryFilter): Promise<DeliveryRow[]> {
    let q = this.db.selectFrom('webhook_deliveries').selectAll().where('app_id', '=', appId).where('kind', '!=', 'push');
    if (f.endpointId !== undefined) q = q.where('endpoint_id', '=', f.endpointId);
    if (f.roomId !== undefined) q = q.where('room_id', '=', f.roomId);
    if (f.status !== undefined) q = q.where('status', '=', f.status);
    if (f.before !== undefined) q = q.where('id', '<', f.before);
    return q.orderBy('id', 'desc').limit(f.limit).execute();
  }

  /** Makes a failed, refused or pending delivery due now; answers false when it is being sent or was delivered. */
  async retryNow(appId: string, id: string, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'pending', next_attempt_at: now, updated_at: now })
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .where('kind', '!=', 'push')
      .where('status', 'in', ['failed', 'refused', 'pending'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Deliveries per status, and events not yet turned into deliveries (the backlog of /metrics). */
  async backlog(): Promise<{ events: number; byStatus: Record<string, number> }> {
    const events = await this.db.selectFrom('webhook_events').select((eb) => eb.fn.countAll().as('n')).where('state', '=', 'new').executeTakeFirst();
    const rows = await this.db
      .selectFrom('webhook_deliveries')
      .select(['status', (eb) => eb.fn.countAll().as('n')])
      .where('status', 'in', ['pending', 'sending'])
      .groupBy('status')
      .execute();
    return { events: Number(events?.n ?? 0), byStatus: Object.fromEntries(rows.map((r) => [r.status, Number(r.n)])) };
  }

  /** The applications that have a room naming a webhook (their room events may be wanted). */
  async appsWithRoomWebhooks(): Promise<string[]> {
    const rows = await this.db.selectFrom('rooms').select('app_id').distinct().where('webhook', 'is not', null).where('webhook', '!=', '').execute();
    return rows.map((r) => r.app_id);
  }
}
