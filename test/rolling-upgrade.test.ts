import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config.js';
import { openStore } from '../src/store/database.js';
import { DIALECTS, isolatedStore } from './helpers.js';

/**
 * Rolling upgrades (docs/deploy.md): a node of the older version that (re)starts after a newer one migrated the store
 * runs with the newer schema, as long as it has no migration of its own left to apply.
 */
describe.each(DIALECTS)('a store migrated by a newer version (%s)', (dialect) => {
  const where = isolatedStore(dialect);
  const config = defaultConfig({ ...where });
  afterAll(() => where.drop());

  const table = () => sql.table(where.databaseSchema ? `${where.databaseSchema}.kysely_migration` : 'kysely_migration');

  it('is used as it is, naming the migrations it does not know', async () => {
    const store = openStore(config);
    try {
      expect(await store.migrate()).toEqual([]);
      await sql`insert into ${table()} (name, timestamp) values (${'9999_from_the_future'}, ${new Date().toISOString()})`.execute(store.db);
      expect(await store.migrate()).toEqual(['9999_from_the_future']);
      // The store still answers.
      expect((await store.db.selectFrom('apps').select('id').execute()).length).toBeGreaterThanOrEqual(0);
    } finally {
      await store.close();
    }
  });

  it('is refused when this version would still have to apply one of its own', async () => {
    const store = openStore(config);
    try {
      await sql`delete from ${table()} where name = ${'0027_cluster_leases'}`.execute(store.db);
      await expect(store.migrate()).rejects.toThrow(/migrated by a newer version \(9999_from_the_future\), and this version would still apply 0027_cluster_leases: run the newer version/);
    } finally {
      await store.close();
    }
  });
});
