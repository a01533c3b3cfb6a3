import type { Kysely } from 'kysely';

/**
 * Records the SQL text of every statement a Kysely instance sends, the ones inside its transactions included
 * (and their BEGIN/COMMIT). It wraps the instance's query executor through Kysely's public executor interface
 * (`provideConnection`, `withConnectionProvider`), so it sees only this store's statements even with several
 * servers in one process, and needs nothing from the server under test. Statements a store sends without Kysely
 * (the PostgreSQL message writer's named batches, the SQLite writer thread) are not seen.
 */
export interface StatementLog {
  /** Every statement since `reset`, in order. */
  readonly statements: string[];
  reset(): void;
  /** The statements since `reset` whose text starts with `prefix` (case-insensitive). */
  matching(prefix: string): string[];
  /**
   * The statements since `reset` but those the server runs on timers whatever else happens (the batch worker's
   * poll, the webhook dispatcher's and its look at which applications have push credentials, the socket layer's
   * check for revoked client keys, the monitoring writers): what a request and its
   * events cost. (A change's own outbox rows, `insert into "webhook_events"`, are counted.)
   */
  caused(): string[];
}

// The monitoring writers too: API key usage, the audit log, key addresses and alerts are written by timers every
// few seconds, whichever request caused them (a join measured on Node 24 once counted a usage flush).
// PostgreSQL's claims (FOR UPDATE SKIP LOCKED) are written as raw SQL with unquoted names: a name matches either way.
const ON_TIMERS = /\bbatch_(jobs|items)\b|from "client_keys" where "revoked_at"|from "?webhook_events\b|\bwebhook_deliveries\b|^select distinct .* from "push_credentials"|\bapi_key_usage\b|\baudit_log\b|\bapi_key_addresses\b|\bkey_alerts\b|\bleases\b/;

const COUNTED = Symbol('counted');
const logs = new WeakMap<object, { statements: string[] }>();

export function statementLog(db: Kysely<any>): StatementLog {
  const executor = db.getExecutor() as any;
  let sink = logs.get(executor);
  if (!sink) {
    sink = { statements: [] };
    logs.set(executor, sink);
    wrap(executor, sink);
  }
  const s = sink;
  return {
    get statements() {
      return s.statements;
    },
    reset() {
      s.statements.length = 0;
    },
    caused() {
      return s.statements.filter((q) => !ON_TIMERS.test(q));
    },
    matching(prefix: string) {
      return s.statements.filter((q) => q.trimStart().toLowerCase().startsWith(prefix.toLowerCase()));
    },
  };
}

function wrap(executor: any, sink: { statements: string[] }): any {
  const provide = executor.provideConnection.bind(executor);
  executor.provideConnection = (consumer: (c: unknown) => Promise<unknown>) =>
    // A transaction's executor hands out the connection already wrapped: count its statements once.
    provide((conn: any) =>
      conn[COUNTED] ? consumer(conn) : consumer({
        [COUNTED]: true,
        executeQuery: (q: { sql: string }) => {
          sink.statements.push(q.sql);
          return conn.executeQuery(q);
        },
        streamQuery: (q: { sql: string }, chunkSize?: number) => {
          sink.statements.push(q.sql);
          return conn.streamQuery(q, chunkSize);
        },
      }),
    );
  // Transactions and plugin variants run on new executors made from this one.
  for (const m of ['withConnectionProvider', 'withPlugin', 'withPlugins', 'withPluginAtFront', 'withoutPlugins']) {
    const orig = executor[m].bind(executor);
    executor[m] = (...args: unknown[]) => wrap(orig(...args), sink);
  }
  return executor;
}
