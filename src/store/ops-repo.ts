import Sqlite from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/** What `imkit-server doctor` and `restore` ask of a store (docs/operations.md). */
export class OpsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  /** Throws when the store cannot answer. */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  /** PostgreSQL: whether the current schema holds imkit-server's tables (its migration table). */
  async hasTablesPostgres(): Promise<boolean> {
    const r = await sql<{ n: number }>`select count(*)::int as n from information_schema.tables where table_name = 'kysely_migration' and table_schema = current_schema()`.execute(this.db);
    return (r.rows[0]?.n ?? 0) > 0;
  }

  /** PostgreSQL's clock (epoch ms). */
  async clockPostgres(): Promise<number> {
    const r = await sql<{ ms: string }>`select (extract(epoch from clock_timestamp()) * 1000)::bigint as ms`.execute(this.db);
    return Number(r.rows[0]!.ms);
  }

  /** The greatest message id stored, if any. */
  async newestMessageId(): Promise<string | undefined> {
    const row = await this.db.selectFrom('messages').select('id').orderBy('id', 'desc').limit(1).executeTakeFirst();
    return row?.id;
  }
}

/**
 * SQLite's online backup API, from a running server's file to `target`: after a first step the rest in one step (one
 * read transaction, a consistent snapshot that a write of the server cannot make start over), then out of WAL mode,
 * so the backup is one self-contained file (the server turns WAL back on when it opens it).
 */
export async function backupSqliteFile(file: string, target: string): Promise<void> {
  const source = new Sqlite(file, { readonly: true, fileMustExist: true });
  source.pragma('busy_timeout = 5000');
  try {
    await source.backup(target, { progress: ({ remainingPages }) => Math.max(remainingPages, 100) });
  } finally {
    source.close();
  }
  const copy = new Sqlite(target);
  copy.pragma('journal_mode = DELETE');
  copy.close();
}

/** What a file holds, if it is an imkit-server SQLite database: its migrations and messages, or what is wrong. */
export function inspectSqlite(file: string): { problem?: string; migrations: number; messages: number } {
  let db: Sqlite.Database | undefined;
  try {
    db = new Sqlite(file, { readonly: true, fileMustExist: true });
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') return { problem: `integrity_check says ${String(integrity)}`, migrations: 0, messages: 0 };
    const migrations = (db.prepare("select count(*) as n from sqlite_master where type = 'table' and name = 'kysely_migration'").get() as { n: number }).n
      ? (db.prepare('select count(*) as n from kysely_migration').get() as { n: number }).n
      : 0;
    if (migrations === 0) return { problem: 'it is not an imkit-server database (no migrations recorded)', migrations: 0, messages: 0 };
    const messages = (db.prepare('select count(*) as n from messages').get() as { n: number }).n;
    return { migrations, messages };
  } catch (err) {
    return { problem: (err as Error).message, migrations: 0, messages: 0 };
  } finally {
    db?.close();
  }
}
