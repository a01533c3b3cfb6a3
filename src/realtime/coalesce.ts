import type { Server } from 'socket.io';

/**
 * One write per flush for the WebSocket transport. While a socket's previous write is in flight, engine.io keeps
 * the packets that arrive for it and then hands them over together (`transport.send(packets)`); its WebSocket
 * transport writes each one as a frame of its own, and `ws` turns every frame into a system call. On a busy
 * node those calls were the largest single cost of fan-out (half of the event loop's time, about 10 µs each on
 * loopback), and every one is also a TCP segment the client has to read. Corking the TCP socket while the packets
 * of one flush are written makes them one `writev` and, mostly, one segment. Nothing changes on the wire but the
 * segment boundaries: same frames, same order. (Neither engine.io nor ws offers this; it is a wrapper of one
 * method of each WebSocket transport, installed when a connection opens on or upgrades to WebSocket.)
 */
export function coalesceWebSocketWrites(io: Server): void {
  io.engine.on('connection', (socket: EngineSocket) => {
    wrap(socket.transport);
    socket.on('upgrade', (transport: Transport) => wrap(transport));
  });
}

interface Transport {
  name: string;
  send(packets: unknown[]): void;
  socket?: { _socket?: { cork(): void; uncork(): void } };
}

interface EngineSocket {
  transport: Transport;
  on(event: 'upgrade', listener: (transport: Transport) => void): void;
}

const wrapped = new WeakSet<Transport>();

function wrap(transport: Transport): void {
  if (transport.name !== 'websocket' || wrapped.has(transport)) return;
  const raw = transport.socket?._socket;
  if (!raw || typeof raw.cork !== 'function' || typeof raw.uncork !== 'function') return;
  wrapped.add(transport);
  const send = transport.send;
  transport.send = function (this: Transport, packets: unknown[]) {
    if (packets.length < 2) return send.call(this, packets);
    raw.cork();
    try {
      send.call(this, packets);
    } finally {
      raw.uncork();
    }
  };
}
