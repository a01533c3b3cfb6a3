import type Sqlite from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import { CREDENTIALS_CHANNEL } from './migrations/index.js';

/**
 * How this process learns that another process (the CLI, later another server node) committed a change, for
 * code that keeps store data in memory. SQLite reports any commit made by another connection to the file;
 * Postgres reports the credential rows that commits changed (the triggers of migration 0012).
 */
export interface ExternalWrites {
  /**
   * False while a change made elsewhere could go unnoticed (Postgres: the LISTEN connection is not up); what was
   * kept in memory must not be used then.
   */
  readonly reliable: boolean;
  /**
   * Reports to `onChange` the changes other processes committed before this call. Returns undefined when that is
   * done (the usual case, synchronous and about a microsecond), else a promise to await first.
   */
  check(): Promise<void> | undefined;
  /** Settles once the first attempt to start watching ended, well or not (Postgres keeps retrying in the background). */
  readonly started: Promise<void>;
  close(): Promise<void>;
}

/**
 * One changed credential row, as the store's triggers describe it (migrations 0012 and 0013): a user token, API key
 * or client key by digest (`ref`), an application, the domains of an application, or a deleted user (`ref` is the
 * user id). Only changes that can make a cached row stale are reported: updates and deletes, and domains added.
 */
export interface CredentialChange {
  kind: 'token' | 'api_key' | 'client_key' | 'app' | 'domains' | 'user';
  appId: string;
  ref: string | null;
}

const KINDS: ReadonlySet<string> = new Set(['token', 'api_key', 'client_key', 'app', 'domains', 'user']);

/** A change as a trigger wrote it, or undefined when it is not one (then the caller assumes anything changed). */
export function credentialChange(kind: unknown, appId: unknown, ref: unknown): CredentialChange | undefined {
  if (typeof kind !== 'string' || !KINDS.has(kind) || typeof appId !== 'string') return undefined;
  if (ref !== null && typeof ref !== 'string') return undefined;
  return { kind: kind as CredentialChange['kind'], appId, ref };
}

export interface WatchOptions {
  /**
   * Called when another process changed credentials: with the changed rows when the store said which, with
   * undefined when anything may have changed (when watching resumes after a gap, or a reader fell too far behind).
   */
  onChange(changes?: readonly CredentialChange[]): void;
  /** Called when watching stops working or works again (Postgres: the LISTEN connection was lost or came back). */
  onStatus?(reliable: boolean, err?: unknown): void;
}

/**
 * SQLite: `PRAGMA data_version` changes when another connection commits to the file, never for this connection's
 * own commits. Another connection is also the server's own writer thread, which commits every batch of messages,
 * so a changed version is only a hint: a change is reported when the credential counter moved too. Triggers
 * (migration 0013) raise that counter for every change that can make a cached credential stale and log each such
 * change under the counter's new value, so the reader fetches the rows after the value it saw last and reports
 * exactly those; when some were already pruned (the log keeps 4096), it reports "anything may have changed".
 * Both are read on the raw connection, outside Kysely's connection mutex: harmless inside an open transaction, but
 * there they answer from the transaction's snapshot, which may predate the other process's commit. So while this
 * process holds a transaction open, they go through Kysely and wait for it to end, exactly as the store reads they
 * replace would have waited.
 */
const CREDENTIAL_COUNT = 'select n from credential_version where id = 1';
const CHANGES_SINCE = 'select seq, kind, app_id, ref from credential_changes where seq > ? order by seq';

interface LoggedChange {
  seq: number;
  kind: string;
  app_id: string;
  ref: string | null;
}

export function watchSqlite(conn: Sqlite.Database, db: Kysely<any>, opts: WatchOptions): ExternalWrites {
  const version = conn.prepare('PRAGMA data_version').pluck();
  const counter = conn.prepare(CREDENTIAL_COUNT).pluck();
  const since = conn.prepare(CHANGES_SINCE);
  let lastVersion = version.get() as number;
  let lastCount = counter.get() as number;
  const report = (from: number, to: number, rows: LoggedChange[]) => {
    const changes = rows.map((r) => credentialChange(r.kind, r.app_id, r.ref));
    const complete = rows.length === to - from && Number(rows[0]?.seq) === from + 1 && changes.every((c) => c !== undefined);
    opts.onChange(complete ? (changes as CredentialChange[]) : undefined);
  };
  const seen = (v: number, count: () => number | Promise<number>, changes: (after: number) => LoggedChange[] | Promise<LoggedChange[]>): Promise<void> | undefined => {
    if (v === lastVersion) return undefined;
    lastVersion = v;
    const compare = (n: number): Promise<void> | undefined => {
      if (n === lastCount) return undefined;
      const from = lastCount;
      lastCount = n;
      const rows = changes(from);
      if (Array.isArray(rows)) return void report(from, n, rows.filter((r) => Number(r.seq) <= n));
      return rows.then((r) => report(from, n, r.filter((x) => Number(x.seq) <= n)));
    };
    const n = count();
    if (typeof n === 'number') return compare(n);
    return n.then(compare);
  };
  // A check that has to wait (inside a transaction) has already taken the new version and counter as seen: a check
  // made meanwhile must wait for it too, or it would find nothing new and go on before the drops are applied.
  let pending: Promise<void> | undefined;
  const settle = (p: Promise<void> | undefined): Promise<void> | undefined => {
    if (p === undefined) return undefined;
    const entry: Promise<void> = p.finally(() => {
      if (pending === entry) pending = undefined;
    });
    pending = entry;
    return entry;
  };
  return {
    reliable: true,
    started: Promise.resolve(),
    check() {
      if (pending) return pending;
      return settle(checkNow());
    },
    close: async () => {},
  };

  function checkNow(): Promise<void> | undefined {
    if (!conn.inTransaction) return seen(version.get() as number, () => counter.get() as number, (after) => since.all(after) as LoggedChange[]);
    return sql<{ data_version: number }>`pragma data_version`.execute(db).then((r) =>
      seen(
        Number(r.rows[0]!.data_version),
        async () => Number((await sql.raw<{ n: number }>(CREDENTIAL_COUNT).execute(db)).rows[0]!.n),
        async (after) => (await sql<LoggedChange>`select seq, kind, app_id, ref from credential_changes where seq > ${after} order by seq`.execute(db)).rows,
      ),
    );
  }
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;
const HEARTBEAT_MS = 15_000;

/**
 * Postgres: a dedicated client (outside the pool) that LISTENs on CREDENTIALS_CHANNEL and reports the
 * notifications about its own schema. Unreliable until LISTEN is in place; when the connection is lost it
 * reconnects in the background, and reports a change on every (re)start since notifications sent meanwhile
 * were lost. A heartbeat query notices a connection that died silently.
 */
export function watchPostgres(clientConfig: pg.ClientConfig, schema: string | undefined, opts: WatchOptions): ExternalWrites {
  return new PgWatch(clientConfig, schema, opts);
}

/**
 * A notification of migration 0012: JSON [schema, kind, application, ref]. A payload that is only a schema name (the
 * format of migration 0007) or names an unknown kind is "anything of that schema may have changed".
 */
function parseNotification(payload: string | undefined): { schema: string; change: CredentialChange | undefined } | undefined {
  if (payload === undefined) return undefined;
  if (!payload.startsWith('[')) return { schema: payload, change: undefined };
  try {
    const v: unknown = JSON.parse(payload);
    if (!Array.isArray(v) || typeof v[0] !== 'string') return undefined;
    return { schema: v[0], change: credentialChange(v[1], v[2], v[3]) };
  } catch {
    return undefined;
  }
}

/** The application_name of the LISTEN connection (Postgres keeps its first 63 bytes). */
export function listenerName(schema: string | undefined): string {
  return `imkit-listen:${schema ?? ''}`;
}

class PgWatch implements ExternalWrites {
  reliable = false;
  readonly started: Promise<void>;
  private client: pg.Client | undefined;
  /** The schema whose notifications count: the configured one, else the listening session's current_schema(). */
  private schema: string | undefined;
  private closed = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  /** Whether "not watching" was already reported, so a long outage is reported once. */
  private reportedDown = false;

  constructor(
    private readonly clientConfig: pg.ClientConfig,
    private readonly configuredSchema: string | undefined,
    private readonly opts: WatchOptions,
  ) {
    this.started = this.connect();
  }

  check(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.reliable = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      ...this.clientConfig,
      // Shows in pg_stat_activity which installation's listener this is.
      application_name: listenerName(this.configuredSchema),
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      query_timeout: 10_000,
    });
    this.client = client;
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('LISTEN connection ended')));
    client.on('notification', (n) => {
      if (client !== this.client || n.channel !== CREDENTIALS_CHANNEL) return;
      const parsed = parseNotification(n.payload);
      if (!parsed || parsed.schema !== this.schema) return;
      this.opts.onChange(parsed.change ? [parsed.change] : undefined);
    });
    try {
      await client.connect();
      const schema = this.configuredSchema ?? ((await client.query<{ s: string }>('select current_schema() as s')).rows[0]?.s);
      await client.query(`listen ${CREDENTIALS_CHANNEL}`);
      if (client !== this.client) return; // closed or lost meanwhile
      this.schema = schema;
      // Changes committed before LISTEN took effect were announced to nobody.
      this.opts.onChange();
      this.reliable = true;
      this.retryMs = RETRY_MIN_MS;
      if (this.reportedDown) this.opts.onStatus?.(true);
      this.reportedDown = false;
      this.heartbeat = setInterval(() => {
        client.query('select 1').catch((err: unknown) => this.lost(client, err));
      }, HEARTBEAT_MS);
      this.heartbeat.unref();
    } catch (err) {
      this.lost(client, err);
    }
  }

  private lost(client: pg.Client, err: unknown): void {
    if (client !== this.client) return;
    this.client = undefined;
    this.reliable = false;
    clearInterval(this.heartbeat);
    client.end().catch(() => {});
    if (this.closed) return;
    // Whatever was kept while listening may miss the changes of the gap.
    this.opts.onChange();
    if (!this.reportedDown) this.opts.onStatus?.(false, err);
    this.reportedDown = true;
    this.retryTimer = setTimeout(() => void this.connect(), this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }
}
