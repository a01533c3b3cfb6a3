import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { atTurnEnd } from '../src/lib/turn-end.js';

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
});
