import type { Kysely } from 'kysely';
import type { Database, OperatorSessionsTable, OperatorsTable } from './schema.js';

export type OperatorRow = OperatorsTable;
export type OperatorSessionRow = OperatorSessionsTable;

/** Dashboard operators, their sessions and the first-run setup token (migration 0023; docs/dashboard.md). */
export class OperatorsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async count(): Promise<number> {
    const r = await this.db.selectFrom('operators').select((eb) => eb.fn.countAll().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  byEmail(email: string): Promise<OperatorRow | undefined> {
    return this.db.selectFrom('operators').selectAll().where('email', '=', email).executeTakeFirst();
  }

  byId(id: string): Promise<OperatorRow | undefined> {
    return this.db.selectFrom('operators').selectAll().where('id', '=', id).executeTakeFirst();
  }

  list(): Promise<OperatorRow[]> {
    return this.db.selectFrom('operators').selectAll().orderBy('created_at').execute();
  }

  async insert(row: OperatorRow): Promise<void> {
    await this.db.insertInto('operators').values(row).execute();
  }

  async setPassword(id: string, passwordHash: string, now: number): Promise<void> {
    await this.db.updateTable('operators').set({ password_hash: passwordHash, updated_at: now }).where('id', '=', id).execute();
  }

  async loggedIn(id: string, now: number, ip: string): Promise<void> {
    await this.db.updateTable('operators').set({ last_login_at: now, last_login_ip: ip }).where('id', '=', id).execute();
  }

  async insertSession(row: OperatorSessionRow): Promise<void> {
    await this.db.insertInto('operator_sessions').values(row).execute();
  }

  /** The session with this digest and its operator, while it has not expired. */
  async session(digest: string, now: number): Promise<{ session: OperatorSessionRow; operator: OperatorRow } | undefined> {
    const row = await this.db
      .selectFrom('operator_sessions as s')
      .innerJoin('operators as o', 'o.id', 's.operator_id')
      .select(['s.digest', 's.operator_id', 's.created_at', 's.expires_at', 's.ip', 'o.email', 'o.password_hash', 'o.updated_at', 'o.last_login_at', 'o.last_login_ip', 'o.created_at as operator_created_at'])
      .where('s.digest', '=', digest)
      .where('s.expires_at', '>', now)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      session: { digest: row.digest, operator_id: row.operator_id, created_at: row.created_at, expires_at: row.expires_at, ip: row.ip },
      operator: { id: row.operator_id, email: row.email, password_hash: row.password_hash, created_at: row.operator_created_at, updated_at: row.updated_at, last_login_at: row.last_login_at, last_login_ip: row.last_login_ip },
    };
  }

  async deleteSession(digest: string): Promise<void> {
    await this.db.deleteFrom('operator_sessions').where('digest', '=', digest).execute();
  }

  /** Every session of the operator (a new password ends them), or only those expired by `now`. */
  async deleteSessionsOf(operatorId: string, expiredBy?: number): Promise<void> {
    let q = this.db.deleteFrom('operator_sessions').where('operator_id', '=', operatorId);
    if (expiredBy !== undefined) q = q.where('expires_at', '<=', expiredBy);
    await q.execute();
  }

  /** Replaces every setup token by this one. */
  /**
   * Adds a setup token; the expired ones go. The live ones stay: every node of a cluster prints a link at its start,
   * and each works until one is used (consumeSetupToken deletes them all) or it expires.
   */
  async addSetupToken(digest: string, now: number, expiresAt: number): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('operator_setup_tokens').where('expires_at', '<=', now).execute();
      await trx.insertInto('operator_setup_tokens').values({ digest, created_at: now, expires_at: expiresAt }).execute();
    });
  }

  /**
   * Uses the setup token: creates the first operator and deletes every setup token, in one transaction, only while
   * the token is live and no operator exists. False when it was not (used, expired, unknown, or an operator exists).
   */
  async consumeSetupToken(digest: string, now: number, first: OperatorRow): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const deleted = await trx.deleteFrom('operator_setup_tokens').where('digest', '=', digest).where('expires_at', '>', now).executeTakeFirst();
      if (Number(deleted.numDeletedRows) !== 1) return false;
      const n = await trx.selectFrom('operators').select((eb) => eb.fn.countAll().as('n')).executeTakeFirst();
      if (Number(n?.n ?? 0) > 0) return false;
      await trx.insertInto('operators').values(first).execute();
      await trx.deleteFrom('operator_setup_tokens').execute();
      return true;
    });
  }

  async deleteSetupTokens(): Promise<void> {
    await this.db.deleteFrom('operator_setup_tokens').execute();
  }
}
