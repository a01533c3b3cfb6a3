/**
 * Work done at the end of a turn of the event loop (its check phase, where `setImmediate` callbacks run), in two
 * stages: `settle` (the SQLite writer reading which batches its thread has committed) and then `flush` (the
 * coalesced socket writes of realtime/coalesce.ts).
 *
 * Why two stages in two immediates: a `setImmediate` queued while the check phase runs goes to the next turn.
 * A committed batch settled in one immediate starts promise continuations that deliver its messages, and those
 * hand their packets to the coalescer; with one immediate per module the flush of those packets was queued from
 * inside the check phase and waited for the whole next turn, including a poll phase that on a busy node reads
 * and handles tens of milliseconds of input. Node runs the promise continuations queued by one immediate before
 * the next immediate, so a `flush` immediate queued right after the `settle` one writes them in the same turn.
 *
 * Work added for a stage whose immediate has run already (a batch sent while the check phase runs, packets held
 * after the flush) goes to the next turn's pair. No immediate is queued while both stages are empty, so an idle
 * node still sleeps in its poll phase.
 */
type Stage = 'settle' | 'flush';

const work: Record<Stage, Array<() => void>> = { settle: [], flush: [] };
let armed = false;

function run(stage: Stage): void {
  const due = work[stage];
  work[stage] = [];
  for (const fn of due) fn();
}

function flushStage(): void {
  armed = false;
  try {
    run('flush');
  } finally {
    if (work.settle.length > 0 || work.flush.length > 0) arm();
  }
}

function arm(): void {
  if (armed) return;
  armed = true;
  setImmediate(run, 'settle');
  setImmediate(flushStage);
}

let soon = false;
const flushNow = () => {
  soon = false;
  run('flush');
};

/**
 * Runs the flush stage before the end of the turn, once the promise continuations started so far have run: for
 * work that completes in the middle of a turn's poll phase (a batch answered by the writer thread's message, a
 * PostgreSQL commit). What it starts is then written at once, instead of after the rest of a poll phase that on a
 * busy node lasts tens of milliseconds. A `process.nextTick` queued from a microtask runs once the microtask queue
 * is empty, including the microtasks queued meanwhile; anything held after it goes out at the end of the turn.
 */
export function flushSoon(): void {
  if (soon) return;
  soon = true;
  queueMicrotask(() => process.nextTick(flushNow));
}

/** Runs `fn` once at the end of the current turn (or the next one, see above), in the given stage. */
export function atTurnEnd(stage: Stage, fn: () => void): void {
  work[stage].push(fn);
  arm();
}
