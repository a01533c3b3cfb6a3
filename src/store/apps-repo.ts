import type { Kysely, Selectable } from 'kysely';
import type { ApiKeysTable, AppsTable, ClientKeysTable, Database } from './schema.js';

export type AppRow = Selectable<AppsTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type ClientKeyRow = Selectable<ClientKeysTable>;

/** Applications, their domains and their keys: the only place their SQL lives. */
export class AppsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  getApp(id: string): Promise<AppRow | undefined> {
    return this.db.selectFrom('apps').selectAll().where('id', '=', id).executeTakeFirst();
  }

  listApps(): Promise<AppRow[]> {
    return this.db.selectFrom('apps').selectAll().orderBy('created_at').orderBy('id').execute();
  }

  findAppsByName(name: string): Promise<AppRow[]> {
    return this.db.selectFrom('apps').selectAll().where('name', '=', name).execute();
  }

  async countApps(): Promise<number> {
    const row = await this.db.selectFrom('apps').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async insertApp(row: AppRow): Promise<void> {
    await this.db.insertInto('apps').values(row).execute();
  }

  async domainsOf(appId: string): Promise<string[]> {
    const rows = await this.db.selectFrom('app_domains').select('domain').where('app_id', '=', appId).orderBy('domain').execute();
    return rows.map((r) => r.domain);
  }

  async domainsByApp(): Promise<Map<string, string[]>> {
    const rows = await this.db.selectFrom('app_domains').selectAll().orderBy('domain').execute();
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.app_id, [...(out.get(r.app_id) ?? []), r.domain]);
    return out;
  }

  async appOfDomain(domain: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('app_domains').select('app_id').where('domain', '=', domain).executeTakeFirst();
    return row?.app_id;
  }

  /** The whole domain table (what the auth guard keeps in memory). */
  allDomains(): Promise<Array<{ domain: string; app_id: string }>> {
    return this.db.selectFrom('app_domains').selectAll().execute();
  }

  ownersOfDomains(domains: string[]): Promise<Array<{ domain: string; app_id: string }>> {
    if (domains.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('app_domains').selectAll().where('domain', 'in', domains).execute();
  }

  async hasDomains(appId: string): Promise<boolean> {
    const row = await this.db.selectFrom('app_domains').select('domain').where('app_id', '=', appId).limit(1).executeTakeFirst();
    return row !== undefined;
  }

  /** The applications holding a live user token with this digest (a digest is in one application almost surely). */
  async appsOfToken(digest: string, now: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('user_tokens')
      .select('app_id')
      .where('digest', '=', digest)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .limit(2)
      .execute();
    return rows.map((r) => r.app_id);
  }

  async deleteDomains(appId: string): Promise<void> {
    await this.db.deleteFrom('app_domains').where('app_id', '=', appId).execute();
  }

  async insertDomains(appId: string, domains: string[]): Promise<void> {
    if (domains.length === 0) return;
    await this.db.insertInto('app_domains').values(domains.map((domain) => ({ domain, app_id: appId }))).execute();
  }

  // --- API keys

  findApiKeyByDigest(digest: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom('api_keys').selectAll().where('digest', '=', digest).executeTakeFirst();
  }

  listApiKeys(appId: string): Promise<ApiKeyRow[]> {
    return this.db.selectFrom('api_keys').selectAll().where('app_id', '=', appId).orderBy('created_at').orderBy('id').execute();
  }

  async insertApiKey(row: ApiKeyRow): Promise<void> {
    await this.db.insertInto('api_keys').values(row).execute();
  }

  async updateApiKey(id: string, patch: Partial<Pick<ApiKeyRow, 'expires_at' | 'revoked_at'>>): Promise<void> {
    await this.db.updateTable('api_keys').set(patch).where('id', '=', id).execute();
  }

  // --- client keys

  findClientKeyByDigest(digest: string): Promise<ClientKeyRow | undefined> {
    return this.db.selectFrom('client_keys').selectAll().where('digest', '=', digest).executeTakeFirst();
  }

  liveClientKey(appId: string): Promise<ClientKeyRow | undefined> {
    return this.db
      .selectFrom('client_keys')
      .selectAll()
      .where('app_id', '=', appId)
      .where('revoked_at', 'is', null)
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
  }

  async insertClientKey(row: ClientKeyRow): Promise<void> {
    await this.db.insertInto('client_keys').values(row).execute();
  }

  async revokeClientKeys(appId: string, now: number): Promise<void> {
    await this.db.updateTable('client_keys').set({ revoked_at: now }).where('app_id', '=', appId).where('revoked_at', 'is', null).execute();
  }

  async clientKeysRevokedSince(since: number): Promise<string[]> {
    const rows = await this.db.selectFrom('client_keys').select('id').where('revoked_at', '>', since).execute();
    return rows.map((r) => r.id);
  }

  async unrevokeClientKey(id: string): Promise<void> {
    await this.db.updateTable('client_keys').set({ revoked_at: null }).where('id', '=', id).execute();
  }
}
