import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import { Server, type Socket } from 'socket.io';
import { corsOptions, originDecision } from '../auth/cors.js';
import type { Idempotency } from '../apps/idempotency-service.js';
import type { Guard } from '../auth/guard.js';
import type { Actor } from '../auth/guard.js';
import type { EventBudget } from '../auth/rate-limit.js';
import type { Config } from '../config.js';
import { AppError, CredentialErrors, fromStoreError } from '../errors.js';
import { addressResolver } from '../lib/client-address.js';
import type { Clock } from '../lib/clock.js';
import { tooDeep, valueTooDeep } from '../lib/json-depth.js';
import type { Services } from '../services.js';
import { readFileLimits } from '../lib/file-limits.js';
import { Admission, capHttpConnections, limitsFromFileLimit } from './admission.js';
import { coalesceWebSocketWrites } from './coalesce.js';
import { encode, encodingFrom, type Encoding, maybeBase64 } from './codec.js';
import { Delivery, parseUserChannel, userChannel } from './delivery.js';
import type { Cluster } from '../cluster/cluster.js';

/** What a socket knows about itself once authenticated. */
export interface SocketState {
  encoding: Encoding;
  /** The caller's address (proxy-aware), resolved once from the handshake. */
  address: string;
  appId?: string;
  userId?: string;
  tokenDigest?: string;
  clientKeyId?: string | null;
  /** Why the last session of this socket ended (its token expired or was revoked), until it logs in again. */
  ended?: AppError;
  /** When the session's token expires (null: never), as read at login; the gateway's sweep ends it then. */
  expiresAt?: number | null;
  /** The socket's own event budget: it lives and dies with the socket, so nothing of it outlives a connection. */
  events: EventBudget;
  authFailures: number;
  strikes: number;
}

type Ack = (...args: unknown[]) => void;

/** Every logged-in socket joins its application's channel (connection counts, the stats' peaks). */
const APP_CHANNEL = 'app:';
function appChannel(appId: string): string {
  return APP_CHANNEL + appId;
}

/** Client events whose acks are encoded as the socket chose (`conf`); the others' acks are plain objects. */
const ENCODED_ACKS: ReadonlySet<string> = new Set(['conf', 'auth2', 'auth']);

const MAX_AUTH_FAILURES = 5;
const MAX_STRIKES = 3;
const WINDOW = 10_000;

/**
 * The Socket.IO side of the IMKIT protocol (realtime spec §1-§3) on the HTTP server. Sockets connect
 * unauthenticated, send `conf` and `auth2`/`auth`, and from then on receive the events of their user's rooms.
 * Socket handlers only parse and authenticate; every rule is in the services they call.
 */
export class Realtime {
  readonly io: Server;
  private readonly delivery: Delivery;
  private readonly admission: Admission;
  /** Built once: compiling the trusted-proxy list is not free. */
  private readonly addressOf: (req: Socket['request']) => string;
  private readonly revocationPoll: NodeJS.Timeout;
  /** Set by `drain` (a graceful shutdown): client events are refused from then on. */
  private draining = false;
  /** Client events being handled now, and who waits for there to be none. */
  private inFlight = 0;
  private drained: Array<() => void> = [];
  private lastRevocationCheck: number;

  constructor(
    http: HttpServer,
    private readonly deps: {
      config: Config;
      guard: Guard;
      services: Services;
      clock: Clock;
      logger: Logger;
      /** Told of every client event refused by its socket's event budget (the /metrics refusal counter). */
      onEventRefused?: () => void;
      /** A `chat message`'s clientMsgId (docs/reliability.md); without it the field is only stored. */
      idempotency?: Idempotency;
      /** Cluster mode (docs/cluster.md): the nodes' adapter and their presence. */
      cluster?: Cluster;
    },
  ) {
    this.io = new Server(http, {
      ...(deps.cluster ? { adapter: deps.cluster.adapter() } : {}),
      allowEIO3: true,
      cors: corsOptions(deps.guard, deps.config),
      pingInterval: deps.config.pingIntervalMs,
      pingTimeout: deps.config.pingTimeoutMs,
      maxHttpBufferSize: Math.max(deps.config.bodyLimitBytes, 1_000_000),
      serveClient: false,
    });
    this.addressOf = addressResolver(deps.config.trustProxy);
    // Read after main.ts raised the soft limit to the hard one, so the caps follow the limit the process has.
    const limits = limitsFromFileLimit(readFileLimits().soft);
    capHttpConnections(http, limits.maxConnections);
    this.admission = new Admission({
      perAddress: deps.config.maxSocketsPerIp,
      total: deps.config.maxSockets ?? limits.sockets,
      loginTimeoutMs: deps.config.socketLoginTimeoutMs,
      addressOf: this.addressOf,
      originAllowed: originDecision(deps.guard, deps.config.corsOrigins),
      logger: deps.logger,
    });
    this.admission.attach(this.io);
    coalesceWebSocketWrites(this.io, {
      maxBufferedBytes: deps.config.socketSendBufferBytes,
      onOverflow: (bytes) => deps.logger.info({ bytes }, 'socket closed: its client stopped reading (IMKIT_SOCKET_SEND_BUFFER)'),
    });
    this.delivery = new Delivery(this.io, deps.services, deps.logger, (appId, userId, digests) => this.dropUserSockets(appId, userId, digests));
    this.io.on('connection', (socket) => this.onConnection(socket));
    deps.services.presence.online = (appId, userId) => this.isOnline(appId, userId);
    if (deps.cluster) this.joinCluster(deps.cluster);
    this.lastRevocationCheck = deps.clock.now();
    // Client keys can be rotated, and tokens revoked, by the CLI in another process: noticed within a second.
    this.revocationPoll = setInterval(() => void this.pollEverySecond(), 1000);
    this.revocationPoll.unref();
  }

  /** Live authenticated sockets of one application, on every node (the cluster's presence). */
  async connectionCount(appId: string): Promise<number> {
    return this.deps.cluster ? this.deps.cluster.total(appId) : this.appSocketsHere(appId);
  }

  /** Logged-in sockets of one application on this node. */
  appSocketsHere(appId: string): number {
    return this.io.sockets.adapter.rooms.get(appChannel(appId))?.size ?? 0;
  }

  /** Sockets connected to this node, and those logged in (members of an application's channel). */
  socketCounts(): { open: number; authenticated: number } {
    let authenticated = 0;
    for (const [room, ids] of this.io.sockets.adapter.rooms) if (room.startsWith(APP_CHANNEL)) authenticated += ids.size;
    return { open: this.io.sockets.sockets.size, authenticated };
  }

  /** Tells `listener` whenever an application's logged-in sockets on this node change in number (before, after). */
  onAppSockets(listener: (appId: string, before: number, after: number) => void): void {
    const adapter = this.io.sockets.adapter;
    const changed = (room: string, delta: number) => {
      if (!room.startsWith(APP_CHANNEL)) return;
      const n = adapter.rooms.get(room)?.size ?? 0;
      listener(room.slice(APP_CHANNEL.length), n - delta, n);
    };
    adapter.on('join-room', (room: string) => changed(room, 1));
    adapter.on('leave-room', (room: string) => changed(room, -1));
  }

  /** Whether a user has an authenticated socket on any node. */
  isOnline(appId: string, userId: string): boolean {
    return this.socketsHere(appId, userId) > 0 || (this.deps.cluster?.onlineElsewhere(appId, userId) ?? false);
  }

  private socketsHere(appId: string, userId: string): number {
    const rooms = this.io.sockets.adapter.rooms;
    return (rooms.get(userChannel(appId, userId, 'base64'))?.size ?? 0) + (rooms.get(userChannel(appId, userId, 'plain'))?.size ?? 0);
  }

  /**
   * Cluster mode: tells the cluster when a user's first socket arrives on this node or its last one leaves, and when
   * an application's logged-in sockets here change in number; answers the cluster's snapshot questions.
   */
  private joinCluster(cluster: Cluster): void {
    const adapter = this.io.sockets.adapter;
    const changed = (room: string, joined: boolean) => {
      if (room.startsWith(APP_CHANNEL)) {
        cluster.localCount(room.slice(APP_CHANNEL.length), adapter.rooms.get(room)?.size ?? 0);
        return;
      }
      const user = parseUserChannel(room);
      if (!user) return;
      const n = this.socketsHere(user.appId, user.userId);
      if (joined ? n === 1 : n === 0) cluster.localPresence(user.appId, user.userId, joined);
    };
    adapter.on('join-room', (room: string) => changed(room, true));
    adapter.on('leave-room', (room: string) => changed(room, false));
  }

  /** This node's users with a socket (app, user), for the cluster's presence snapshots. */
  *usersHere(): Iterable<[string, string]> {
    const seen = new Set<string>();
    for (const room of this.io.sockets.adapter.rooms.keys()) {
      const user = parseUserChannel(room);
      if (!user) continue;
      const key = `${user.appId}\u0000${user.userId}`;
      if (seen.has(key)) continue;
      seen.add(key);
      yield [user.appId, user.userId];
    }
  }

  /** Logged-in sockets per application on this node. */
  *appCountsHere(): Iterable<[string, number]> {
    for (const [room, ids] of this.io.sockets.adapter.rooms) if (room.startsWith(APP_CHANNEL)) yield [room.slice(APP_CHANNEL.length), ids.size];
  }

  /**
   * What this node holds for its connections: admitted sockets, client addresses in the per-address table, and
   * Socket.IO sockets. All three are zero once every connection closed (nothing per socket outlives it).
   */
  admissionStats(): { sockets: number; addresses: number; ioSockets: number } {
    return { ...this.admission.stats(), ioSockets: this.io.sockets.sockets.size };
  }

  /**
   * The first step of a graceful shutdown: client events are refused from now on (an error ack, 503
   * SERVICE_UNAVAILABLE: send again once reconnected), and the ones being handled finish, their acks sent. So a
   * message is either acknowledged before the sockets close, or refused and not stored: never stored without its
   * sender knowing.
   */
  drain(): Promise<void> {
    this.draining = true;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  async close(): Promise<void> {
    this.draining = true;
    clearInterval(this.revocationPoll);
    this.delivery.stop();
    // Closing the engine drops the transports without a DISCONNECT packet, so clients reconnect by themselves
    // (to this server after a restart, or to another node). A WebSocket closes with a handshake, after what was
    // written to it: ws keeps the TCP connection until the client answers, for up to 30 s, and the HTTP server's
    // close waits for it. A client that has not answered within a second (one that stopped reading) is cut off.
    const webSockets = [...this.io.sockets.sockets.values()].map((s) => (s.conn.transport as { socket?: { terminate?: () => void } }).socket);
    const cutOff = setTimeout(() => {
      for (const ws of webSockets) ws?.terminate?.();
    }, 1000);
    await new Promise<void>((resolve) => this.io.close(() => resolve()));
    clearTimeout(cutOff);
  }

  private onConnection(socket: Socket): void {
    const state: SocketState = {
      encoding: 'plain',
      address: this.admission.addressOf(socket.conn) ?? this.addressOf(socket.request),
      events: this.deps.guard.rates.budget(this.deps.config.socketEventsPer10s, WINDOW),
      authFailures: 0,
      strikes: 0,
    };
    socket.data = state;
    this.checkDepth(socket, state);
    // Socket.IO fills the handshake with the TCP peer's address; behind a reverse proxy that is the proxy. Every
    // reader of the handshake sees the caller's address instead.
    socket.handshake.address = state.address;

    socket.on('conf', (...args: unknown[]) => {
      const ack = lastFunction(args);
      const conf = args[0];
      const before = state.encoding;
      state.encoding = encodingFrom(conf);
      if (state.appId && state.userId && before !== state.encoding) {
        void socket.leave(userChannel(state.appId, state.userId, before));
        void socket.join(userChannel(state.appId, state.userId, state.encoding));
      }
      if (typeof ack === 'function') ack(encode({ RC: 0, RM: 'OK', result: { encoding: state.encoding === 'base64' ? 'base64' : 'json' } }, state.encoding));
    });

    socket.on('auth2', (...args: unknown[]) => {
      const ack = lastFunction(args);
      const token = typeof args[0] === 'string' ? args[0] : undefined;
      const headers = lowerKeys(typeof args[1] === 'object' && args[1] !== null ? (args[1] as Record<string, unknown>) : {});
      void this.authenticate(socket, state, ack, () =>
        this.deps.guard.authenticate(
          {
            headers: {
              'im-client-key': str(headers['im-client-key'] ?? headers.client_key),
              'im-authorization': token ?? str(headers['im-authorization'] ?? headers.authorization),
              host: socket.handshake.headers.host,
              origin: socket.handshake.headers.origin,
            },
            ip: state.address,
          },
          'user',
        ),
      );
    });

    socket.on('auth', (...args: unknown[]) => {
      const ack = lastFunction(args);
      const token = typeof args[0] === 'string' ? args[0] : '';
      if (this.deps.config.legacySocketAuth === undefined) {
        reply(ack, state, { RC: 401, RM: 'The legacy auth event is disabled on this server; use auth2 with the client key', error: 'INVALID_TOKEN' });
        return;
      }
      void this.authenticate(socket, state, ack, () => this.deps.guard.authenticateTokenOnly(token, socket.handshake.address));
    });

    socket.on('chat message', (...args: unknown[]) => {
      const ack = lastFunction(args);
      const msg = args[0];
      void this.guarded(socket, state, ack, async (actor) => {
        if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new AppError('INVALID_REQUEST', 'chat message takes one message object');
        const body = msg as Record<string, unknown>;
        const roomId = body.room ?? body.roomId ?? body.roomID;
        if (typeof roomId !== 'string' || !roomId) throw new AppError('INVALID_REQUEST', 'Missing required field: room');
        if (Buffer.byteLength(JSON.stringify(body)) > this.deps.config.bodyLimitBytes) throw new AppError('PAYLOAD_TOO_LARGE', 'Message is too large');
        const caller = { appId: actor.app.id, userId: actor.userId, platform: false };
        const send = async () => ({ RC: 0, RM: 'OK', result: await this.deps.services.messages.send(caller, roomId, body) });
        // With a clientMsgId, a retried send is acknowledged with the first one's answer, not stored again; a first
        // send whose message was stored but whose ack was never kept (a crash between the two) is acknowledged
        // with that message.
        const sent = async (messageId: string) => ({ RC: 0, RM: 'OK', result: await this.deps.services.messages.sent(caller, messageId) });
        const answer = body.clientMsgId !== undefined && this.deps.idempotency ? await this.deps.idempotency.socketSend(actor.app.id, actor.userId, body, send, sent) : await send();
        // The ack is a plain object on every encoding: js-lib reads res.RC without decoding.
        if (typeof ack === 'function') ack(answer);
      });
    });

    // The SDKs send typing without an ack; one given anyway receives the outcome.
    socket.on('typing', (...args: unknown[]) => {
      const ack = lastFunction(args);
      const [roomId, text] = args;
      void this.guarded(socket, state, ack, async (actor) => {
        if (typeof roomId !== 'string') throw new AppError('INVALID_REQUEST', 'typing takes a room id');
        await this.deps.services.prefs.typing({ appId: actor.app.id, userId: actor.userId, platform: false }, roomId, maybeBase64(text));
        if (typeof ack === 'function') ack({ RC: 0, RM: 'OK' });
      });
    });
  }

  /**
   * Every client event's arguments are checked for nesting depth before any handler walks them (JSON.stringify,
   * the renderers and the store all recurse, and a payload some thousands of levels deep overflows the stack):
   * too deep is a 400 ack naming the limit, and the event goes no further. One middleware per socket, ahead of
   * every handler, so an event added later is covered too. The ack follows the socket's encoding for the login
   * events (conf, auth) and is a plain object for the others, as each event's own acks are.
   */
  private checkDepth(socket: Socket, state: SocketState): void {
    const limit = this.deps.config.maxJsonDepth;
    socket.use((packet, next) => {
      for (let i = 1; i < packet.length; i++) {
        if (!valueTooDeep(packet[i], limit)) continue;
        const ack = lastFunction(packet);
        const body = tooDeep(limit).toBody();
        if (ENCODED_ACKS.has(String(packet[0]))) reply(ack, state, body);
        else if (typeof ack === 'function') ack(body);
        return;
      }
      next();
    });
  }

  private async authenticate(socket: Socket, state: SocketState, ack: Ack | undefined, check: () => Promise<{ actor: Actor }>): Promise<void> {
    try {
      const { actor } = await check();
      if (actor.kind !== 'user') throw new AppError('INVALID_TOKEN', 'A user token is required');
      const me = await this.deps.services.users.me(actor, { ip: state.address, userAgent: str(socket.handshake.headers['user-agent']) });
      // Re-auth on the same socket re-binds it to the new user.
      for (const room of socket.rooms) if (room !== socket.id) void socket.leave(room);
      state.appId = actor.app.id;
      state.userId = actor.userId;
      state.tokenDigest = actor.tokenDigest;
      state.clientKeyId = actor.clientKeyId;
      state.ended = undefined;
      state.authFailures = 0;
      this.admission.loggedIn(socket.conn);
      state.expiresAt = actor.tokenExpiresAt;
      await socket.join([appChannel(actor.app.id), userChannel(actor.app.id, actor.userId, state.encoding)]);
      reply(ack, state, { RC: 0, RM: 'OK', result: { ...me, client: actor.userId } });
    } catch (err) {
      const e = err instanceof AppError ? err : new AppError('INTERNAL_ERROR', 'Authentication failed');
      if (!(err instanceof AppError)) this.deps.logger.error({ err }, 'socket auth failed');
      // A failed auth leaves the socket connected but receiving nothing (and unbinds a previous user).
      this.unbind(socket, state);
      state.authFailures++;
      reply(ack, state, { RC: e.code === 'RATE_LIMIT_EXCEEDED' ? 429 : e.status >= 500 ? 500 : 401, RM: e.message, error: e.code });
      if (state.authFailures >= MAX_AUTH_FAILURES) socket.disconnect(true);
    }
  }

  /** Runs a client event for an authenticated socket, within its event budget; errors become {RC,RM} acks. */
  private async guarded(socket: Socket, state: SocketState, ack: Ack | undefined, run: (actor: { app: { id: string }; userId: string }) => Promise<void>): Promise<void> {
    this.inFlight++;
    try {
      if (this.draining) throw new AppError('SERVICE_UNAVAILABLE', 'The server is shutting down: send again once reconnected', { retryAfter: 1 });
      const rate = state.events.take(Date.now());
      if (!rate.allowed) {
        this.deps.onEventRefused?.();
        state.strikes++;
        if (state.strikes >= MAX_STRIKES) socket.disconnect(true);
        throw new AppError('RATE_LIMIT_EXCEEDED', 'Too many events, please slow down', { retryAfter: rate.retryAfter });
      }
      if (!state.appId || !state.userId || !state.tokenDigest) throw state.ended ?? new AppError('INVALID_TOKEN', 'Authenticate with auth2 first');
      const { appId, userId, tokenDigest } = state;
      // The token may have expired or been revoked since login (also by the CLI in another process).
      const ended = await this.deps.guard.tokenLiveness(appId, userId, tokenDigest);
      if (ended) {
        if (state.tokenDigest === tokenDigest && state.appId === appId) this.endSession(socket, state, ended);
        throw ended;
      }
      await run({ app: { id: appId }, userId });
    } catch (err) {
      const known = err instanceof AppError ? err : fromStoreError(err);
      const e = known ?? new AppError('INTERNAL_ERROR', 'Internal server error');
      if (!known) this.deps.logger.error({ err }, 'socket event failed');
      if (typeof ack === 'function') ack(e.toBody());
    } finally {
      if (--this.inFlight === 0) for (const d of this.drained.splice(0)) d();
    }
  }

  /**
   * Ends the sessions whose token has expired by the server's Clock, and closes their transports: the SDK
   * reconnects by itself, logs in again and gets the login error (a Socket.IO disconnect would tell it not to
   * reconnect). Run by the gateway's poll every second, over this node's sockets: one pass costs less than a timer
   * per socket would hold in memory, and it follows the Clock (tests move it) without timers to re-arm. A token
   * revoked in this process has its sockets dropped at once (delivery); one revoked elsewhere is refused on the
   * next event once the cache is synced (every second, by the same poll).
   */
  private endExpiredSessions(): void {
    const now = this.deps.clock.now();
    for (const socket of this.io.sockets.sockets.values()) {
      const state = socket.data as SocketState;
      if (state.tokenDigest === undefined || state.expiresAt === null || state.expiresAt === undefined || state.expiresAt > now) continue;
      this.endSession(socket, state, CredentialErrors.tokenExpired());
      socket.conn.close();
    }
  }

  /** The session's token ended: the socket receives nothing more and must log in again before its deadline. */
  private endSession(socket: Socket, state: SocketState, why: AppError): void {
    this.unbind(socket, state);
    state.ended = why;
  }

  private unbind(socket: Socket, state: SocketState): void {
    for (const room of socket.rooms) if (room !== socket.id) void socket.leave(room);
    state.expiresAt = undefined;
    const wasIn = state.appId !== undefined;
    state.appId = state.userId = state.tokenDigest = undefined;
    state.clientKeyId = undefined;
    if (wasIn) this.admission.loggedOut(socket.conn);
  }

  /** Drops the sockets of a user (all, or those authenticated with the given token digests) on this node. */
  private dropUserSockets(appId: string, userId: string, digests: string[] | 'all'): void {
    for (const enc of ['base64', 'plain'] as const) {
      for (const id of this.io.sockets.adapter.rooms.get(userChannel(appId, userId, enc)) ?? []) {
        const s = this.io.sockets.sockets.get(id);
        const st = s?.data as SocketState | undefined;
        if (s && st && (digests === 'all' || (st.tokenDigest && digests.includes(st.tokenDigest)))) s.disconnect(true);
      }
    }
  }

  private async pollEverySecond(): Promise<void> {
    this.endExpiredSessions();
    try {
      // Other processes' revocations and expiry changes reach the cache the socket events read (tokenLiveness).
      await this.deps.guard.syncCredentials();
      const since = this.lastRevocationCheck - 2000;
      this.lastRevocationCheck = this.deps.clock.now();
      const revoked = await this.deps.services.apps.clientKeysRevokedSince(since);
      if (revoked.length === 0) return;
      const ids = new Set(revoked);
      for (const s of this.io.sockets.sockets.values()) {
        const st = s.data as SocketState;
        if (st.clientKeyId && ids.has(st.clientKeyId)) s.disconnect(true);
      }
    } catch (err) {
      this.deps.logger.warn({ err }, 'client key revocation check failed');
    }
  }
}

function reply(ack: Ack | undefined, state: SocketState, body: unknown): void {
  if (typeof ack === 'function') ack(encode(body, state.encoding));
}

function lastFunction(args: unknown[]): Ack | undefined {
  for (let i = args.length - 1; i >= 0; i--) if (typeof args[i] === 'function') return args[i] as Ack;
  return undefined;
}

function lowerKeys(o: Record<string, unknown>): Record<string, unknown> {
  // No prototype: a "__proto__" key sent by the client stays a key.
  const out: Record<string, unknown> = Object.create(null);
  for (const [k, v] of Object.entries(o)) out[k.toLowerCase()] = v;
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
