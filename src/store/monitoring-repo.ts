import { type Kysely, sql } from 'kysely';
import { objectIdFloor } from '../lib/ids.js';
import type { ApiKeyUsageTable, Database } from './schema.js';

export type UsageRow = ApiKeyUsageTable;

/** Rows per INSERT: 7 parameters each stays far below SQLite's parameter limit. */
const CHUNK = 500;

/** The queries of GET /admin/stats and the per-API-key usage table: every one scoped to one application. */
export class MonitoringRepo {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Messages stored since `since` (epoch ms). Ids begin with their creation time, so this is a range of the
   * primary key (app_id, id): index only, no table row read.
   */
  async messagesSince(appId: string, since: number): Promise<number> {
    const row = await this.db
      .selectFrom('messages')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('app_id', '=', appId)
      .where('id', '>=', objectIdFloor(since))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * All rooms of the application, and those active since `since`: created since, or whose last message was
   * (its id begins with its time). One pass over the application's rooms: an index of the last message would be
   * a page written per room with every batch of messages.
   */
  async roomCounts(appId: string, since: number): Promise<{ total: number; active: number }> {
    const row = await this.db
      .selectFrom('rooms')
      .select((eb) => [
        eb.fn.countAll<number>().as('total'),
        eb.fn.sum<number>(eb.case().when(eb.or([eb('created_at', '>=', since), eb('last_message_id', '>=', objectIdFloor(since))])).then(1).else(0).end()).as('active'),
      ])
      .where('app_id', '=', appId)
      .executeTakeFirstOrThrow();
    return { total: Number(row.total), active: Number(row.active ?? 0) };
  }

  /**
   * Users active since `since`: who logged in (GET /me, a socket login; index users_app_login), or sent a message
   * (a primary-key range of the messages, as `messagesSince`, reading their sender). Distinct, in id order.
   */
  async activeUsers(appId: string, since: number): Promise<string[]> {
    const loggedIn = this.db.selectFrom('users').select('id as user_id').where('app_id', '=', appId).where('last_login_at', '>=', since);
    const senders = this.db
      .selectFrom('messages')
      .select('sender_id as user_id')
      .where('app_id', '=', appId)
      .where('id', '>=', objectIdFloor(since))
      .where('sender_id', 'is not', null);
    const rows = await this.db
      .selectFrom(loggedIn.union(senders as never).as('u'))
      .select('u.user_id')
      .orderBy('u.user_id')
      .execute();
    return rows.map((r) => r.user_id as string);
  }

  /**
   * Adds a batch of per-minute counts: a row that exists gets the counts added and keeps the later use (several
   * nodes may write the same key and minute).
   */
  async addUsage(rows: UsageRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += CHUNK) {
      await this.db
        .insertInto('api_key_usage')
        .values(rows.slice(i, i + CHUNK))
        .onConflict((oc) =>
          oc.columns(['app_id', 'key_id', 'minute']).doUpdateSet({
            requests: sql`api_key_usage.requests + excluded.requests`,
            refused: sql`api_key_usage.refused + excluded.refused`,
            last_address: sql`case when excluded.last_used_at >= api_key_usage.last_used_at then excluded.last_address else api_key_usage.last_address end`,
            last_used_at: sql`case when excluded.last_used_at >= api_key_usage.last_used_at then excluded.last_used_at else api_key_usage.last_used_at end`,
          }),
        )
        .execute();
    }
  }

  /** The last 4 characters of the given API key and of the application's live client key (what stats may show). */
  async keyTails(appId: string, apiKeyId: string): Promise<{ apiKey: string | undefined; clientKey: string | undefined }> {
    const api = await this.db.selectFrom('api_keys').select('last4').where('app_id', '=', appId).where('id', '=', apiKeyId).executeTakeFirst();
    const client = await this.db
      .selectFrom('client_keys')
      .select('last4')
      .where('app_id', '=', appId)
      .where('revoked_at', 'is', null)
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
    return { apiKey: api?.last4, clientKey: client?.last4 };
  }

  /** Drops the rows of minutes before `before` (the usage meter keeps a week). */
  async pruneUsage(before: number): Promise<void> {
    await this.db.deleteFrom('api_key_usage').where('minute', '<', before).execute();
  }

  /** The application's API keys (never their digests) with their usage rows since `since`, oldest minute first. */
  async usageOf(appId: string, since: number): Promise<{ keys: Array<{ id: string; fingerprint: string | null; last4: string; created_at: number; expires_at: number | null; revoked_at: number | null }>; rows: UsageRow[]; last: UsageRow[] }> {
    const keys = await this.db.selectFrom('api_keys').select(['id', 'fingerprint', 'last4', 'created_at', 'expires_at', 'revoked_at']).where('app_id', '=', appId).orderBy('created_at').orderBy('id').execute();
    const rows = await this.db.selectFrom('api_key_usage').selectAll().where('app_id', '=', appId).where('minute', '>=', since).orderBy('key_id').orderBy('minute').execute();
    // The last use of each key, however long ago (within the rows kept): its latest minute.
    const last = await this.db
      .selectFrom('api_key_usage as u')
      .selectAll('u')
      .where('u.app_id', '=', appId)
      .where('u.minute', '=', (eb) => eb.selectFrom('api_key_usage as l').select((e) => e.fn.max('l.minute').as('m')).where('l.app_id', '=', appId).whereRef('l.key_id', '=', 'u.key_id'))
      .execute();
    return { keys, rows, last };
  }
}
