import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { createShardedAdapter } from '@socket.io/redis-adapter';
import type { Logger } from 'pino';
import { createClient } from 'redis';
import type { Server } from 'socket.io';
import type { DomainEvent, EventBus } from '../events/bus.js';
import { atTurnEnd } from '../lib/turn-end.js';

/**
 * Cluster mode (docs/cluster.md): several nodes on one PostgreSQL, joined by one Redis.
 *
 * The nodes talk through the Socket.IO Redis adapter (sharded pub/sub, Redis 7) with server-side emits on one event.
 * What travels:
 * - every domain event a node commits, so every node's caches (rooms, users, credentials) drop what changed and every
 *   node delivers the event to the sockets it holds (socket delivery emits locally only: a node renders per-recipient
 *   payloads for its own sockets, and its "anyone online in this encoding" check looks at its own sockets);
 * - presence: which users have a socket on which node, and each application's socket count per node, as changes
 *   (batched per turn of the event loop), a full snapshot on request, and a heartbeat every second;
 * - "reload" notes for what a node keeps in memory that no domain event describes (webhook subscriptions, push
 *   credentials).
 * A node not heard from for `PEER_TIMEOUT_MS` is taken for dead: its presence is dropped.
 *
 * While Redis is unreachable a node cannot learn of other nodes' changes: it tells its caches not to keep anything
 * (they read the store), serves its own sockets and REST, and counts rate limits per node (the rate-limit store's
 * fallback, with the node count known when Redis was lost). When Redis returns, the caches start empty, and the nodes
 * exchange presence snapshots again.
 */

const EVENT = 'imkit:cluster';
const HEARTBEAT_MS = 1_000;
const PEER_TIMEOUT_MS = 5_000;

/** One message between nodes; every field but `n` (the sender's node id) is optional. */
interface Wire {
  n: string;
  /** Domain events committed by the sender, in commit order. */
  ev?: DomainEvent[];
  /** Users (app \0 user) who now have a socket on the sender, and who no longer have one. */
  on?: string[];
  off?: string[];
  /** Logged-in sockets per application on the sender (only the applications that changed, or all in a snapshot). */
  c?: Array<[string, number]>;
  /** `on` and `c` are the sender's whole presence (replace what is known of it). */
  snap?: 1;
  /**
   * The sender is new or came back (its own snapshot comes with it, since the others may have dropped what they knew
   * of it): every node answers with a snapshot.
   */
  hello?: 1;
  /** The sender asks this node for a snapshot. */
  ask?: string;
  hb?: 1;
  /** Something kept in memory must be read again: webhook subscriptions, push credentials of these applications. */
  reload?: { outbox?: 1; push?: string[] };
}

interface Peer {
  seen: number;
  users: Set<string>;
  counts: Map<string, number>;
}

export interface ClusterHooks {
  /** Redis was lost (false) or is back (true): caches must stop keeping, or start again from empty. */
  onTrust(trusted: boolean): void;
  /** Another node asks for in-memory state to be read again. */
  onReload(what: { outbox: boolean; push: string[] }): void;
  /** This node's users with a socket, and its logged-in sockets per application (for snapshots). */
  localUsers(): Iterable<[string, string]>;
  localCounts(): Iterable<[string, number]>;
}

const presenceKey = (appId: string, userId: string) => `${appId}\u0000${userId}`;

export class Cluster {
  readonly nodeId = `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly pub: ReturnType<typeof createClient>;
  private readonly sub: ReturnType<typeof createClient>;
  private io: Server | undefined;
  private hooks: ClusterHooks | undefined;
  private up = false;
  private closed = false;
  private readonly peers = new Map<string, Peer>();
  /** The number of nodes when Redis was last reachable (the rate-limit fallback divides by it). */
  private lastNodes = 1;
  private heartbeat: NodeJS.Timeout | undefined;
  private outgoing: Wire = { n: '' };
  /** Users whose presence here changed this turn, with where it ended (a leave then a join in one turn: online). */
  private presenceChanges = new Map<string, boolean>();
  private scheduled = false;
  private readonly totalListeners: Array<(appId: string, before: number, after: number) => void> = [];
  private readonly localCounts = new Map<string, number>();
  private lastErrorLog = 0;

  constructor(
    private readonly o: { url: string; prefix: string; logger: Logger; bus: EventBus },
  ) {
    const socket = { connectTimeout: 2_000, reconnectStrategy: (retries: number) => Math.min(100 * (retries + 1), 1_000) };
    // Publishing fails at once while Redis is away (no queue of stale events to replay later); the subscriber keeps
    // node-redis's queue, since the adapter subscribes before the connection is up, and it subscribes again itself
    // after a reconnection.
    this.pub = createClient({ url: o.url, socket, disableOfflineQueue: true });
    this.sub = createClient({ url: o.url, socket });
    for (const c of [this.pub, this.sub]) {
      c.on('error', (err: unknown) => this.logError(err));
      c.on('ready', () => this.status());
      c.on('end', () => this.status());
      c.on('reconnecting', () => this.status());
    }
    this.outgoing.n = this.nodeId;
    o.bus.on((e, remote) => {
      if (!remote) this.relay(e);
    });
  }

  /** Connects to Redis, waiting at most `waitMs` (a node starts without Redis too, and joins when it comes). */
  async connect(waitMs = 3_000): Promise<void> {
    const both = Promise.all([this.pub.connect(), this.sub.connect()]).then(
      () => true,
      (err: unknown) => {
        this.logError(err);
        return false;
      },
    );
    const ok = await Promise.race([both, new Promise<false>((r) => setTimeout(() => r(false), waitMs).unref())]);
    if (!ok) this.o.logger.warn('cluster: Redis not reachable at start; serving alone until it is (docs/cluster.md)');
  }

  /** The Socket.IO adapter of this cluster (sharded pub/sub; static subscriptions: nothing is broadcast per room). */
  adapter(): ReturnType<typeof createShardedAdapter> {
    return createShardedAdapter(this.pub, this.sub, { channelPrefix: `${this.o.prefix}:sio`, subscriptionMode: 'static' });
  }

  /** Starts exchanging presence and events over the Socket.IO server built with `adapter()`. */
  attach(io: Server, hooks: ClusterHooks): void {
    this.io = io;
    this.hooks = hooks;
    io.on(EVENT, (msg: unknown) => this.receive(msg));
    this.heartbeat = setInterval(() => this.tick(), HEARTBEAT_MS);
    this.heartbeat.unref();
    this.status();
    if (this.up) this.send({ ...this.snapshot(), hello: 1 });
    // Started without Redis: the caches must not keep anything until it comes (status() then says so).
    else hooks.onTrust(false);
  }

  /** Whether the link to the other nodes works now. */
  get connected(): boolean {
    return this.up;
  }

  /** Live nodes, this one included; while Redis is away, the number when it was last reachable. */
  nodes(): number {
    return this.up ? 1 + this.peers.size : this.lastNodes;
  }

  /** Whether a user has a socket on another node. */
  onlineElsewhere(appId: string, userId: string): boolean {
    if (this.peers.size === 0) return false;
    const key = presenceKey(appId, userId);
    for (const p of this.peers.values()) if (p.users.has(key)) return true;
    return false;
  }

  /** Logged-in sockets of an application on every node. */
  total(appId: string): number {
    return (this.localCounts.get(appId) ?? 0) + this.elsewhere(appId);
  }

  /** Tells `listener` whenever an application's logged-in sockets on all nodes change in number. */
  onTotal(listener: (appId: string, before: number, after: number) => void): void {
    this.totalListeners.push(listener);
  }

  /** Called by the realtime layer: a user's first socket on this node arrived, or its last one left. */
  localPresence(appId: string, userId: string, online: boolean): void {
    this.presenceChanges.set(presenceKey(appId, userId), online);
    this.schedule();
  }

  /** Called by the realtime layer: the application's logged-in sockets on this node are now `count`. */
  localCount(appId: string, count: number): void {
    const before = this.total(appId);
    if (count === 0) this.localCounts.delete(appId);
    else this.localCounts.set(appId, count);
    this.changedTotal(appId, before);
    (this.outgoing.c ??= []).push([appId, count]);
    this.schedule();
  }

  /** Asks the other nodes to read webhook subscriptions or push credentials again. */
  reload(what: { outbox?: boolean; push?: string }): void {
    const r = (this.outgoing.reload ??= {});
    if (what.outbox) r.outbox = 1;
    if (what.push) (r.push ??= []).push(what.push);
    this.schedule();
  }

  /**
   * Before the Socket.IO server closes (its adapter unsubscribes): with Redis away, the connections are dropped now,
   * so that nothing waits for Redis to return.
   */
  async beforeClose(): Promise<void> {
    if (!this.up) this.destroy();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    if (!this.up) return this.destroy();
    const quit = Promise.all([this.pub, this.sub].map((c) => (c.isOpen ? c.close().catch(() => c.destroy()) : undefined)));
    await Promise.race([quit, new Promise((r) => setTimeout(r, 2_000).unref())]);
    this.destroy();
  }

  private destroy(): void {
    this.closed = true;
    for (const c of [this.pub, this.sub]) if (c.isOpen) c.destroy();
  }

  private relay(e: DomainEvent): void {
    if (this.closed) return;
    // The stored row is for webhooks, which the outbox already has; the rendered message is what delivery needs.
    const out = e.type === 'message.created' && e.row ? { ...e, row: undefined } : e;
    (this.outgoing.ev ??= []).push(out);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    atTurnEnd('flush', () => this.flush());
  }

  /** Sends what this turn collected as one message (the order of events is kept: one publisher, one channel). */
  private flush(): void {
    this.scheduled = false;
    const msg = this.outgoing;
    this.outgoing = { n: this.nodeId };
    for (const [key, online] of this.presenceChanges) (msg[online ? 'on' : 'off'] ??= []).push(key);
    this.presenceChanges.clear();
    if (!this.up || !this.io) return;
    this.send(msg);
  }

  private send(msg: Wire): void {
    try {
      this.io?.serverSideEmit(EVENT, msg);
    } catch (err) {
      this.logError(err);
    }
  }

  private receive(raw: unknown): void {
    if (!isWire(raw) || raw.n === this.nodeId) return;
    const now = Date.now();
    let peer = this.peers.get(raw.n);
    if (!peer) {
      peer = { seen: now, users: new Set(), counts: new Map() };
      this.peers.set(raw.n, peer);
      // A node heard of for the first time: its whole presence, unless this is it.
      if (!raw.snap && !raw.hello) this.send({ n: this.nodeId, ask: raw.n });
    }
    peer.seen = now;
    if (raw.hello) this.send(this.snapshot());
    if (raw.ask === this.nodeId) this.send(this.snapshot());
    const on = strings(raw.on);
    const counts = (Array.isArray(raw.c) ? raw.c : []).filter((x): x is [string, number] => Array.isArray(x) && typeof x[0] === 'string' && typeof x[1] === 'number');
    if (raw.snap) {
      const apps = new Set([...peer.counts.keys(), ...counts.map(([a]) => a)]);
      const before = new Map([...apps].map((a) => [a, this.total(a)]));
      peer.users = new Set(on);
      peer.counts = new Map(counts.filter(([, n]) => n > 0));
      for (const a of apps) this.changedTotal(a, before.get(a)!);
    } else {
      for (const k of on) peer.users.add(k);
      for (const k of strings(raw.off)) peer.users.delete(k);
      for (const [app, n] of counts) {
        const before = this.total(app);
        if (n <= 0) peer.counts.delete(app);
        else peer.counts.set(app, n);
        this.changedTotal(app, before);
      }
    }
    if (raw.reload) this.hooks?.onReload({ outbox: raw.reload.outbox === 1, push: strings(raw.reload.push) });
    if (Array.isArray(raw.ev)) for (const e of raw.ev) if (e && typeof e === 'object' && typeof e.type === 'string') this.o.bus.emitRemote(e);
  }

  private elsewhere(appId: string): number {
    let n = 0;
    for (const p of this.peers.values()) n += p.counts.get(appId) ?? 0;
    return n;
  }

  private changedTotal(appId: string, before: number): void {
    const after = this.total(appId);
    if (after !== before) for (const l of this.totalListeners) l(appId, before, after);
  }

  private snapshot(): Wire {
    const on: string[] = [];
    for (const [app, user] of this.hooks?.localUsers() ?? []) on.push(presenceKey(app, user));
    return { n: this.nodeId, snap: 1, on, c: [...(this.hooks?.localCounts() ?? [])] };
  }

  private tick(): void {
    const now = Date.now();
    for (const [id, p] of this.peers) if (now - p.seen > PEER_TIMEOUT_MS) this.dropPeer(id);
    if (this.up) this.send({ n: this.nodeId, hb: 1 });
  }

  private dropPeer(id: string): void {
    const p = this.peers.get(id);
    if (!p) return;
    const before = new Map([...p.counts.keys()].map((a) => [a, this.total(a)]));
    this.peers.delete(id);
    for (const [app, n] of before) this.changedTotal(app, n);
    this.o.logger.info({ node: id }, 'cluster: a node stopped answering; its presence is dropped');
  }

  /** Works out whether the link is up after a client's state changed, and tells the caches. */
  private status(): void {
    if (this.closed) return;
    const up = this.pub.isReady && this.sub.isReady;
    if (up === this.up) return;
    this.up = up;
    if (up) {
      this.o.logger.info({ node: this.nodeId }, 'cluster: Redis reachable; caches in use, presence exchanged');
      this.hooks?.onTrust(true);
      if (this.io) this.send({ ...this.snapshot(), hello: 1 });
    } else {
      this.lastNodes = 1 + this.peers.size;
      this.o.logger.warn('cluster: Redis lost; serving this node\'s sockets, caches bypassed, rate limits per node until it returns');
      this.hooks?.onTrust(false);
      // What other nodes said may change unheard: their presence ages out (PEER_TIMEOUT_MS) unless they return.
    }
  }

  private logError(err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = now;
    this.o.logger.warn({ err: { message: (err as Error)?.message } }, 'cluster: Redis error');
  }
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function isWire(v: unknown): v is Wire {
  return typeof v === 'object' && v !== null && typeof (v as Wire).n === 'string';
}
