import type { Kysely } from 'kysely';
import type { Database, IdempotencyKeysTable } from './schema.js';

export type IdempotencyRow = IdempotencyKeysTable;

/** Idempotency keys of POST requests (docs/reliability.md). */
export class IdempotencyRepo {
  constructor(private readonly db: Kysely<Database>) {}

  /** Claims the key for a first request; false when a row for it exists already. */
  async claim(row: IdempotencyRow): Promise<boolean> {
    const r = await this.db.insertInto('idempotency_keys').values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  get(appId: string, subject: string, key: string): Promise<IdempotencyRow | undefined> {
    return this.db.selectFrom('idempotency_keys').selectAll().where('app_id', '=', appId).where('subject', '=', subject).where('key', '=', key).executeTakeFirst();
  }

  /**
   * Takes over a row that expired or whose request was abandoned (`stale`: its created_at as read), for a new
   * request; false when another request took it over first.
   */
  async takeOver(row: IdempotencyRow, stale: number): Promise<boolean> {
    const r = await this.db
      .updateTable('idempotency_keys')
      .set({ fingerprint: row.fingerprint, status: null, body: null, created_at: row.created_at, message_id: null })
      .where('app_id', '=', row.app_id)
      .where('subject', '=', row.subject)
      .where('key', '=', row.key)
      .where('created_at', '=', stale)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async finish(appId: string, subject: string, key: string, status: number, body: string): Promise<void> {
    await this.db.updateTable('idempotency_keys').set({ status, body }).where('app_id', '=', appId).where('subject', '=', subject).where('key', '=', key).execute();
  }

  /**
   * Forgets a claim whose request failed, so that a retry runs again; not one whose message was stored (the retry
   * is answered with that message).
   */
  async release(appId: string, subject: string, key: string): Promise<void> {
    await this.db
      .deleteFrom('idempotency_keys')
      .where('app_id', '=', appId)
      .where('subject', '=', subject)
      .where('key', '=', key)
      .where('status', 'is', null)
      .where('message_id', 'is', null)
      .execute();
  }

  /** The statement that records, in the transaction storing it, the message a claim's request stored. */
  static noteMessage(db: Kysely<Database>, claim: { appId: string; subject: string; key: string }, messageId: string): { sql: string; params: unknown[] } {
    const q = db
      .updateTable('idempotency_keys')
      .set({ message_id: messageId })
      .where('app_id', '=', claim.appId)
      .where('subject', '=', claim.subject)
      .where('key', '=', claim.key)
      .where('status', 'is', null)
      .compile();
    return { sql: q.sql, params: [...q.parameters] };
  }

  async prune(before: number): Promise<void> {
    await this.db.deleteFrom('idempotency_keys').where('created_at', '<', before).execute();
  }
}
