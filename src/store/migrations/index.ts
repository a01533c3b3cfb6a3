import type { Kysely, Migration, MigrationProvider } from 'kysely';

/**
 * The one migration set, written with Kysely's schema builder so it runs unchanged on SQLite and Postgres.
 * Migrations are kept in code (not read from a folder) so they work from src/ under Vitest and from dist/.
 * Never edit a migration that has shipped; add the next one.
 */
const migrations: Record<string, Migration> = {
  '0001_foundation': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('apps')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(200)', (c) => c.notNull())
        .addColumn('rate_limit_per_minute', 'integer')
        .addColumn('signing_secret', 'varchar(128)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('app_domains')
        .addColumn('domain', 'varchar(255)', (c) => c.primaryKey())
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .execute();
      await db.schema.createIndex('app_domains_app').on('app_domains').column('app_id').execute();

      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('digest', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('last4', 'varchar(4)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('api_keys_app').on('api_keys').column('app_id').execute();

      await db.schema
        .createTable('client_keys')
        .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('digest', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('last4', 'varchar(4)', (c) => c.notNull())
        .addColumn('issued', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('client_keys_app').on('client_keys').column('app_id').execute();

      await db.schema
        .createTable('users')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('id', 'varchar(128)', (c) => c.notNull())
        .addColumn('nickname', 'text')
        .addColumn('avatar_url', 'text')
        .addColumn('description', 'text')
        .addColumn('is_robot', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('extra', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('address', 'text')
        .addColumn('user_agent', 'text')
        .addColumn('last_login_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('users_pk', ['app_id', 'id'])
        .execute();
      await db.schema.createIndex('users_app_nickname').on('users').columns(['app_id', 'nickname']).execute();

      await db.schema
        .createTable('user_tokens')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('digest', 'varchar(64)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('kind', 'varchar(16)', (c) => c.notNull())
        .addColumn('last4', 'varchar(4)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addPrimaryKeyConstraint('user_tokens_pk', ['app_id', 'digest'])
        .execute();
      await db.schema.createIndex('user_tokens_user').on('user_tokens').columns(['app_id', 'user_id']).execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
