import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * A thread with a connection of its own to the SQLite file (the writer and the checkpoint threads). Its code is a
 * few lines of CommonJS given as source (`eval`), so that it runs the same from `dist/` and from the TypeScript
 * sources under test; better-sqlite3 is resolved here and passed by path as `workerData.driver`. The thread does
 * not keep the process alive: a server that closes stops it, and the CLI never starts one.
 */
export function startSqliteThread(code: string, workerData: Record<string, unknown>): Worker {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(code, { eval: true, workerData: { ...workerData, driver } });
  worker.unref();
  return worker;
}

/**
 * Asks the thread to stop (`message`); it answers `{ stopped: true }` once it has closed its connection, after what
 * it was sent before. One that does not answer within `graceMs` is terminated.
 */
export function stopSqliteThread(worker: Worker, message: unknown, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => resolve();
    worker.once('exit', done);
    worker.on('message', (m: { stopped?: boolean }) => {
      if (m.stopped) void worker.terminate().then(done, done);
    });
    worker.postMessage(message);
    setTimeout(() => void worker.terminate().then(done, done), graceMs).unref();
  });
}
