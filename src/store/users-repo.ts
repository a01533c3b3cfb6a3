import type { Expression, Kysely, Selectable, SqlBool } from 'kysely';
import type { Database, UsersTable, UserTokensTable } from './schema.js';

export type UserRow = Selectable<UsersTable>;
export type UserTokenRow = Selectable<UserTokensTable>;
export type UserFilter = (eb: import('kysely').ExpressionBuilder<Database, 'users'>) => Expression<SqlBool>;

/** Users and their tokens, always scoped by application. */
export class UsersRepo {
  constructor(private readonly db: Kysely<Database>) {}

  get(appId: string, id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  getMany(appId: string, ids: string[]): Promise<UserRow[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('users').selectAll().where('app_id', '=', appId).where('id', 'in', [...new Set(ids)]).execute();
  }

  async insert(row: UserRow): Promise<void> {
    await this.db.insertInto('users').values(row).execute();
  }

  async update(appId: string, id: string, patch: Partial<Omit<UserRow, 'app_id' | 'id' | 'created_at'>>): Promise<void> {
    await this.db.updateTable('users').set(patch).where('app_id', '=', appId).where('id', '=', id).execute();
  }

  async delete(appId: string, id: string): Promise<boolean> {
    const res = await this.db.deleteFrom('users').where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  async list(appId: string, filter: UserFilter | undefined, limit: number, skip: number): Promise<{ rows: UserRow[]; total: number }> {
    let base = this.db.selectFrom('users').where('app_id', '=', appId);
    if (filter) base = base.where(filter);
    const [rows, count] = await Promise.all([
      base.selectAll().orderBy('created_at').orderBy('id').limit(limit).offset(skip).execute(),
      base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { rows, total: Number(count.n) };
  }

  // --- tokens

  findToken(appId: string, digest: string): Promise<UserTokenRow | undefined> {
    return this.db.selectFrom('user_tokens').selectAll().where('app_id', '=', appId).where('digest', '=', digest).executeTakeFirst();
  }

  tokensOf(appId: string, userId: string, kind?: string): Promise<UserTokenRow[]> {
    let q = this.db.selectFrom('user_tokens').selectAll().where('app_id', '=', appId).where('user_id', '=', userId);
    if (kind) q = q.where('kind', '=', kind);
    return q.execute();
  }

  async insertToken(row: UserTokenRow): Promise<void> {
    await this.db.insertInto('user_tokens').values(row).execute();
  }

  async updateTokenExpiry(appId: string, digest: string, expiresAt: number | null): Promise<void> {
    await this.db.updateTable('user_tokens').set({ expires_at: expiresAt }).where('app_id', '=', appId).where('digest', '=', digest).execute();
  }

  /** Deletes a user's tokens (all, or those of one kind, or one digest) and says how many went. */
  async deleteTokens(appId: string, userId: string, which: { kind?: string; digest?: string } = {}): Promise<number> {
    let q = this.db.deleteFrom('user_tokens').where('app_id', '=', appId).where('user_id', '=', userId);
    if (which.kind) q = q.where('kind', '=', which.kind);
    if (which.digest) q = q.where('digest', '=', which.digest);
    const res = await q.executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}
