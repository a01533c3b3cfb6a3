import type { Server } from 'socket.io';
import { atTurnEnd } from '../lib/turn-end.js';

/**
 * One write per socket per turn of the event loop, for the WebSocket transport.
 *
 * engine.io's WebSocket transport writes each packet as a frame of its own, and `ws` turns every frame into a
 * system call; a packet that arrives while the previous write is in flight waits and goes out with the others in
 * the next flush, again a call per frame. On a busy node those calls were the largest single cost of fan-out (half
 * of the event loop's time, about 10 µs each on loopback), and every one is also a TCP segment that the client has
 * to read. The sender of a message, for one, gets its ack and its own copy of the message in the same turn.
 *
 * So the packets a transport is given during one turn are held until the end of that turn (the `flush` stage of
 * lib/turn-end.ts, after the SQLite writer has settled what its thread committed; earlier when a committed batch
 * asks for it, `flushSoon`) and then written with the TCP socket corked: one `writev`, mostly one segment. The
 * frames, their order and the protocol are unchanged; only segment boundaries move, by at most the rest of the
 * current turn. A transport that closes writes what it holds first (a DISCONNECT packet is sent just before the
 * close). Neither engine.io nor ws offers this, so it wraps two methods of each WebSocket transport, when a
 * connection opens on or upgrades to WebSocket.
 */
export function coalesceWebSocketWrites(io: Server, limits: { maxBufferedBytes?: number; onOverflow?: (bytes: number) => void } = {}): void {
  // The flushes of the transports holding packets this turn; one call at the end of the turn runs them all.
  const held = new Set<() => void>();
  const flushAll = () => {
    const due = [...held];
    held.clear();
    for (const flush of due) flush();
  };
  const hold = (flush: () => void) => {
    if (held.size === 0) atTurnEnd('flush', flushAll);
    held.add(flush);
  };
  // Each transport is wrapped once: the one a connection opens on, or the one it upgrades to.
  // A client that stops reading: what is written for it piles up in the process (the kernel's buffer is full, the
  // rest waits in the socket's userland buffer). Past `maxBufferedBytes` the connection is closed, so one slow
  // client never holds a node's memory; it reconnects and reads what it missed over REST (docs/realtime.md).
  const max = limits.maxBufferedBytes ?? Number.POSITIVE_INFINITY;
  io.engine.on('connection', (socket: EngineSocket) => {
    let closed = false;
    const overflow = (bytes: number) => {
      if (closed) return;
      closed = true;
      limits.onOverflow?.(bytes);
      socket.close(true);
    };
    wrap(socket.transport, hold, max, overflow);
    socket.on('upgrade', (transport: Transport) => wrap(transport, hold, max, overflow));
    if (max === Number.POSITIVE_INFINITY) return;
    // Once the socket's buffer is full, the transport is not writable until it drains, and engine.io keeps the
    // packets in its own write buffer: counted here, from their creation until a flush hands them to the transport.
    let queued = 0;
    socket.on('packetCreate', (packet: { data?: unknown }) => {
      const d = packet.data;
      queued += typeof d === 'string' ? d.length : d instanceof Uint8Array || d instanceof ArrayBuffer ? d.byteLength : 0;
      // (What the TCP socket itself holds is checked after each write, in `flush` above.)
      if (queued > max) overflow(queued);
    });
    socket.on('flush', () => {
      queued = 0;
    });
  });
}

interface Transport {
  name: string;
  readyState: string;
  send(packets: unknown[]): void;
  doClose(fn: () => void): void;
  emit(event: 'drain'): boolean;
  socket?: { _socket?: { cork(): void; uncork(): void; writableLength: number } };
}

interface EngineSocket {
  transport: Transport;
  on(event: 'upgrade', listener: (transport: Transport) => void): void;
  on(event: 'packetCreate', listener: (packet: { data?: unknown }) => void): void;
  on(event: 'flush', listener: () => void): void;
  /** Closes the connection; `true`: without writing what it still holds. */
  close(discard?: boolean): void;
}

function wrap(transport: Transport, hold: (flush: () => void) => void, maxBuffered: number, overflow: (bytes: number) => void): void {
  if (transport.name !== 'websocket') return;
  const raw = transport.socket?._socket;
  if (!raw || typeof raw.cork !== 'function' || typeof raw.uncork !== 'function') return;
  const send = transport.send;
  const doClose = transport.doClose;
  let packets: unknown[] = [];
  // engine.io's socket counts one 'drain' per `send` it made (its per-flush callbacks); one real write gives one.
  let calls = 0;
  const flush = () => {
    if (packets.length === 0) return;
    const out = packets;
    const extraDrains = calls - 1;
    packets = [];
    calls = 0;
    if (transport.readyState === 'closed') return;
    for (let i = 0; i < extraDrains; i++) transport.emit('drain');
    raw.cork();
    try {
      send.call(transport, out);
    } finally {
      raw.uncork();
    }
    if (raw.writableLength > maxBuffered) overflow(raw.writableLength);
  };
  // `writable` stays true while packets are held, so engine.io keeps handing them over at once.
  transport.send = (list: unknown[]) => {
    for (const p of list) packets.push(p);
    calls++;
    hold(flush);
  };
  transport.doClose = function (this: Transport, fn: () => void) {
    flush();
    doClose.call(this, fn);
  };
}
