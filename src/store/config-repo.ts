import type { Kysely, Selectable } from 'kysely';
import type { AppConfigTable, Database } from './schema.js';

export type ConfigRow = Selectable<AppConfigTable>;

/** Runtime config of an application (one row per top-level key) and its change counter. */
export class ConfigRepo {
  constructor(private readonly db: Kysely<Database>) {}

  all(appId: string): Promise<ConfigRow[]> {
    return this.db.selectFrom('app_config').selectAll().where('app_id', '=', appId).orderBy('key').execute();
  }

  get(appId: string, key: string): Promise<ConfigRow | undefined> {
    return this.db.selectFrom('app_config').selectAll().where('app_id', '=', appId).where('key', '=', key).executeTakeFirst();
  }

  async upsert(row: ConfigRow): Promise<void> {
    await this.db
      .insertInto('app_config')
      .values(row)
      .onConflict((oc) => oc.columns(['app_id', 'key']).doUpdateSet({ value: row.value, updated_at: row.updated_at }))
      .execute();
  }

  async delete(appId: string, key: string): Promise<boolean> {
    const res = await this.db.deleteFrom('app_config').where('app_id', '=', appId).where('key', '=', key).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /** The application's config version: 0 before the first change, then raised by every change. */
  async version(appId: string): Promise<number> {
    const row = await this.db.selectFrom('app_config_versions').select('version').where('app_id', '=', appId).executeTakeFirst();
    return row ? Number(row.version) : 0;
  }

  async bumpVersion(appId: string): Promise<void> {
    await this.db
      .insertInto('app_config_versions')
      .values({ app_id: appId, version: 1 })
      .onConflict((oc) => oc.column('app_id').doUpdateSet((eb) => ({ version: eb(eb.ref('app_config_versions.version'), '+', 1) })))
      .execute();
  }
}
