import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import type { Server } from 'socket.io';

/** The engine.io connection of a socket (socket.conn): what admission counts and closes. */
interface EngineConn {
  request: IncomingMessage;
  readyState: string;
  on(event: 'close', listener: () => void): unknown;
  close(): unknown;
}

export interface AdmissionOptions {
  /** Sockets one client address may hold; 0 for no cap. */
  perAddress: number;
  /** Sockets in all; undefined for no cap (the open-file limit is unknown or unlimited). */
  total: number | undefined;
  loginTimeoutMs: number;
  addressOf: (req: IncomingMessage) => string;
  /**
   * The CORS decision (src/auth/cors.ts) for a handshake that carries an Origin. Browsers apply CORS to polling
   * but not to WebSocket connections, so the handshake itself is refused for an Origin CORS would not allow.
   */
  originAllowed?: (origin: string) => Promise<boolean>;
  logger: Logger;
}

/** One slot: taken when a handshake is allowed, given back exactly once, when what holds it closes. */
interface Slot {
  address: string;
  released: boolean;
  conn?: EngineConn;
  deadline?: NodeJS.Timeout;
  onEarlyClose?: () => void;
}

export const REFUSED_PER_ADDRESS = 'Too many connections from your address; close some before opening more';
export const REFUSED_TOTAL = 'The server is at its connection limit; try again later';

/**
 * Who may open a socket, and for how long without logging in (docs/realtime.md, Admission). Every socket holds
 * a slot from the moment its handshake is allowed until its connection closes; the slots are counted per client
 * address and in all, and a handshake past either cap is refused by engine.io's `allowRequest` with a message
 * (HTTP 403 for polling, 400 for a WebSocket upgrade), before the connection costs a descriptor for its life.
 * Counting at the handshake (not when the connection is set up) keeps a burst of concurrent handshakes from all
 * passing the check before any of them is counted. Nothing here outlives a connection: a slot is dropped when it
 * closes, and an address whose count falls to zero leaves the table.
 */
export class Admission {
  private readonly perAddress = new Map<string, number>();
  private readonly byRequest = new WeakMap<IncomingMessage, Slot>();
  private readonly byConn = new WeakMap<EngineConn, Slot>();
  private held = 0;
  /** Refusals since the last log line: a flood of refused handshakes must not become a flood of log lines. */
  private refusals = 0;
  private lastRefusalLog = 0;

  constructor(private readonly opts: AdmissionOptions) {}

  /** Wires admission into a Socket.IO server; must run before the server accepts connections. */
  attach(io: Server): void {
    const engine = io.engine as unknown as {
      opts: { allowRequest?: (req: IncomingMessage, cb: (message: string | null | undefined, ok: boolean) => void) => void };
      on(event: 'connection', listener: (conn: EngineConn) => void): void;
      on(event: 'connection_error', listener: (err: { req?: IncomingMessage }) => void): void;
    };
    engine.opts.allowRequest = (req, cb) => {
      const admit = () => {
        const refusal = this.admit(req);
        cb(refusal, refusal === undefined);
      };
      const origin = req.headers.origin;
      if (origin === undefined || origin === '' || !this.opts.originAllowed) return admit();
      this.opts.originAllowed(origin).then(
        (ok) => (ok ? admit() : cb('This Origin may not open a connection to this server (IMKIT_CORS_ORIGINS, application domains)', false)),
        () => cb('The Origin could not be checked; try again', false),
      );
    };
    engine.on('connection', (conn) => this.connected(conn));
    // A handshake that fails after it was allowed (bad protocol version, transport error) gives its slot back.
    engine.on('connection_error', (err) => {
      const slot = err.req && this.byRequest.get(err.req);
      if (slot && !slot.conn) this.release(slot);
    });
  }

  /** The client address a connection was admitted under (worked out once, at its handshake). */
  addressOf(conn: EngineConn): string | undefined {
    return this.byConn.get(conn)?.address;
  }

  /** The socket logged in: it may stay past the login deadline. */
  loggedIn(conn: EngineConn): void {
    const slot = this.byConn.get(conn);
    if (slot?.deadline) {
      clearTimeout(slot.deadline);
      slot.deadline = undefined;
    }
  }

  /** The socket is no longer logged in (its token ended, a re-login failed): a new deadline starts. */
  loggedOut(conn: EngineConn): void {
    const slot = this.byConn.get(conn);
    if (slot && !slot.released && !slot.deadline) slot.deadline = this.startDeadline(conn);
  }

  /** Sockets holding a slot, and client addresses in the table: both drop to zero once every socket closed. */
  stats(): { sockets: number; addresses: number } {
    return { sockets: this.held, addresses: this.perAddress.size };
  }

  private admit(req: IncomingMessage): string | undefined {
    const address = this.opts.addressOf(req);
    if (this.opts.total !== undefined && this.held >= this.opts.total) return this.refuse(REFUSED_TOTAL, address);
    const count = this.perAddress.get(address) ?? 0;
    if (this.opts.perAddress > 0 && count >= this.opts.perAddress) return this.refuse(REFUSED_PER_ADDRESS, address);
    this.perAddress.set(address, count + 1);
    this.held++;
    const slot: Slot = { address, released: false };
    this.byRequest.set(req, slot);
    // Until the connection exists, the slot lives as long as the TCP connection that asked for it: a WebSocket
    // upgrade that ws refuses, or a polling handshake that never completes, gives it back when that closes.
    slot.onEarlyClose = () => this.release(slot);
    req.socket.once('close', slot.onEarlyClose);
    return undefined;
  }

  private refuse(reason: string, address: string): string {
    this.refusals++;
    const now = Date.now();
    if (now - this.lastRefusalLog >= 60_000) {
      this.opts.logger.warn({ refused: this.refusals, reason, address, sockets: this.held }, 'socket handshakes refused by admission (at most one line a minute)');
      this.refusals = 0;
      this.lastRefusalLog = now;
    }
    return reason;
  }

  private connected(conn: EngineConn): void {
    const slot = this.byRequest.get(conn.request);
    if (!slot || slot.released) return;
    slot.conn = conn;
    // A polling connection outlives the TCP connection of its handshake (keep-alive sockets come and go).
    if (slot.onEarlyClose) conn.request.socket.off('close', slot.onEarlyClose);
    slot.onEarlyClose = undefined;
    // From here the connection holds the slot (what is kept per socket is kept small: one map entry, no `once`
    // wrapper, since a connection closes once and release() gives a slot back only once anyway).
    this.byRequest.delete(conn.request);
    this.byConn.set(conn, slot);
    slot.deadline = this.startDeadline(conn);
    conn.on('close', () => this.release(slot));
  }

  private startDeadline(conn: EngineConn): NodeJS.Timeout {
    // Closing the transport (not a Socket.IO disconnect) lets a real SDK reconnect and log in; a silent client
    // only gets another deadline, within the caps.
    const timer = setTimeout(() => {
      if (conn.readyState !== 'closed') conn.close();
    }, this.opts.loginTimeoutMs);
    timer.unref();
    return timer;
  }

  private release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    if (slot.deadline) clearTimeout(slot.deadline);
    slot.deadline = undefined;
    this.held--;
    const count = (this.perAddress.get(slot.address) ?? 1) - 1;
    if (count <= 0) this.perAddress.delete(slot.address);
    else this.perAddress.set(slot.address, count);
  }
}

/**
 * The caps that follow from the process's open-file limit: sockets may take 80% of the descriptors, the rest is
 * left to HTTP keep-alive connections, the database (SQLite's files, the Postgres pool), the log and the threads.
 * `maxConnections` is the HTTP server's own cap on TCP connections, a little below the limit: past it Node
 * drops new connections at once (no message), which still beats running out of descriptors, where every
 * accept, file open and database connection fails.
 */
export function limitsFromFileLimit(softLimit: number | undefined): { sockets: number | undefined; maxConnections: number | undefined } {
  if (softLimit === undefined) return { sockets: undefined, maxConnections: undefined };
  const maxConnections = Math.max(1, softLimit - Math.max(64, Math.ceil(softLimit / 20)));
  // With a tiny limit the 80% would not fit under maxConnections: keep some TCP connections for HTTP anyway.
  return { sockets: Math.max(1, Math.min(Math.floor(softLimit * 0.8), maxConnections - 16)), maxConnections };
}


/** Applies the HTTP server's connection cap derived from the open-file limit (only ever lowers an unset cap). */
export function capHttpConnections(http: HttpServer, maxConnections: number | undefined): void {
  if (maxConnections !== undefined && !(http.maxConnections > 0 && http.maxConnections < maxConnections)) http.maxConnections = maxConnections;
}
