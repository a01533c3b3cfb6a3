import net from 'node:net';
import Sqlite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { describe, expect, it } from 'vitest';
import { MessageWriter } from '../src/chat/message-writer.js';
import { atTurnEnd, flushSoon } from '../src/lib/turn-end.js';
import type { Database } from '../src/store/schema.js';

/** Runs `fn` inside the poll phase of a turn of the event loop (a socket's input), as a node's work arrives. */
async function inPollPhase(fn: () => void): Promise<void> {
  const server = net.createServer((socket) =>
    socket.on('data', () => {
      fn();
      socket.end();
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => client.write('go'));
    await new Promise((resolve) => client.on('close', resolve));
  } finally {
    server.close();
  }
}

const turns = (n: number) => new Promise((resolve) => setTimeout(resolve, n * 5));

describe('end of turn stages (lib/turn-end.ts)', () => {
  it('flushes, in the same turn, what the promise continuations of the settle stage hand over', async () => {
    const order: string[] = [];
    await inPollPhase(() => {
      let settled!: () => void;
      const committed = new Promise<void>((resolve) => (settled = resolve));
      // As a stored message is delivered: a few promise hops after its batch settles, a packet is held for the flush.
      void committed
        .then(async () => {
          await Promise.resolve();
          order.push('delivered');
        })
        .then(() => atTurnEnd('flush', () => order.push('written')));
      atTurnEnd('settle', () => {
        order.push('settled');
        settled();
      });
      setTimeout(() => order.push('timer of the next turn'), 0);
      // The timer is due by the next turn's timers phase, which comes before that turn's check phase.
      const due = Date.now() + 3;
      while (Date.now() < due);
    });
    await turns(4);
    expect(order).toEqual(['settled', 'delivered', 'written', 'timer of the next turn']);
  });

  it('runs work added after its stage has run in the next turn, none of it lost, settle before flush', async () => {
    const order: string[] = [];
    await inPollPhase(() => {
      atTurnEnd('flush', () => {
        order.push('flush 1');
        // Queued while the check phase runs: the first thing of the next turn's check phase.
        setImmediate(() => order.push('next turn'));
        // Added once this turn's stages have run: both go to the next turn, in stage order.
        atTurnEnd('flush', () => order.push('flush 2'));
        atTurnEnd('settle', () => order.push('settle 2'));
      });
      atTurnEnd('settle', () => order.push('settle 1'));
    });
    await turns(4);
    expect(order).toEqual(['settle 1', 'flush 1', 'next turn', 'settle 2', 'flush 2']);
  });

  it('flushes in the middle of a turn, once the promise continuations have run, when asked to', async () => {
    const order: string[] = [];
    await inPollPhase(() => {
      setImmediate(() => order.push('end of the turn'));
      let settled!: () => void;
      const committed = new Promise<void>((resolve) => (settled = resolve));
      void committed
        .then(async () => {
          await Promise.resolve();
          await Promise.resolve();
          order.push('delivered');
        })
        .then(() => atTurnEnd('flush', () => order.push('written')));
      // As the message writer does when a batch commits in the poll phase.
      settled();
      flushSoon();
    });
    await turns(4);
    expect(order).toEqual(['delivered', 'written', 'end of the turn']);
  });

  it('the message writer has what a batch committed in the poll phase written before the end of that turn', async () => {
    // Only the statements' text is compiled here; the batch is "committed" by a socket's input, as PostgreSQL's
    // answer or the SQLite thread's message arrives.
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: new Sqlite(':memory:') }) });
    let commit!: () => void;
    const writer = new MessageWriter(db, 'sqlite', () => new Promise<void>((resolve) => (commit = resolve)));
    const order: string[] = [];
    const sent = writer.append({ appId: 'a', roomId: 'r', senderId: 'u', messageType: 'text', message: 'hi', fields: {}, now: Date.now() }).then(async (row) => {
      await Promise.resolve();
      order.push('delivered');
      atTurnEnd('flush', () => order.push('written'));
      return row;
    });
    try {
      // The batch goes to the store at the end of this turn.
      await new Promise((resolve) => setImmediate(resolve));
      await inPollPhase(() => {
        setImmediate(() => order.push('end of the turn'));
        commit();
      });
      expect((await sent).room_id).toBe('r');
      await turns(2);
      expect(order).toEqual(['delivered', 'written', 'end of the turn']);
    } finally {
      await db.destroy();
    }
  });
});
