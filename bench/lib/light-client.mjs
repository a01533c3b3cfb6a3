// A minimal Socket.IO client for the bench's load generators: Engine.IO protocol 4 over the websocket transport
// only, the default namespace, JSON packets (no binary attachments), acks.
//
// Why by hand: the generators share the 2 cores with the server under test, so whatever they spend per received
// message is taken from the server and shows up as its latency. socket.io-client spends most of its time per
// message outside the socket: a CPU profile of a generator receiving 17,000 `chat message` events a second
// (2026-12-03) had half of its busy time in socket.io-parser's JSON.parse, the component emitter and the
// client's dispatch. This client speaks the same protocol on the same kind of socket (the `ws` package, which
// engine.io-client also uses in Node), and hands `chat message` frames to the caller as raw bytes, so that the
// bench can read the two numbers it needs from them. `--client socket.io` runs the bench with socket.io-client.
//
// Frames (Engine.IO 4 + Socket.IO 5): `0{...}` open, `2` ping (answered `3`), `1` close, `4...` a Socket.IO
// packet: `40` connect (`40{"sid"}` from the server), `41` disconnect, `42[id][event,...args]` event,
// `43id[...args]` ack, `44{...}` connect error.
import WebSocket from 'ws';

const CHAT_PREFIX = Buffer.from('42["chat message",');

/** The Socket.IO endpoint of an http://host:port server, as socket.io-client builds it for the websocket transport. */
function endpoint(url) {
  const u = new URL(url);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = '/socket.io/';
  u.search = '?EIO=4&transport=websocket';
  return u.toString();
}

export class LightSocket {
  /**
   * @param {string} url http://host:port of the server
   * @param {{ timeoutMs?: number, onChat?: (frame: Buffer) => void }} options `onChat` receives each
   *   `42["chat message",...]` frame as it arrived (it is not parsed here).
   */
  constructor(url, { timeoutMs = 20_000, onChat } = {}) {
    this.connected = false;
    this.onChat = onChat;
    this.acks = new Map();
    this.nextAck = 0;
    this.listeners = new Map();
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('timeout')), timeoutMs);
      const fail = (err) => {
        clearTimeout(timer);
        this.ws.terminate();
        reject(err);
      };
      this.settle = { resolve: () => (clearTimeout(timer), resolve(this)), fail };
    });
    this.ws = new WebSocket(endpoint(url), { perMessageDeflate: false });
    this.ws.on('message', (data) => this.onFrame(data));
    this.ws.on('error', (err) => this.settle.fail(err));
    this.ws.on('close', () => {
      this.connected = false;
      this.settle.fail(new Error('closed'));
    });
  }

  /** @returns {Promise<LightSocket>} once the server accepted the Socket.IO connection. */
  static connect(url, options) {
    return new LightSocket(url, options).ready;
  }

  onFrame(buf) {
    switch (buf[0]) {
      case 0x34: // '4': a Socket.IO packet
        if (buf[1] === 0x32 && this.onChat && buf.length > CHAT_PREFIX.length && buf.compare(CHAT_PREFIX, 0, CHAT_PREFIX.length, 0, CHAT_PREFIX.length) === 0) {
          this.onChat(buf);
          return;
        }
        this.onPacket(buf.toString('utf8'));
        return;
      case 0x32: // '2': ping
        this.ws.send('3');
        return;
      case 0x30: // '0': open; connect to the default namespace
        this.ws.send('40');
        return;
      case 0x31: // '1': close
        this.ws.close();
        return;
    }
  }

  onPacket(s) {
    const type = s[1];
    if (type === '0') {
      this.connected = true;
      this.settle.resolve();
      return;
    }
    if (type === '4') {
      let message = s.slice(2);
      try {
        message = JSON.parse(message).message ?? message;
      } catch {}
      this.settle.fail(new Error(String(message)));
      return;
    }
    if (type === '1') {
      this.connected = false;
      this.ws.close();
      return;
    }
    if (type !== '2' && type !== '3') return;
    let i = 2;
    while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
    const id = i > 2 ? Number(s.slice(2, i)) : undefined;
    let args;
    try {
      args = JSON.parse(s.slice(i));
    } catch {
      return;
    }
    if (!Array.isArray(args)) return;
    if (type === '3') {
      const ack = this.acks.get(id);
      this.acks.delete(id);
      ack?.(...args);
      return;
    }
    const [event, ...rest] = args;
    const fn = this.listeners.get(event);
    if (!fn) return;
    if (id !== undefined) rest.push((...reply) => this.ws.send(`43${id}${JSON.stringify(reply)}`));
    fn(...rest);
  }

  /** One listener per event (all the bench needs). */
  on(event, fn) {
    this.listeners.set(event, fn);
  }

  /** emit(event, ...args[, ack]) as socket.io-client does. */
  emit(event, ...args) {
    if (!this.connected) return;
    let id = '';
    if (typeof args[args.length - 1] === 'function') {
      id = String(this.nextAck++);
      this.acks.set(Number(id), args.pop());
    }
    this.ws.send(`42${id}${JSON.stringify([event, ...args])}`);
  }

  disconnect() {
    if (this.connected) this.ws.send('41');
    this.connected = false;
    this.acks.clear();
    this.ws.close();
  }
}

/** The JSON argument of a `42["chat message",...]` frame: the object itself, or the base64 text of its JSON. */
export function chatArgument(frame, base64) {
  if (!base64) return frame.subarray(CHAT_PREFIX.length, frame.length - 1);
  const start = CHAT_PREFIX.length + 1; // past the opening quote
  const end = frame.indexOf(0x22, start);
  return Buffer.from(frame.toString('latin1', start, end), 'base64');
}

/** The number after `"key":` in a JSON text held in a Buffer (the first one), or undefined. */
export function numberAfter(buf, key) {
  const at = buf.indexOf(key);
  if (at < 0) return undefined;
  let i = at + key.length;
  while (buf[i] === 0x20) i++;
  const start = i;
  // digits, sign, decimal point, exponent
  while (i < buf.length && ((buf[i] >= 0x30 && buf[i] <= 0x39) || buf[i] === 0x2d || buf[i] === 0x2e || buf[i] === 0x65 || buf[i] === 0x45 || buf[i] === 0x2b)) i++;
  if (i === start) return undefined;
  const n = Number(buf.toString('latin1', start, i));
  return Number.isFinite(n) ? n : undefined;
}
