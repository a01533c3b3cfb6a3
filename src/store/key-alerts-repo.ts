import type { Kysely } from 'kysely';
import type { PlannedStatement } from './append-repo.js';
import type { Database, KeyAlertsTable, WebhookEventsTable } from './schema.js';

export type KeyAlertRow = KeyAlertsTable;

/** What a key's history says when the anomaly detector first meets it in this process. */
export interface KeyHistory {
  addresses: string[];
  /** Requests per minute (minute start, epoch ms) since the time asked for. */
  minutes: Array<{ minute: number; requests: number }>;
  /** When the key was first seen: its first address's time, else its first usage row kept, else undefined. */
  firstSeen: number | undefined;
}

/** Key anomaly alerts and the addresses each API key was used from (docs/security.md, Alerts). */
export class KeyAlertsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async history(appId: string, keyId: string, since: number, maxAddresses: number): Promise<KeyHistory> {
    const addresses = await this.db
      .selectFrom('api_key_addresses')
      .select(['address', 'first_seen_at'])
      .where('app_id', '=', appId)
      .where('key_id', '=', keyId)
      .orderBy('first_seen_at')
      .limit(maxAddresses)
      .execute();
    const minutes = await this.db
      .selectFrom('api_key_usage')
      .select(['minute', 'requests'])
      .where('app_id', '=', appId)
      .where('key_id', '=', keyId)
      .where('minute', '>=', since)
      .orderBy('minute')
      .execute();
    const first = await this.db
      .selectFrom('api_key_usage')
      .select((eb) => eb.fn.min('minute').as('m'))
      .where('app_id', '=', appId)
      .where('key_id', '=', keyId)
      .executeTakeFirst();
    const candidates = [addresses[0]?.first_seen_at, first?.m === null || first?.m === undefined ? undefined : Number(first.m)].filter((t): t is number => t !== undefined);
    return {
      addresses: addresses.map((a) => a.address),
      minutes: minutes.map((m) => ({ minute: Number(m.minute), requests: Number(m.requests) })),
      firstSeen: candidates.length ? Math.min(...candidates) : undefined,
    };
  }

  /** The key's name fields an alert shows (never its digest). */
  key(appId: string, keyId: string): Promise<{ fingerprint: string | null; last4: string } | undefined> {
    return this.db.selectFrom('api_keys').select(['fingerprint', 'last4']).where('app_id', '=', appId).where('id', '=', keyId).executeTakeFirst();
  }

  /**
   * The statements of one write of the detector, for Store.runBatch (on SQLite the writer thread): one statement
   * per row, so each kind has one text whatever the count.
   */
  plan(addresses: Array<{ app_id: string; key_id: string; address: string; first_seen_at: number }>, alerts: KeyAlertRow[], events: WebhookEventsTable[], pruneBefore: number | undefined): PlannedStatement[] {
    const out: PlannedStatement[] = [];
    const push = (c: { sql: string; parameters: readonly unknown[] }) => out.push({ sql: c.sql, params: [...c.parameters] });
    for (const a of addresses) push(this.db.insertInto('api_key_addresses').values(a).onConflict((oc) => oc.doNothing()).compile());
    for (const a of alerts) push(this.db.insertInto('key_alerts').values(a).compile());
    for (const e of events) push(this.db.insertInto('webhook_events').values(e).compile());
    if (pruneBefore !== undefined) push(this.db.deleteFrom('key_alerts').where('at', '<', pruneBefore).compile());
    return out;
  }

  /** Newest first; `open`: only those nobody acknowledged. `appIds`: the application's, and `*` for the server's. */
  async list(appIds: string[], q: { open?: boolean; limit: number; before?: string }): Promise<{ rows: KeyAlertRow[]; total: number }> {
    let base = this.db.selectFrom('key_alerts').where('app_id', 'in', appIds);
    if (q.open) base = base.where('acknowledged_at', 'is', null);
    const total = Number((await base.select((eb) => eb.fn.countAll().as('n')).executeTakeFirst())?.n ?? 0);
    let page = base;
    if (q.before !== undefined) page = page.where('id', '<', q.before);
    const rows = await page.selectAll().orderBy('id', 'desc').limit(q.limit).execute();
    return { rows, total };
  }

  get(appId: string, id: string): Promise<KeyAlertRow | undefined> {
    return this.db.selectFrom('key_alerts').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  /** Marks the alert acknowledged (the first acknowledgement is kept). */
  async acknowledge(appId: string, id: string, by: string, now: number): Promise<void> {
    await this.db.updateTable('key_alerts').set({ acknowledged_at: now, acknowledged_by: by }).where('app_id', '=', appId).where('id', '=', id).where('acknowledged_at', 'is', null).execute();
  }
}
