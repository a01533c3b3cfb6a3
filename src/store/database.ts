import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Sqlite from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import type { Config } from '../config.js';
import { compileRe2 } from '../lib/re2.js';
import { type ExternalWrites, type WatchOptions, watchPostgres, watchSqlite } from './external-writes.js';
import type { PlannedStatement } from './append-repo.js';
import { type Checkpointer, startCheckpointer } from './checkpointer.js';
import { type SqliteWriter, startSqliteWriter, viaThread } from './sqlite-writer.js';
import { migrationProvider } from './migrations/index.js';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Store {
  db: Kysely<Database>;
  dialect: Dialect;
  /** Where the data lives, for start-up messages; never contains a password. */
  describe: string;
  /**
   * Applies the migrations this version has and the store lacks. Answers the migrations the store has that this
   * version does not know (a newer version migrated it, during a rolling upgrade): empty in the usual case.
   */
  migrate(): Promise<string[]>;
  /**
   * Starts noticing changes committed by other processes (see external-writes.ts); the caller closes what it
   * gets back before closing the store.
   */
  watchExternalWrites(opts: WatchOptions): ExternalWrites;
  /**
   * Starts what a long-running server does besides answering: on SQLite, the writer thread for users' messages and
   * checkpoints on a thread of their own. The CLI does not.
   */
  startBackgroundWork(): void;
  /** What that background work has done, for monitoring and tests. */
  background(): { checkpoints?: Checkpointer['stats']; writer?: SqliteWriter['stats'] };
  /**
   * Runs a batch's statements as one transaction the fastest way this store has: on SQLite away from the event
   * loop (the writer thread, once started and while it runs; else on this connection), on PostgreSQL as named
   * prepared statements. The message writer's batches go there.
   */
  runBatch(statements: PlannedStatement[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * The WAL size (pages) at which a commit of the server's connection checkpoints by itself (SQLite's default is
 * 1,000, about 4 MB). Under a steady stream of writes the WAL is rarely all copied at the moment a write begins, so
 * it only starts over when this threshold is reached: that commit copies the few frames the thread had not yet
 * copied, and the WAL file stays under about 16 MB.
 */
const WAL_SAFETY_PAGES = 4_000;

export const SQLITE_FILE = 'imkit.sqlite';

/** Opens the store chosen by the config: PostgreSQL when DATABASE_URL is set, else SQLite in the data dir. */
export function openStore(config: Pick<Config, 'databaseUrl' | 'databaseSchema' | 'dataDir'> & Partial<Pick<Config, 'statementTimeoutMs'>>): Store {
  return config.databaseUrl ? openPostgres(config.databaseUrl, config.databaseSchema, config.statementTimeoutMs ?? 0) : openSqlite(config.dataDir);
}

function openSqlite(dataDir: string): Store {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, SQLITE_FILE);
  const conn = new Sqlite(file);
  // WAL lets the CLI read and write while the server runs; busy_timeout makes the two wait for each other.
  conn.pragma('journal_mode = WAL');
  conn.pragma('busy_timeout = 5000');
  conn.pragma('foreign_keys = ON');
  conn.pragma('synchronous = NORMAL');
  // SQLite has no regular expressions of its own; the user query compiler (store/user-query.ts) calls this.
  conn.function('imkit_regexp', { deterministic: true }, imkitRegexp);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(conn) }) });
  let checkpointer: Checkpointer | undefined;
  let writer: SqliteWriter | undefined;
  // Batches before the writer thread starts, or after it died or stopped, are written on this connection.
  const onMain = (statements: PlannedStatement[]) =>
    db.transaction().execute(async (trx) => {
      for (const st of statements) await trx.executeQuery(CompiledQuery.raw(st.sql, st.params));
    });
  let runBatch = onMain;
  return {
    db,
    dialect: 'sqlite',
    describe: `SQLite ${file}`,
    migrate: () => runMigrations(db, 'sqlite'),
    watchExternalWrites: (opts) => watchSqlite(conn, db, opts),
    startBackgroundWork() {
      if (checkpointer) return;
      // Checkpoints move to a thread of their own (store/checkpointer.ts); this threshold is the safety net, on
      // both connections that write.
      conn.pragma(`wal_autocheckpoint = ${WAL_SAFETY_PAGES}`);
      checkpointer = startCheckpointer(file);
      writer = startSqliteWriter(file, WAL_SAFETY_PAGES);
      runBatch = viaThread(writer, onMain);
    },
    background: () => (checkpointer ? { checkpoints: { ...checkpointer.stats }, writer: { ...writer!.stats } } : {}),
    runBatch: (statements) => runBatch(statements),
    close: async () => {
      await writer?.stop();
      await checkpointer?.stop();
      await db.destroy();
    },
  };
}

/**
 * PostgreSQL: a batch's statements (usually one function call per application, see AppendRepo) on a client of the
 * pool, each as a named prepared statement, in one transaction when there are several. Kysely sends every query
 * unnamed, so PostgreSQL parses and plans it on every run; named, it is parsed once per connection and planned once
 * where a generic plan serves (measured in the REST send bench: PostgreSQL's own CPU fell from 48% to 39% of the
 * machine while throughput rose by a fifth or more). The name is derived from the text, so every connection gives
 * the same statement the same name.
 */
async function runNamed(pool: pg.Pool, statements: PlannedStatement[]): Promise<void> {
  // A deadlock or serialization failure rolled the whole transaction back, so running it again is safe. Batches
  // lock their rooms in one order (migration 0028); another transaction that locks a member row and then its room
  // can still meet one, and PostgreSQL then aborts one of the two: the batch is retried rather than its sends failed.
  for (let attempt = 1; ; attempt++) {
    try {
      return await runNamedOnce(pool, statements);
    } catch (err) {
      const code = (err as { code?: unknown })?.code;
      if (attempt >= BATCH_ATTEMPTS || (code !== '40P01' && code !== '40001')) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
    }
  }
}

const BATCH_ATTEMPTS = 4;

async function runNamedOnce(pool: pg.Pool, statements: PlannedStatement[]): Promise<void> {
  const client = await pool.connect();
  let broken: unknown;
  try {
    // One statement is a transaction of its own (a batch of one application: one function call, append-repo.ts).
    if (statements.length === 1) {
      const st = statements[0]!;
      await client.query({ name: statementName(st.sql), text: st.sql, values: st.params });
      return;
    }
    await client.query('begin');
    try {
      for (const st of statements) await client.query({ name: statementName(st.sql), text: st.sql, values: st.params });
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch((e: unknown) => (broken = e));
      throw err;
    }
  } finally {
    // A client whose rollback failed is in an unknown state: the pool drops it instead of reusing it.
    client.release(broken instanceof Error ? broken : undefined);
  }
}

const statementNames = new Map<string, string>();

function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `imkit_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (statementNames.size >= 500) statementNames.delete(statementNames.keys().next().value!);
    statementNames.set(text, name);
  }
  return name;
}

/**
 * imkit_regexp(pattern, flags, value): 1 when the RE2 pattern (flags '' or 'i') matches somewhere in the text value,
 * else 0 (NULL -> 0). RE2, not V8: the pattern comes from a user and runs on the event loop (lib/re2.ts).
 */
function imkitRegexp(pattern: unknown, flags: unknown, value: unknown): number {
  if (typeof value !== 'string') return 0;
  return compileRe2(String(pattern), String(flags)).test(value) ? 1 : 0;
}

/** BIGINT (epoch ms) comes back as a JS number, as it does from SQLite. */
const PG_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * statementTimeoutMs (0 = none) bounds every statement of the pool's connections: one tenant's slow query (a
 * regular expression over many rows, say) is cancelled by the server (error 57014, answered 503) instead of
 * holding a connection, and the database's CPU, for as long as it likes. Migrations run on a pool of their own
 * without it: an index build on a big table may rightly take longer.
 */
function openPostgres(url: string, schema: string | undefined, statementTimeoutMs: number): Store {
  const session = { connectionString: url, ...(schema ? { options: `-c search_path=${schema}` } : {}) };
  const pool = new pg.Pool({
    ...session,
    max: 10,
    // Sent when each connection starts, so it holds for every statement on it.
    ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
    types: PG_TYPES,
  });
  // An idle client losing its connection must not crash the process; the pool replaces it. A client in use (a
  // transaction between two statements) reports the loss as an 'error' event too, which pg-pool does not listen to
  // while the client is out: without a listener of its own it ended the process when PostgreSQL stopped (found by
  // the cluster test). The statement that uses the client next fails, and is answered 503.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const where = new URL(url);
  return {
    db,
    dialect: 'postgres',
    describe: `PostgreSQL ${where.hostname}:${where.port || 5432}${where.pathname}${schema ? ` schema ${schema}` : ''}`,
    migrate: async () => {
      const migrationPool = new pg.Pool({ ...session, max: 1, types: PG_TYPES });
      migrationPool.on('error', () => {});
      migrationPool.on('connect', (client) => client.on('error', () => {}));
      const migrationDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: migrationPool }) });
      try {
        if (schema) await sql`create schema if not exists ${sql.id(schema)}`.execute(migrationDb);
        return await runMigrations(migrationDb, 'postgres', schema);
      } finally {
        await migrationDb.destroy();
      }
    },
    watchExternalWrites: (opts) => watchPostgres(session, schema, opts),
    startBackgroundWork() {},
    background: () => ({}),
    runBatch: (statements) => runNamed(pool, statements),
    close: () => db.destroy(),
  };
}

/**
 * Kysely's SQLite driver prepares every query anew, and preparing costs more than running a small query. The
 * SQL text of a Kysely query is the same for every call with the same shape (values are bound), so prepared
 * statements are kept per SQL text. A bounded map: shapes built from variable-length lists (IN (?, ?, ...)) vary.
 */
function withStatementCache(conn: Sqlite.Database): Sqlite.Database {
  const cache = new Map<string, Sqlite.Statement>();
  const prepare = conn.prepare.bind(conn);
  return new Proxy(conn, {
    get(target, prop, receiver) {
      if (prop !== 'prepare') return Reflect.get(target, prop, receiver);
      return (text: string) => {
        // Transactions take the write lock when they begin: another connection of this process (the writer
        // thread) commits all the time, and a deferred transaction that read before it and writes after it
        // would fail on a stale snapshot (SQLITE_BUSY_SNAPSHOT, which busy_timeout does not wait out).
        const sqlText = text === 'begin' ? 'begin immediate' : text;
        let stmt = cache.get(sqlText);
        if (!stmt) {
          stmt = prepare(sqlText);
          if (cache.size >= 500) cache.delete(cache.keys().next().value!);
          cache.set(sqlText, stmt);
        }
        return stmt;
      };
    },
  });
}

/**
 * What `imkit-server doctor` says of the migrations: those this version would apply, those applied, and those
 * applied that this version does not know (the store was migrated by a newer version).
 */
export async function migrationState(store: Store, schema?: string): Promise<{ pending: string[]; applied: string[]; unknown: string[] }> {
  const { pending, applied, unknown } = await stateOf(store.db, store.dialect, schema);
  return { pending, applied, unknown };
}

/** The migrations this version has and which of them the store lacks, and what the store has that this version does not know. */
async function stateOf(db: Kysely<Database>, dialect: Dialect, schema?: string): Promise<{ migrator: Migrator; pending: string[]; applied: string[]; unknown: string[] }> {
  // With a schema of our own, the bookkeeping tables go there too: Kysely would otherwise see another schema's
  // kysely_migration tables through introspection and skip creating ours.
  const migrator = new Migrator({ db, provider: migrationProvider(dialect), ...(schema ? { migrationTableSchema: schema } : {}) });
  const provided = await migrator.getMigrations();
  const names = new Set(provided.map((m) => m.name));
  const applied = await sql<{ name: string }>`select name from ${sql.table(schema ? `${schema}.kysely_migration` : 'kysely_migration')}`.execute(db).then(
    (r) => r.rows.map((x) => x.name),
    () => [] as string[],
  );
  return { migrator, pending: provided.filter((m) => m.executedAt === undefined).map((m) => m.name), applied, unknown: applied.filter((n) => !names.has(n)) };
}

async function runMigrations(db: Kysely<Database>, dialect: Dialect, schema?: string): Promise<string[]> {
  // A rolling upgrade (docs/deploy.md): a node of the older version that restarts after a newer one migrated the store
  // finds migrations it does not know. Migrations only add (new tables, nullable or defaulted columns), so it runs
  // with them, as long as it has nothing of its own left to apply; Kysely's migrator would refuse outright.
  const { migrator, pending, unknown: newer } = await stateOf(db, dialect, schema);
  if (newer.length > 0) {
    if (pending.length === 0) return newer;
    throw new Error(`the store was migrated by a newer version (${newer.join(', ')}), and this version would still apply ${pending.join(', ')}: run the newer version`);
  }
  let { error, results } = await migrator.migrateToLatest();
  // Kysely's migrator looks for its own table by listing every table of every schema the role may use; a schema
  // dropped by someone else during that listing fails it with "schema ... does not exist" (3F000), though nothing
  // of ours is wrong (seen with many test schemas created and dropped at once). Such a failure is tried again.
  for (let attempt = 1; attempt < 5 && error && (error as { code?: string }).code === '3F000'; attempt++) {
    await new Promise((r) => setTimeout(r, 50 * attempt));
    ({ error, results } = await migrator.migrateToLatest());
  }
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${(error as Error).message ?? String(error)}`);
  }
  return [];
}

/** True when an insert failed on a unique or primary key, on either dialect. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE';
}
