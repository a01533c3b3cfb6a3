import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import { Server, type Socket } from 'socket.io';
import { corsOptions } from '../auth/cors.js';
import type { Guard } from '../auth/guard.js';
import { MemoryRateLimitStore } from '../auth/rate-limit.js';
import type { Actor } from '../auth/guard.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import type { Services } from '../services.js';
import { AppsRepo } from '../store/apps-repo.js';
import type { Store } from '../store/database.js';
import { coalesceWebSocketWrites } from './coalesce.js';
import { encode, encodingFrom, type Encoding, maybeBase64 } from './codec.js';
import { Delivery, userChannel } from './delivery.js';

/** What a socket knows about itself once authenticated. */
export interface SocketState {
  encoding: Encoding;
  appId?: string;
  userId?: string;
  tokenDigest?: string;
  clientKeyId?: string | null;
  authFailures: number;
  strikes: number;
}

type Ack = (...args: unknown[]) => void;

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
  private readonly eventRates = new MemoryRateLimitStore();
  private readonly revocationPoll: NodeJS.Timeout;
  private lastRevocationCheck: number;

  constructor(
    http: HttpServer,
    private readonly deps: { config: Config; guard: Guard; services: Services; store: Store; clock: Clock; logger: Logger },
  ) {
    this.io = new Server(http, {
      allowEIO3: true,
      cors: corsOptions(deps.guard, deps.config),
      pingInterval: deps.config.pingIntervalMs,
      pingTimeout: deps.config.pingTimeoutMs,
      maxHttpBufferSize: Math.max(deps.config.bodyLimitBytes, 1_000_000),
      serveClient: false,
    });
    coalesceWebSocketWrites(this.io);
    this.delivery = new Delivery(this.io, deps.services, deps.store, deps.logger, (appId, userId, digests) => this.dropUserSockets(appId, userId, digests));
    this.io.on('connection', (socket) => this.onConnection(socket));
    deps.services.presence.online = (appId, userId) => this.isOnline(appId, userId);
    this.lastRevocationCheck = deps.clock.now();
    // Client keys can be rotated by the CLI in another process; notice within a second and drop their sockets.
    this.revocationPoll = setInterval(() => void this.pollRevokedClientKeys(), 1000);
    this.revocationPoll.unref();
  }

  /** Live authenticated sockets of one application, on every node (through the adapter). */
  async connectionCount(appId: string): Promise<number> {
    return (await this.io.in(`app:${appId}`).fetchSockets()).length;
  }

  /** Whether a user has an authenticated socket on this node (cluster mode will answer for every node). */
  isOnline(appId: string, userId: string): boolean {
    const rooms = this.io.sockets.adapter.rooms;
    return (rooms.get(userChannel(appId, userId, 'base64'))?.size ?? 0) + (rooms.get(userChannel(appId, userId, 'plain'))?.size ?? 0) > 0;
  }

  async close(): Promise<void> {
    clearInterval(this.revocationPoll);
    this.delivery.stop();
    await this.eventRates.close();
    // Closing the engine drops the transports without a DISCONNECT packet, so clients reconnect by themselves
    // (to this server after a restart, or to another node).
    await new Promise<void>((resolve) => this.io.close(() => resolve()));
  }

  private onConnection(socket: Socket): void {
    const state: SocketState = { encoding: 'plain', authFailures: 0, strikes: 0 };
    socket.data = state;

    socket.on('conf', (conf: unknown, ack?: Ack) => {
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
            ip: socket.handshake.address,
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

    socket.on('chat message', (msg: unknown, ack?: Ack) => {
      void this.guarded(socket, state, ack, async (actor) => {
        if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new AppError('INVALID_REQUEST', 'chat message takes one message object');
        const body = msg as Record<string, unknown>;
        const roomId = body.room ?? body.roomId ?? body.roomID;
        if (typeof roomId !== 'string' || !roomId) throw new AppError('INVALID_REQUEST', 'Missing required field: room');
        if (Buffer.byteLength(JSON.stringify(body)) > this.deps.config.bodyLimitBytes) throw new AppError('PAYLOAD_TOO_LARGE', 'Message is too large');
        const result = await this.deps.services.messages.send({ appId: actor.app.id, userId: actor.userId, platform: false }, roomId, body);
        // The ack is a plain object on every encoding: js-lib reads res.RC without decoding.
        if (typeof ack === 'function') ack({ RC: 0, RM: 'OK', result });
      });
    });

    socket.on('typing', (roomId: unknown, text?: unknown) => {
      void this.guarded(socket, state, undefined, async (actor) => {
        if (typeof roomId !== 'string') throw new AppError('INVALID_REQUEST', 'typing takes a room id');
        await this.deps.services.prefs.typing({ appId: actor.app.id, userId: actor.userId, platform: false }, roomId, maybeBase64(text));
      });
    });
  }

  private async authenticate(socket: Socket, state: SocketState, ack: Ack | undefined, check: () => Promise<{ actor: Actor }>): Promise<void> {
    try {
      const { actor } = await check();
      if (actor.kind !== 'user') throw new AppError('INVALID_TOKEN', 'A user token is required');
      const me = await this.deps.services.users.me(actor, { ip: socket.handshake.address, userAgent: str(socket.handshake.headers['user-agent']) });
      // Re-auth on the same socket re-binds it to the new user.
      for (const room of socket.rooms) if (room !== socket.id) void socket.leave(room);
      state.appId = actor.app.id;
      state.userId = actor.userId;
      state.tokenDigest = actor.tokenDigest;
      state.clientKeyId = actor.clientKeyId;
      state.authFailures = 0;
      await socket.join([`app:${actor.app.id}`, userChannel(actor.app.id, actor.userId, state.encoding)]);
      reply(ack, state, { RC: 0, RM: 'OK', result: { ...me, client: actor.userId } });
    } catch (err) {
      const e = err instanceof AppError ? err : new AppError('INTERNAL_ERROR', 'Authentication failed');
      if (!(err instanceof AppError)) this.deps.logger.error({ err }, 'socket auth failed');
      // A failed auth leaves the socket connected but receiving nothing (and unbinds a previous user).
      for (const room of socket.rooms) if (room !== socket.id) void socket.leave(room);
      state.appId = state.userId = state.tokenDigest = undefined;
      state.authFailures++;
      reply(ack, state, { RC: e.code === 'RATE_LIMIT_EXCEEDED' ? 429 : e.status >= 500 ? 500 : 401, RM: e.message, error: e.code });
      if (state.authFailures >= MAX_AUTH_FAILURES) socket.disconnect(true);
    }
  }

  /** Runs a client event for an authenticated socket, within its event budget; errors become {RC,RM} acks. */
  private async guarded(socket: Socket, state: SocketState, ack: Ack | undefined, run: (actor: { app: { id: string }; userId: string }) => Promise<void>): Promise<void> {
    try {
      const rate = await this.eventRates.hit(socket.id, this.deps.config.socketEventsPer10s, WINDOW, Date.now());
      if (!rate.allowed) {
        state.strikes++;
        if (state.strikes >= MAX_STRIKES) socket.disconnect(true);
        throw new AppError('RATE_LIMIT_EXCEEDED', 'Too many events, please slow down', { retryAfter: rate.retryAfter });
      }
      if (!state.appId || !state.userId) throw new AppError('INVALID_TOKEN', 'Authenticate with auth2 first');
      await run({ app: { id: state.appId }, userId: state.userId });
    } catch (err) {
      const e = err instanceof AppError ? err : new AppError('INTERNAL_ERROR', 'Internal server error');
      if (!(err instanceof AppError)) this.deps.logger.error({ err }, 'socket event failed');
      if (typeof ack === 'function') ack(e.toBody());
    }
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

  private async pollRevokedClientKeys(): Promise<void> {
    try {
      const since = this.lastRevocationCheck - 2000;
      this.lastRevocationCheck = this.deps.clock.now();
      const revoked = await new AppsRepo(this.deps.store.db).clientKeysRevokedSince(since);
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
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k.toLowerCase()] = v;
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
