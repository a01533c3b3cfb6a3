// Counts the SQL statements one Kysely instance sends, its transactions' included (with their BEGIN/COMMIT), by
// wrapping the instance's query executor through Kysely's public executor interface. Needs nothing from the
// server under test, so the same count runs against older builds. (test/sql-count.ts is the tests' copy.)
// Statements a store sends without Kysely (the PostgreSQL message writer's named batches, the SQLite writer
// thread) are not seen; the bench's room changes send none.

const COUNTED = Symbol('counted');
/** What the server runs on timers whatever else happens (batch worker poll, revoked client key check). */
const ON_TIMERS = /"batch_(jobs|items)"|from "client_keys" where "revoked_at"/;

export function statementCounter(db) {
  const sink = { statements: [] };
  wrap(db.getExecutor(), sink);
  return {
    reset() {
      sink.statements.length = 0;
    },
    /** Statements since reset, but the timers'. */
    caused() {
      return sink.statements.filter((q) => !ON_TIMERS.test(q));
    },
  };
}

function wrap(executor, sink) {
  const provide = executor.provideConnection.bind(executor);
  executor.provideConnection = (consumer) =>
    provide((conn) =>
      // A transaction's executor hands out the connection already wrapped: count its statements once.
      conn[COUNTED]
        ? consumer(conn)
        : consumer({
            [COUNTED]: true,
            executeQuery: (q) => {
              sink.statements.push(q.sql);
              return conn.executeQuery(q);
            },
            streamQuery: (q, chunkSize) => {
              sink.statements.push(q.sql);
              return conn.streamQuery(q, chunkSize);
            },
          }),
    );
  for (const m of ['withConnectionProvider', 'withPlugin', 'withPlugins', 'withPluginAtFront', 'withoutPlugins']) {
    const orig = executor[m].bind(executor);
    executor[m] = (...args) => wrap(orig(...args), sink);
  }
  return executor;
}
