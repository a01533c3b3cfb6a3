import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * The Postgres channel on which committed changes to credential rows are announced (payload: JSON
 * [schema, kind, application, digest or user id], migration 0012), so that other processes drop what they cached
 * of those rows (src/store/external-writes.ts).
 */
export const CREDENTIALS_CHANNEL = 'imkit_credentials';

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
  '0002_chat': {
    async up(db: Kysely<any>) {
      const app = (c: any) => c.notNull().references('apps.id').onDelete('cascade');
      await db.schema
        .createTable('rooms')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('id', 'varchar(128)', (c) => c.notNull())
        .addColumn('name', 'text')
        .addColumn('cover', 'text')
        .addColumn('description', 'text')
        .addColumn('room_type', 'varchar(16)', (c) => c.notNull())
        .addColumn('room_tags', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('webhook', 'text')
        .addColumn('bot_mode', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('bot_state', 'text')
        .addColumn('encrypted', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('ext_params', 'text')
        .addColumn('status', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('opening', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('owner', 'varchar(128)')
        .addColumn('extra', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('last_message_id', 'varchar(32)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('rooms_pk', ['app_id', 'id'])
        .execute();

      // rooms.room_tags keeps the list as sent (for display); this table answers "rooms with tag X".
      await db.schema
        .createTable('room_tags')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('tag', 'varchar(256)', (c) => c.notNull())
        .addPrimaryKeyConstraint('room_tags_pk', ['app_id', 'room_id', 'tag'])
        .execute();
      await db.schema.createIndex('room_tags_tag').on('room_tags').columns(['app_id', 'tag']).execute();

      await db.schema
        .createTable('room_members')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('role', 'varchar(16)', (c) => c.notNull().defaultTo('member'))
        .addColumn('badge', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('last_read', 'varchar(32)')
        .addColumn('properties', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('joined_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('room_members_pk', ['app_id', 'room_id', 'user_id'])
        .execute();
      await db.schema.createIndex('room_members_user').on('room_members').columns(['app_id', 'user_id']).execute();

      await db.schema
        .createTable('messages')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('id', 'varchar(32)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('sender_id', 'varchar(128)')
        .addColumn('message_type', 'varchar(64)', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('fields', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('reply_id', 'varchar(32)')
        .addColumn('pinned', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('edited_at', 'bigint')
        .addColumn('message_time', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('messages_pk', ['app_id', 'id'])
        .execute();
      await db.schema.createIndex('messages_room_id').on('messages').columns(['app_id', 'room_id', 'id']).execute();
      await db.schema.createIndex('messages_room_updated').on('messages').columns(['app_id', 'room_id', 'updated_at']).execute();

      await db.schema
        .createTable('message_reactions')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('message_id', 'varchar(32)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('reaction', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('message_reactions_pk', ['app_id', 'message_id', 'user_id', 'reaction'])
        .execute();

      await db.schema
        .createTable('user_deleted_messages')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('message_id', 'varchar(32)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('user_deleted_messages_pk', ['app_id', 'user_id', 'message_id'])
        .execute();
      await db.schema.createIndex('user_deleted_room').on('user_deleted_messages').columns(['app_id', 'user_id', 'room_id']).execute();

      await db.schema
        .createTable('room_prefs')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('scope', 'varchar(128)', (c) => c.notNull().defaultTo(''))
        .addColumn('data', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('muted', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('room_prefs_pk', ['app_id', 'user_id', 'room_id', 'scope'])
        .execute();

      await db.schema
        .createTable('user_prefs')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('key', 'varchar(256)', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('user_prefs_pk', ['app_id', 'user_id', 'key'])
        .execute();

      await db.schema
        .createTable('invitations')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('invitee', 'varchar(128)', (c) => c.notNull())
        .addColumn('inviter', 'varchar(128)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('invitations_pk', ['app_id', 'room_id', 'invitee'])
        .execute();
      await db.schema.createIndex('invitations_invitee').on('invitations').columns(['app_id', 'invitee']).execute();
    },
  },
  '0003_token_digest_index': {
    async up(db: Kysely<any>) {
      // Legacy socket `auth` sends a token without a client key: find its application by the digest alone.
      await db.schema.createIndex('user_tokens_digest').on('user_tokens').column('digest').execute();
    },
  },
  '0004_moderation': {
    async up(db: Kysely<any>) {
      const app = (c: any) => c.notNull().references('apps.id').onDelete('cascade');
      // Runtime config (GET/POST /config): one row per top-level key, the value as JSON text.
      await db.schema
        .createTable('app_config')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('key', 'varchar(256)', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('app_config_pk', ['app_id', 'key'])
        .execute();
      // Raised by every config change in the same transaction: other processes compare it to notice changes.
      await db.schema
        .createTable('app_config_versions')
        .addColumn('app_id', 'varchar(64)', (c) => c.primaryKey().references('apps.id').onDelete('cascade'))
        .addColumn('version', 'bigint', (c) => c.notNull())
        .execute();
      // Personal blocks (/blockStatus/my): the blocker's own list; enforced in the pair's direct rooms.
      await db.schema
        .createTable('user_blocks')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('blocker', 'varchar(128)', (c) => c.notNull())
        .addColumn('blockee', 'varchar(128)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('user_blocks_pk', ['app_id', 'blocker', 'blockee'])
        .execute();
      await db.schema.createIndex('user_blocks_blockee').on('user_blocks').columns(['app_id', 'blockee']).execute();
      // Room bans (/blockStatus/room): expired rows (unblock_at in the past) are ignored, then replaced.
      await db.schema
        .createTable('room_bans')
        .addColumn('app_id', 'varchar(64)', app)
        .addColumn('room_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('banned_by', 'varchar(128)')
        .addColumn('unblock_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('room_bans_pk', ['app_id', 'room_id', 'user_id'])
        .execute();
    },
  },
  '0005_batch': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('batch_jobs')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('id', 'varchar(64)', (c) => c.notNull())
        .addColumn('sender', 'varchar(128)')
        .addColumn('template', 'text', (c) => c.notNull())
        .addColumn('total', 'integer', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint')
        .addPrimaryKeyConstraint('batch_jobs_pk', ['app_id', 'id'])
        .execute();
      await db.schema.createIndex('batch_jobs_status').on('batch_jobs').columns(['status', 'created_at']).execute();
      await db.schema
        .createTable('batch_items')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('batch_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('claimed_by', 'varchar(32)')
        .addColumn('claimed_at', 'bigint')
        .addColumn('message_id', 'varchar(32)')
        .addColumn('error', 'text')
        .addPrimaryKeyConstraint('batch_items_pk', ['app_id', 'batch_id', 'idx'])
        .addForeignKeyConstraint('batch_items_job', ['app_id', 'batch_id'], 'batch_jobs', ['app_id', 'id'], (c) => c.onDelete('cascade'))
        .execute();
      await db.schema.createIndex('batch_items_status').on('batch_items').columns(['app_id', 'batch_id', 'status', 'idx']).execute();
    },
  },
  '0006_groups': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('user_groups')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('id', 'varchar(128)', (c) => c.notNull())
        .addColumn('nickname', 'text', (c) => c.notNull())
        .addColumn('avatar_url', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('user_groups_pk', ['app_id', 'id'])
        .execute();
      await db.schema
        .createTable('group_members')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('group_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addPrimaryKeyConstraint('group_members_pk', ['app_id', 'group_id', 'user_id'])
        .addForeignKeyConstraint('group_members_group', ['app_id', 'group_id'], 'user_groups', ['app_id', 'id'], (c) => c.onDelete('cascade'))
        .execute();
      // A room member row added because its user belongs to a group member of the room names that group here.
      await db.schema.alterTable('room_members').addColumn('via', 'varchar(128)').execute();
    },
  },
  '0008_message_count': {
    async up(db: Kysely<any>) {
      // History pages report the room's message count; counting the room on every page is O(room size).
      await db.schema.alterTable('rooms').addColumn('message_count', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
      await sql`update rooms set message_count = (select count(*) from messages m where m.app_id = rooms.app_id and m.room_id = rooms.id)`.execute(db);
    },
  },
  '0011_edited_index': {
    async up(db: Kysely<any>) {
      // "Changed since T" needs updated_at only for the messages changed after they were sent; those created after
      // T are an id range (MessagesRepo.history). An index of every message's updated_at cost each send one more
      // page written per room.
      await sql`create index messages_room_edited on messages (app_id, room_id, updated_at) where updated_at <> created_at`.execute(db);
      await db.schema.dropIndex('messages_room_updated').execute();
    },
  },
  '0014_monitoring': {
    async up(db: Kysely<any>) {
      // Per-API-key usage, one row per key and minute, written in batches by the usage meter (src/monitoring/usage.ts).
      // Not columns of api_keys: every write there is a credential change (triggers of 0009/0012/0013 empty the
      // credential caches of every process). No foreign keys: a batch written just after its application or key
      // was deleted must not fail; such rows are never listed (the read joins api_keys) and age out.
      await db.schema
        .createTable('api_key_usage')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('key_id', 'varchar(32)', (c) => c.notNull())
        .addColumn('minute', 'bigint', (c) => c.notNull())
        .addColumn('requests', 'integer', (c) => c.notNull())
        .addColumn('refused', 'integer', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint', (c) => c.notNull())
        .addColumn('last_address', 'varchar(64)', (c) => c.notNull())
        .addPrimaryKeyConstraint('api_key_usage_pk', ['app_id', 'key_id', 'minute'])
        .execute();
      await db.schema.createIndex('api_key_usage_minute').on('api_key_usage').column('minute').execute();
      // GET /admin/stats lists the users who logged in during the last hour: a range of this index, not a scan of
      // every user of the application. A login writes the row anyway (at most once a minute per user).
      await db.schema.createIndex('users_app_login').on('users').columns(['app_id', 'last_login_at']).execute();
    },
  },
  '0015_webhooks': {
    async up(db: Kysely<any>) {
      // Application-level endpoints (docs/webhooks.md). `events` is a JSON array of event types ("*": all); `key`
      // is the name a room's `webhook` field may give instead of a URL. Secrets are kept in clear: the server signs
      // with them. During a rotation the previous secret signs too, until previous_expires_at.
      await db.schema
        .createTable('webhook_endpoints')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('id', 'varchar(40)', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('events', 'text', (c) => c.notNull())
        .addColumn('key', 'varchar(128)')
        .addColumn('description', 'varchar(500)')
        .addColumn('secret', 'varchar(128)', (c) => c.notNull())
        .addColumn('previous_secret', 'varchar(128)')
        .addColumn('previous_expires_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('webhook_endpoints_pk', ['app_id', 'id'])
        .addUniqueConstraint('webhook_endpoints_key', ['app_id', 'key'])
        .execute();
      // The secret that signs room webhooks given as a URL (imkit-server app webhook-secret APP). Not a column of
      // apps: every write there empties the credential caches of every process (0009/0012/0013).
      await db.schema
        .createTable('app_webhook_secrets')
        .addColumn('app_id', 'varchar(64)', (c) => c.primaryKey().references('apps.id').onDelete('cascade'))
        .addColumn('secret', 'varchar(128)', (c) => c.notNull())
        .addColumn('previous_secret', 'varchar(128)')
        .addColumn('previous_expires_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      // The transactional outbox: one row per domain event someone subscribes to, written by the transaction that
      // made the change. `data` is the event's facts (ids, actor, change) as JSON; payloads are rendered when the
      // dispatcher turns the event into deliveries, in the transaction that removes the event.
      await db.schema
        .createTable('webhook_events')
        .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('type', 'varchar(40)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(128)')
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('state', 'varchar(8)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('webhook_events_state').on('webhook_events').columns(['state', 'id']).execute();
      // One row per event and target: id = <event id>.<endpoint id | "room">, so turning an event into deliveries
      // twice (a crash between the two) cannot send it twice.
      await db.schema
        .createTable('webhook_deliveries')
        .addColumn('id', 'varchar(96)', (c) => c.primaryKey())
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('event_id', 'varchar(40)', (c) => c.notNull())
        .addColumn('event_type', 'varchar(40)', (c) => c.notNull())
        .addColumn('kind', 'varchar(8)', (c) => c.notNull())
        .addColumn('endpoint_id', 'varchar(40)')
        .addColumn('room_id', 'varchar(128)')
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('status', 'varchar(12)', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('next_attempt_at', 'bigint')
        .addColumn('last_status', 'integer')
        .addColumn('last_error', 'varchar(500)')
        .addColumn('claimed_by', 'varchar(40)')
        .addColumn('claimed_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['status', 'next_attempt_at', 'id']).execute();
      await db.schema.createIndex('webhook_deliveries_app').on('webhook_deliveries').columns(['app_id', 'id']).execute();
    },
  },
  '0017_api_key_settings': {
    async up(db: Kysely<any>) {
      // Keys a person can tell apart and keys with less than full power (docs/security.md): `fingerprint` is the
      // start of the key's SHA-256 digest (anyone holding the key can compute it), `scopes` and `allow_ips` JSON
      // arrays (null: every scope, any address), a per-minute limit of its own, a name.
      await db.schema.alterTable('api_keys').addColumn('fingerprint', 'varchar(16)').execute();
      await db.schema.alterTable('api_keys').addColumn('name', 'varchar(100)').execute();
      await db.schema.alterTable('api_keys').addColumn('scopes', 'text').execute();
      await db.schema.alterTable('api_keys').addColumn('allow_ips', 'text').execute();
      await db.schema.alterTable('api_keys').addColumn('rate_limit_per_minute', 'integer').execute();
      await sql`update api_keys set fingerprint = substr(digest, 1, 10)`.execute(db);
    },
  },
  '0018_audit_log': {
    async up(db: Kysely<any>) {
      // What API keys and operators did (docs/security.md, Audit log). No foreign key: entries outlive the keys
      // they name; they age out by IMKIT_AUDIT_RETENTION.
      await db.schema
        .createTable('audit_log')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('id', 'varchar(24)', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor_type', 'varchar(16)', (c) => c.notNull())
        .addColumn('actor_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('actor_fingerprint', 'varchar(16)')
        .addColumn('actor_last4', 'varchar(8)')
        .addColumn('ip', 'varchar(64)')
        .addColumn('action', 'varchar(100)', (c) => c.notNull())
        .addColumn('route', 'varchar(200)')
        .addColumn('target', 'varchar(500)')
        .addColumn('outcome', 'varchar(8)', (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_log_pk', ['app_id', 'id'])
        .execute();
      await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
    },
  },
  '0020_key_alerts': {
    async up(db: Kysely<any>) {
      // Key anomaly alerts (docs/security.md, Alerts). The addresses each API key was used from (a new one is an
      // alert), and the alerts raised, which stay open until an operator acknowledges them.
      await db.schema
        .createTable('api_key_addresses')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('key_id', 'varchar(32)', (c) => c.notNull())
        .addColumn('address', 'varchar(64)', (c) => c.notNull())
        .addColumn('first_seen_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('api_key_addresses_pk', ['app_id', 'key_id', 'address'])
        .execute();
      await db.schema
        .createTable('key_alerts')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('id', 'varchar(24)', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('kind', 'varchar(32)', (c) => c.notNull())
        .addColumn('key_id', 'varchar(32)')
        .addColumn('key_fingerprint', 'varchar(16)')
        .addColumn('key_last4', 'varchar(8)')
        .addColumn('ip', 'varchar(64)')
        .addColumn('detail', 'text', (c) => c.notNull())
        .addColumn('acknowledged_at', 'bigint')
        .addColumn('acknowledged_by', 'varchar(64)')
        .addPrimaryKeyConstraint('key_alerts_pk', ['app_id', 'id'])
        .execute();
      await db.schema.createIndex('key_alerts_at').on('key_alerts').column('at').execute();
    },
  },
  '0019_import_checkpoints': {
    async up(db: Kysely<any>) {
      // What `imkit-server import` has copied from a source server (docs/migrating.md): one row per entity
      // (`users`, `room:<id>`, ...) and source URL, its state as JSON (a room's oldest imported message, whether
      // its history is complete, the newest update time seen). Written in the transaction that writes the rows.
      await db.schema
        .createTable('import_checkpoints')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('source', 'varchar(500)', (c) => c.notNull())
        .addColumn('entity', 'varchar(200)', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('import_checkpoints_pk', ['app_id', 'source', 'entity'])
        .execute();
    },
  },
  '0022_push': {
    async up(db: Kysely<any>) {
      // Push notifications (docs/push.md). Devices: one row per provider token, which moves to whoever subscribes
      // it last (a phone shared by two logins); `token_key` is the token's SHA-256, so the unique index stays small
      // whatever the token (a web push subscription is a JSON object).
      await db.schema
        .createTable('push_devices')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('id', 'varchar(40)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('type', 'varchar(16)', (c) => c.notNull())
        .addColumn('provider', 'varchar(8)', (c) => c.notNull())
        .addColumn('device_id', 'varchar(256)')
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('token_key', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('push_devices_pk', ['app_id', 'id'])
        .addUniqueConstraint('push_devices_token', ['app_id', 'provider', 'token_key'])
        .execute();
      await db.schema.createIndex('push_devices_user').on('push_devices').columns(['app_id', 'user_id']).execute();
      // Credentials per application and provider: `data` holds the secrets (never listed), `info` what may be shown.
      await db.schema
        .createTable('push_credentials')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('provider', 'varchar(8)', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('info', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('push_credentials_pk', ['app_id', 'provider'])
        .execute();
      // Push deliveries are rows of the webhook delivery queue (kind 'push'): the same claims, retries and restart
      // handling. One message reaches one device at most once: a unique index on (application, message, device)
      // besides the delivery id (NULLs, for pushes not about a message, never collide).
      await db.schema.alterTable('webhook_deliveries').addColumn('message_id', 'varchar(40)').execute();
      await db.schema.alterTable('webhook_deliveries').addColumn('device_id', 'varchar(40)').execute();
      await db.schema.createIndex('webhook_deliveries_push_once').on('webhook_deliveries').columns(['app_id', 'message_id', 'device_id']).unique().execute();
    },
  },
  '0021_files': {
    async up(db: Kysely<any>) {
      // Uploaded files (docs/files.md): the metadata of each; the bytes live in the storage driver under
      // `storage_key`, which the server makes (never a caller's id). A thumbnail is a file row of its own
      // (`thumbnail_of` names the original), so it is read, signed and deleted like any file.
      await db.schema
        .createTable('files')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('id', 'varchar(24)', (c) => c.notNull())
        .addColumn('bucket', 'varchar(64)', (c) => c.notNull())
        .addColumn('filename', 'varchar(255)', (c) => c.notNull())
        .addColumn('mime_type', 'varchar(255)', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('md5', 'varchar(32)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(128)')
        .addColumn('uploader_id', 'varchar(128)')
        .addColumn('extra', 'text', (c) => c.notNull())
        .addColumn('storage_key', 'varchar(200)', (c) => c.notNull())
        .addColumn('width', 'integer')
        .addColumn('height', 'integer')
        .addColumn('duration_ms', 'bigint')
        .addColumn('thumbnail_id', 'varchar(24)')
        .addColumn('thumbnail_of', 'varchar(24)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('files_pk', ['app_id', 'id'])
        .execute();
      await db.schema.createIndex('files_room').on('files').columns(['app_id', 'room_id', 'id']).execute();
      // The key of each application's signed file URLs: random, made on first use, never sent anywhere.
      await db.schema
        .createTable('file_url_keys')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().primaryKey().references('apps.id').onDelete('cascade'))
        .addColumn('secret', 'varchar(128)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  '0023_operators': {
    async up(db: Kysely<any>) {
      // The dashboard's operators (docs/dashboard.md): server-wide accounts, separate from any application's chat
      // users. Passwords as argon2id PHC strings; sessions and the first-run setup token as SHA-256 digests.
      await db.schema
        .createTable('operators')
        .addColumn('id', 'varchar(24)', (c) => c.primaryKey())
        .addColumn('email', 'varchar(254)', (c) => c.notNull().unique())
        .addColumn('password_hash', 'varchar(200)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('last_login_at', 'bigint')
        .addColumn('last_login_ip', 'varchar(64)')
        .execute();
      await db.schema
        .createTable('operator_sessions')
        .addColumn('digest', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('operator_id', 'varchar(24)', (c) => c.notNull().references('operators.id').onDelete('cascade'))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('ip', 'varchar(64)')
        .execute();
      await db.schema.createIndex('operator_sessions_operator').on('operator_sessions').column('operator_id').execute();
      await db.schema
        .createTable('operator_setup_tokens')
        .addColumn('digest', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  '0024_idempotency_keys': {
    async up(db: Kysely<any>) {
      // Idempotency-Key on POSTs (docs/reliability.md): per application and caller (`subject`), the key, a digest of
      // the request it was first used with, and once answered the answer's status and body (null while running).
      await db.schema
        .createTable('idempotency_keys')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('subject', 'varchar(200)', (c) => c.notNull())
        .addColumn('key', 'varchar(255)', (c) => c.notNull())
        .addColumn('fingerprint', 'varchar(64)', (c) => c.notNull())
        .addColumn('status', 'integer')
        .addColumn('body', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('idempotency_keys_pk', ['app_id', 'subject', 'key'])
        .execute();
      await db.schema.createIndex('idempotency_keys_created').on('idempotency_keys').column('created_at').execute();
    },
  },
  '0026_import_ids': {
    async up(db: Kysely<any>) {
      // What `imkit-server import` wrote from a source server (docs/migrating.md), by kind ('user', 'message',
      // 'config', 'webhook') and id; `scope` is a message's room ('' otherwise). A later run deletes here only what it
      // imported and the source no longer has, never what was written here after the move.
      await db.schema
        .createTable('import_ids')
        .addColumn('app_id', 'varchar(64)', (c) => c.notNull().references('apps.id').onDelete('cascade'))
        .addColumn('source', 'varchar(500)', (c) => c.notNull())
        .addColumn('kind', 'varchar(16)', (c) => c.notNull())
        .addColumn('scope', 'varchar(128)', (c) => c.notNull())
        .addColumn('id', 'varchar(128)', (c) => c.notNull())
        .addPrimaryKeyConstraint('import_ids_pk', ['app_id', 'source', 'kind', 'scope', 'id'])
        .execute();
    },
  },
  '0027_cluster_leases': {
    async up(db: Kysely<any>) {
      // Cluster mode (docs/cluster.md). Periodic work done once per period by one node of the cluster: a named lease
      // (the node that holds it, until when). And outbox events are claimed by the dispatcher that renders them, so
      // that several nodes do not all render every event; a claim not finished in time goes to another node.
      await db.schema
        .createTable('leases')
        .addColumn('name', 'varchar(100)', (c) => c.primaryKey())
        .addColumn('holder', 'varchar(200)', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.alterTable('webhook_events').addColumn('claimed_by', 'varchar(200)').execute();
      await db.schema.alterTable('webhook_events').addColumn('claimed_at', 'bigint').execute();
    },
  },
  '0029_idempotency_message': {
    async up(db: Kysely<any>) {
      // A send with an Idempotency-Key or a clientMsgId records its message's id on its key in the message's own
      // transaction (docs/reliability.md): a crash before the answer is written no longer lets a retry send again.
      await db.schema.alterTable('idempotency_keys').addColumn('message_id', 'varchar(64)').execute();
    },
  },
};

/**
 * imkit_append_batch (store/append-repo.ts): 0010's, and 0028's, which first locks the batch's rooms in id order so
 * that several nodes' batches on common rooms queue instead of deadlocking.
 */
function appendBatchFunction(lockRoomsFirst: boolean) {
  return sql`create or replace function imkit_append_batch(
      p_app text, p_now bigint,
      m_id text[], m_room text[], m_sender text[], m_type text[], m_message text[], m_fields text[], m_reply text[],
      m_pinned integer[], m_edited bigint[], m_time bigint[], m_created bigint[], m_updated bigint[],
      r_room text[], r_last text[], r_at bigint[], r_n integer[],
      b_room text[], b_n integer[],
      s_room text[], s_user text[], s_message text[], s_badge integer[]
    ) returns void language plpgsql as $$
    begin
      ${lockRoomsFirst ? sql`perform 1 from rooms where rooms.app_id = p_app and rooms.id = any(r_room) order by rooms.id for no key update;` : sql``}
      insert into messages (app_id, id, room_id, sender_id, message_type, message, fields, reply_id, pinned, edited_at, message_time, created_at, updated_at)
        select p_app, v.id, v.room, v.sender, v.typ, v.msg, v.flds, v.reply, v.pinned, v.edited, v.tm, v.created, v.updated
        from unnest(m_id, m_room, m_sender, m_type, m_message, m_fields, m_reply, m_pinned, m_edited, m_time, m_created, m_updated)
          as v(id, room, sender, typ, msg, flds, reply, pinned, edited, tm, created, updated);
      update rooms set last_message_id = v.mid, updated_at = v.at, message_count = rooms.message_count + v.n
        from unnest(r_room, r_last, r_at, r_n) as v(rid, mid, at, n)
        where rooms.app_id = p_app and rooms.id = v.rid;
      update room_members set badge = room_members.badge + v.n
        from unnest(b_room, b_n) as v(rid, n)
        where room_members.app_id = p_app and room_members.room_id = v.rid
          and not exists (
            select 1 from room_bans b
            where b.app_id = room_members.app_id and b.room_id = room_members.room_id and b.user_id = room_members.user_id
              and (b.unblock_at is null or b.unblock_at > p_now)
          );
      update room_members set last_read = v.mid, badge = v.k
        from unnest(s_room, s_user, s_message, s_badge) as v(rid, uid, mid, k)
        where room_members.app_id = p_app and room_members.room_id = v.rid and room_members.user_id = v.uid;
    end $$`;
}

/** Migrations that act on Postgres only; on SQLite they are recorded as done and do nothing, so both keep one sequence. */
const postgresOnly: Record<string, Migration> = {
  '0016_append_batch_events': {
    async up(db: Kysely<any>) {
      // A batch whose messages someone subscribes to (webhooks) also writes their outbox rows: the same one call,
      // so it stays one statement and one round trip (store/append-repo.ts), instead of begin, two statements and
      // commit.
      await sql`create or replace function imkit_append_batch_events(
          p_app text, p_now bigint,
          m_id text[], m_room text[], m_sender text[], m_type text[], m_message text[], m_fields text[], m_reply text[],
          m_pinned integer[], m_edited bigint[], m_time bigint[], m_created bigint[], m_updated bigint[],
          r_room text[], r_last text[], r_at bigint[], r_n integer[],
          b_room text[], b_n integer[],
          s_room text[], s_user text[], s_message text[], s_badge integer[],
          e_id text[], e_type text[], e_room text[], e_data text[], e_created bigint[]
        ) returns void language plpgsql as $$
        begin
          perform imkit_append_batch(p_app, p_now, m_id, m_room, m_sender, m_type, m_message, m_fields, m_reply,
            m_pinned, m_edited, m_time, m_created, m_updated, r_room, r_last, r_at, r_n, b_room, b_n,
            s_room, s_user, s_message, s_badge);
          insert into webhook_events (id, app_id, type, room_id, data, state, created_at)
            select v.id, p_app, v.typ, v.room, v.data, 'new', v.created
            from unnest(e_id, e_type, e_room, e_data, e_created) as v(id, typ, room, data, created);
        end $$`.execute(db);
    },
  },
  '0028_append_batch_lock_order': {
    async up(db: Kysely<any>) {
      // Cluster mode: several nodes' writers append batches at once, and two batches that touched the same rooms
      // locked their rows (the rooms' last message, every member's badge) in whatever order the updates met them:
      // PostgreSQL found deadlocks, waited deadlock_timeout (1 s) before each, and aborted one batch (found by the
      // cluster bench). The batch now locks its rooms first, in id order, so two batches on common rooms queue on
      // the first of them instead. The statements after the lock are those of 0010.
      await appendBatchFunction(true).execute(db);
    },
  },
  '0007_credential_notify': {
    async up(db: Kysely<any>) {
      // Every statement that changes a credential table announces itself on CREDENTIALS_CHANNEL. NOTIFY is
      // transactional: the announcement is delivered when (and only if) the change commits, whoever made it (a
      // server node, the CLI, an operator in psql). The payload is the table's schema, as several installations
      // may share one database. (SQLite: migration 0009.)
      await sql`create or replace function imkit_credentials_changed() returns trigger language plpgsql as $$
        begin
          perform pg_notify(${sql.lit(CREDENTIALS_CHANNEL)}, tg_table_schema);
          return null;
        end $$`.execute(db);
      const on = (table: string, events: string) =>
        sql`create trigger imkit_credentials_changed after ${sql.raw(events)} on ${sql.table(table)}
            for each statement execute function imkit_credentials_changed()`.execute(db);
      for (const table of ['apps', 'app_domains', 'api_keys', 'client_keys', 'user_tokens']) await on(table, 'insert or update or delete');
      await on('users', 'delete');
    },
  },
  '0010_append_batch': {
    async up(db: Kysely<any>) {
      // A group-committed batch of users' messages as one call (store/append-repo.ts): the four statements of a
      // batch ran as six round trips (begin, four statements, commit) while the server waited. A function call is
      // one statement, and so one transaction, whatever the number of messages: each list travels as an array.
      // The statements are those of the SQLite path, in the same order (insert, rooms' last message and count,
      // members' badges except the banned, senders' read marks and badges).
      await appendBatchFunction(false).execute(db);
    },
  },
  '0012_credential_notify_rows': {
    async up(db: Kysely<any>) {
      // 0007 announced every statement on a credential table with the schema alone, so every listener emptied its
      // whole cache, for every tenant, on each issued token. Now each changed row is announced with what it was:
      // [schema, kind, application, digest or user id] as JSON, and only changes that can make a cached row stale
      // are announced (a new token, key or application is not in any cache: only rows that exist are kept).
      // NOTIFY is still transactional and still sent whoever writes.
      for (const table of ['apps', 'app_domains', 'api_keys', 'client_keys', 'user_tokens', 'users']) {
        await sql`drop trigger if exists imkit_credentials_changed on ${sql.table(table)}`.execute(db);
      }
      await sql`drop function if exists imkit_credentials_changed()`.execute(db);
      await sql`create or replace function imkit_credential_row_changed() returns trigger language plpgsql as $$
        declare
          r jsonb := case when tg_op = 'INSERT' then to_jsonb(new) else to_jsonb(old) end;
          kind text := tg_argv[0];
        begin
          perform pg_notify(${sql.lit(CREDENTIALS_CHANNEL)}, json_build_array(
            tg_table_schema,
            kind,
            coalesce(r->>'app_id', r->>'id'),
            case kind when 'user' then r->>'id' when 'token' then r->>'digest' when 'api_key' then r->>'digest' when 'client_key' then r->>'digest' else null end
          )::text);
          return null;
        end $$`.execute(db);
      const on = (table: string, events: string, kind: string) =>
        sql`create trigger imkit_credential_row_changed after ${sql.raw(events)} on ${sql.table(table)}
            for each row execute function imkit_credential_row_changed(${sql.lit(kind)})`.execute(db);
      await on('user_tokens', 'update or delete', 'token');
      await on('api_keys', 'update or delete', 'api_key');
      await on('client_keys', 'update or delete', 'client_key');
      await on('apps', 'update or delete', 'app');
      await on('app_domains', 'insert or update or delete', 'domains');
      await on('users', 'delete', 'user');
    },
  },
};

/** Migrations that act on SQLite only; on Postgres they are recorded as done and do nothing. */
const sqliteOnly: Record<string, Migration> = {
  '0009_credential_version': {
    async up(db: Kysely<any>) {
      // The SQLite counterpart of 0007: a counter that every change to a credential table raises, whoever makes
      // it. PRAGMA data_version tells that another connection committed something (also the server's own writer
      // thread, on every batch of messages); this counter tells whether that commit touched credentials
      // (src/store/external-writes.ts).
      await sql`create table credential_version (id integer primary key check (id = 1), n integer not null)`.execute(db);
      await sql`insert into credential_version (id, n) values (1, 0)`.execute(db);
      const on = async (table: string, event: string) =>
        sql`create trigger ${sql.raw(`imkit_credentials_${table}_${event}`)} after ${sql.raw(event)} on ${sql.table(table)}
            begin update credential_version set n = n + 1 where id = 1; end`.execute(db);
      for (const table of ['apps', 'app_domains', 'api_keys', 'client_keys', 'user_tokens']) for (const event of ['insert', 'update', 'delete']) await on(table, event);
      await on('users', 'delete');
    },
  },
  '0013_credential_change_log': {
    async up(db: Kysely<any>) {
      // 0009's counter said only "a credential changed", so every server emptied its whole cache (for every tenant)
      // on each token issued by anyone. Now the counter moves only for changes that can make a cached row stale (a
      // new token, key or application is in no cache), and each such change leaves a row saying what changed, under
      // the counter's new value: a reader that last saw counter n drops exactly what rows n+1.. name. The log keeps
      // the last 4096 changes; a reader further behind finds a gap and empties everything, as before.
      for (const table of ['apps', 'app_domains', 'api_keys', 'client_keys', 'user_tokens']) {
        for (const event of ['insert', 'update', 'delete']) await sql`drop trigger if exists ${sql.raw(`imkit_credentials_${table}_${event}`)}`.execute(db);
      }
      await sql`drop trigger if exists imkit_credentials_users_delete`.execute(db);
      await sql`create table credential_changes (seq integer primary key, kind text not null, app_id text not null, ref text)`.execute(db);
      const on = (table: string, event: string, kind: string, row: 'old' | 'new', app: string, ref: string | null) =>
        sql`create trigger ${sql.raw(`imkit_credential_log_${table}_${event}`)} after ${sql.raw(event)} on ${sql.table(table)}
            begin
              update credential_version set n = n + 1 where id = 1;
              insert into credential_changes (seq, kind, app_id, ref)
                values ((select n from credential_version where id = 1), ${sql.lit(kind)}, ${sql.raw(`${row}.${app}`)}, ${sql.raw(ref === null ? 'null' : `${row}.${ref}`)});
              delete from credential_changes where seq <= (select n from credential_version where id = 1) - 4096;
            end`.execute(db);
      for (const event of ['update', 'delete']) {
        await on('user_tokens', event, 'token', 'old', 'app_id', 'digest');
        await on('api_keys', event, 'api_key', 'old', 'app_id', 'digest');
        await on('client_keys', event, 'client_key', 'old', 'app_id', 'digest');
        await on('apps', event, 'app', 'old', 'id', null);
        await on('app_domains', event, 'domains', 'old', 'app_id', null);
      }
      await on('app_domains', 'insert', 'domains', 'new', 'app_id', null);
      await on('users', 'delete', 'user', 'old', 'app_id', 'id');
    },
  },
};

export function migrationProvider(dialect: Dialect): MigrationProvider {
  const skipped: Migration = { async up() {} };
  return {
    async getMigrations() {
      const pg = Object.entries(postgresOnly).map(([name, m]) => [name, dialect === 'postgres' ? m : skipped] as const);
      const lite = Object.entries(sqliteOnly).map(([name, m]) => [name, dialect === 'sqlite' ? m : skipped] as const);
      return { ...migrations, ...Object.fromEntries(pg), ...Object.fromEntries(lite) };
    },
  };
}
