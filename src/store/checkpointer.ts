import { startSqliteThread, stopSqliteThread } from './sqlite-thread.js';

/**
 * WAL checkpoints for the server's SQLite file, on a thread of their own. A checkpoint copies the pages the WAL
 * holds back into the database file and syncs it; left to SQLite's automatic checkpoint, that work runs inside
 * whichever commit crosses the threshold, on the event loop, and blocks a batch of sends for several milliseconds.
 * The thread opens its own connection and runs a PASSIVE checkpoint (which never waits for, nor blocks, readers
 * and writers) as long as there is something to copy, then every `idleMs`. The server's own connection keeps an
 * automatic checkpoint at a higher threshold, so the WAL stays bounded even if this thread falls behind: that one
 * copies only what is left and lets the next write start the WAL over.
 * (store/sqlite-thread.ts: how the thread is started and stopped.)
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Sqlite = require(workerData.driver);
const db = new Sqlite(workerData.file);
db.pragma('busy_timeout = 100');
db.pragma('synchronous = NORMAL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let timer;
let stopped = false;
// log: frames in the WAL; checkpointed: how many of them are in the database file now (both -1 when busy).
const tick = () => {
  let behind = false;
  try {
    const r = checkpoint.get();
    behind = r.busy !== 0 || r.checkpointed < r.log;
    parentPort.postMessage({ log: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
  // Writes that arrived during the pass are copied soon; a WAL that is all copied is looked at again later.
  if (!stopped) timer = setTimeout(tick, behind ? workerData.busyMs : workerData.idleMs);
};
timer = setTimeout(tick, workerData.idleMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  stopped = true;
  clearTimeout(timer);
  db.close();
  parentPort.postMessage({ stopped: true });
});
`;

export interface Checkpointer {
  /**
   * Checkpoints run so far, and after the last one the frames in the WAL and how many of them are copied (the WAL
   * starts over from its beginning once a write finds it all copied), for monitoring and tests.
   */
  readonly stats: { runs: number; walFrames: number; copiedFrames: number; errors: number; lastError?: string };
  stop(): Promise<void>;
}

export function startCheckpointer(file: string, opts: { idleMs?: number; busyMs?: number } = {}): Checkpointer {
  const worker = startSqliteThread(WORKER, { file, idleMs: opts.idleMs ?? 100, busyMs: opts.busyMs ?? 10 });
  const stats: Checkpointer['stats'] = { runs: 0, walFrames: 0, copiedFrames: 0, errors: 0 };
  let stopping: Promise<void> | undefined;
  worker.on('message', (m: { log?: number; checkpointed?: number; error?: string }) => {
    if (m.error !== undefined) {
      stats.errors++;
      stats.lastError = m.error;
    } else if (m.log !== undefined && m.checkpointed !== undefined) {
      stats.runs++;
      stats.walFrames = m.log;
      stats.copiedFrames = m.checkpointed;
    }
  });
  // A thread that dies leaves checkpoints to the connection's own threshold; nothing else depends on it.
  worker.on('error', (err) => {
    stats.errors++;
    stats.lastError = String(err);
  });
  return {
    stats,
    stop() {
      stopping ??= stopSqliteThread(worker, 'stop', 1000);
      return stopping;
    },
  };
}
