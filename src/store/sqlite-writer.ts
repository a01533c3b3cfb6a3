import { atTurnEnd } from '../lib/turn-end.js';
import type { PlannedStatement } from './append-repo.js';
import { startSqliteThread, stopSqliteThread } from './sqlite-thread.js';

/**
 * The write half of sending on SQLite, on a thread of its own. better-sqlite3 is synchronous: on the event loop,
 * each group-committed batch of messages (its statements and the commit, a WAL write of every page it touched)
 * held up every socket and request for as long as it took, a fifth to a quarter of a busy server's time. The
 * thread has its own connection to the file and runs each batch as one `BEGIN IMMEDIATE` transaction; the event
 * loop meanwhile reads the next sends, which then form the next batch. The main connection begins its own
 * transactions IMMEDIATE too (store/database.ts), so that neither side can fail on a snapshot the other made
 * stale, and both wait for each other through busy_timeout (the thread's transactions last a millisecond or so).
 * (store/sqlite-thread.ts: how the thread is started and stopped.)
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Sqlite = require(workerData.driver);
const db = new Sqlite(workerData.file);
db.pragma('busy_timeout = 5000');
db.pragma('foreign_keys = ON');
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = ' + workerData.walPages);
// A batch's statements change many rows each, so SQLite keeps a statement journal of the pages they touch (to undo
// one statement alone); past 64 KB it spilled to a temporary file, a pwrite per page: a fifth of this thread's time
// in a CPU profile (perf, 3,500 msg/s). Held in memory, it is never bigger than the pages of one statement.
db.pragma('temp_store = MEMORY');
const begin = db.prepare('BEGIN IMMEDIATE');
const commit = db.prepare('COMMIT');
const rollback = db.prepare('ROLLBACK');
// A few statement shapes only (row counts are powers of two); bounded all the same.
const cache = new Map();
const prepare = (text) => {
  let s = cache.get(text);
  if (!s) {
    s = db.prepare(text);
    if (cache.size >= 500) cache.delete(cache.keys().next().value);
    cache.set(text, s);
  }
  return s;
};
parentPort.on('message', (m) => {
  if (m.stop) {
    db.close();
    parentPort.postMessage({ stopped: true });
    return;
  }
  try {
    begin.run();
    for (const [text, params] of m.statements) prepare(text).run(params);
    commit.run();
    Atomics.store(workerData.done, 0, m.id);
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    try {
      if (db.inTransaction) rollback.run();
    } catch {}
    parentPort.postMessage({ id: m.id, error: { message: String((err && err.message) || err), code: err && err.code } });
  }
});
`;

export interface SqliteWriter {
  /** Runs the statements as one transaction on the writer thread; settles when it committed or rolled back. */
  run(statements: PlannedStatement[]): Promise<void>;
  /**
   * Batches written (`transactions`, and how many of them were settled from the shared counter at the end of a
   * turn rather than by the thread's message: `settledAtTurnEnd`), for monitoring, the bench and tests.
   */
  readonly stats: { transactions: number; failures: number; settledAtTurnEnd: number };
  /** False once the thread has died (or was stopped): the caller writes on its own connection then. */
  readonly alive: boolean;
  /** Waits for the transactions sent so far, then closes the thread's connection. */
  stop(): Promise<void>;
}

export function startSqliteWriter(file: string, walPages: number): SqliteWriter {
  // The id of the last transaction the thread committed, written by the thread before it posts its answer.
  const done = new Int32Array(new SharedArrayBuffer(4));
  const worker = startSqliteThread(WORKER, { file, walPages, done });
  const pending = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>();
  const stats = { transactions: 0, failures: 0, settledAtTurnEnd: 0 };
  let nextId = 1;
  let dead: Error | undefined;
  let stopping: Promise<void> | undefined;
  let pollScheduled = false;
  // A pending batch, removed: each is settled once, from the shared counter or by the thread's message.
  const take = (id: number) => {
    const p = pending.get(id);
    pending.delete(id);
    return p;
  };

  /**
   * The thread's answer is read in the poll phase of the event loop, with the sockets' input. On a busy loop that
   * phase lasts tens of milliseconds, and an answer that comes in while it runs waited for the next one: another
   * whole turn before the batch's messages were delivered. So once per batch sent, at the end of the turn (the
   * `settle` stage of lib/turn-end.ts, just before the coalesced socket writes go out), the shared counter is read;
   * a batch committed by then is settled there, and its messages leave in the same turn. A batch not yet committed
   * is settled by its message as before. Only commits are read this way; failures come as messages.
   */
  const poll = () => {
    pollScheduled = false;
    const p = take(Atomics.load(done, 0));
    if (!p) return;
    stats.transactions++;
    stats.settledAtTurnEnd++;
    p.resolve();
  };

  const failAll = (err: Error) => {
    dead = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.on('message', (m: { id?: number; error?: { message: string; code?: string }; stopped?: boolean }) => {
    if (m.id === undefined) return;
    const p = take(m.id);
    if (!p) return;
    if (m.error) {
      stats.failures++;
      // The same shape as better-sqlite3's own errors, so that callers can tell a constraint from the rest.
      p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
    } else {
      stats.transactions++;
      p.resolve();
    }
  });
  worker.on('error', (err) => failAll(err instanceof Error ? err : new Error(String(err))));
  worker.on('exit', () => failAll(dead ?? new Error('the SQLite writer thread has stopped')));

  return {
    stats,
    get alive() {
      return !dead && !stopping;
    },
    run(statements) {
      if (dead || stopping) return Promise.reject(dead ?? new Error('the SQLite writer thread is stopping'));
      // Ids stay within the shared counter's 32 bits (a batch still pending 2^31 batches later is not a concern).
      const id = nextId;
      nextId = nextId === 0x7fffffff ? 1 : nextId + 1;
      return new Promise<void>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, statements: statements.map((s) => [s.sql, s.params]) });
        if (!pollScheduled) {
          pollScheduled = true;
          atTurnEnd('settle', poll);
        }
      });
    },
    stop() {
      // Messages are handled in order: the transactions posted before this one finish first.
      stopping ??= stopSqliteThread(worker, { stop: true }, 5000);
      return stopping;
    },
  };
}

/**
 * Where a batch goes: to the thread while it runs, else to `fallback` (the event loop's connection), so that a
 * thread that died, or is stopping with the server, loses no batch.
 */
export function viaThread(writer: SqliteWriter, fallback: (statements: PlannedStatement[]) => Promise<void>): (statements: PlannedStatement[]) => Promise<void> {
  return (statements) => (writer.alive ? writer.run(statements) : fallback(statements));
}
