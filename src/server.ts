import type { FastifyInstance } from 'fastify';
import type { DestinationStream, Logger } from 'pino';
import type { CreatedApp } from './apps/apps-service.js';
import { Guard } from './auth/guard.js';
import { MemoryRateLimitStore, type RateLimitStore } from './auth/rate-limit.js';
import { RedisRateLimitStore } from './auth/redis-rate-limit.js';
import { type Config, ConfigError } from './config.js';
import { BatchWorker } from './chat/batch-service.js';
import { EventBus } from './events/bus.js';
import { buildHttp } from './http/http-server.js';
import { registerPages } from './http/pages.js';
import { registerDashboardApi } from './http/dashboard-api.js';
import { serverVersion } from './http/routes/docs.js';
import type { RouteDef } from './http/route.js';
import { routeTable } from './http/routes/index.js';
import { Realtime } from './realtime/gateway.js';
import { type Clock, systemClock } from './lib/clock.js';
import { createLogger } from './logger.js';
import { createServices, type Services } from './services.js';
import { openStore, type Store } from './store/database.js';
import { ConnectionPeaks } from './monitoring/connection-peaks.js';
import { Metrics } from './monitoring/metrics.js';
import { MonitoringService } from './monitoring/monitoring-service.js';
import { UsageMeter } from './monitoring/usage.js';
import { AuditLog } from './monitoring/audit.js';
import { KeyAlerts } from './monitoring/key-alerts.js';
import { Idempotency } from './apps/idempotency-service.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import { PayloadRenderer, receiverOf } from './webhooks/payloads.js';
import { PushSender } from './push/push-sender.js';
import { Cluster } from './cluster/cluster.js';
import { LeasesRepo } from './store/leases-repo.js';

export interface ServerOptions {
  clock?: Clock;
  /** Where log lines go (default stdout); tests pass a stream to read them. */
  logDestination?: DestinationStream;
  rateLimitStore?: RateLimitStore;
  /** How often per-API-key usage counted in memory is written to the store (default 10 s). */
  usageFlushMs?: number;
  /** How often the webhook dispatcher looks at its queue when nothing woke it (default 1 s). */
  webhookPollMs?: number;
}

/** What start-up did to the applications, for the CLI to report (it holds secrets only on first start). */
export interface Bootstrap {
  /** Set when this start created the `default` application: its keys, shown this once. */
  createdDefault?: CreatedApp;
  /** Set when IMKIT_APP_ID/IMKIT_API_KEY/IMKIT_CLIENT_KEY were applied. */
  fromEnv?: { appId: string; created: boolean; generated: { apiKey?: string; clientKey?: string } };
  /** Set while no dashboard operator exists: the single-use token of the setup link `start` prints. */
  operatorSetupToken?: string;
  /** Set when IMKIT_ADMIN_EMAIL/IMKIT_ADMIN_PASSWORD were applied. */
  adminFromEnv?: { email: string; created: boolean; passwordChanged: boolean };
}

export interface ImkitServer {
  config: Config;
  http: FastifyInstance;
  store: Store;
  services: Services;
  logger: Logger;
  bootstrap: Bootstrap;
  routes: RouteDef[];
  realtime: Realtime;
  guard: Guard;
  /** Per-API-key usage counted in memory; `flush()` writes it now (it is written every `usageFlushMs` anyway). */
  usage: UsageMeter;
  /** The Prometheus registry of this server; undefined while IMKIT_METRICS_TOKEN is unset. */
  metrics: Metrics | undefined;
  /** What API keys and operators did (docs/security.md); `flush()` writes what waits. */
  audit: AuditLog;
  /** Key anomaly alerts (docs/security.md); `flush()` writes what waits. */
  alerts: KeyAlerts;
  /** Sends webhooks (docs/webhooks.md). */
  dispatcher: WebhookDispatcher;
  /** Cluster mode (REDIS_URL, docs/cluster.md): the link to the other nodes. */
  cluster: Cluster | undefined;
  /** Listens on config.port/host; resolves to the base URL. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Opens the store, migrates it, makes sure an application exists, and builds the HTTP server. Holds no
 * module-level state, so tests run several servers in one process.
 */
export async function createServer(config: Config, options: ServerOptions = {}): Promise<ImkitServer> {
  const clock = options.clock ?? systemClock;
  const logger = createLogger(config, options.logDestination);
  const store = openStore(config);
  let newerMigrations: string[];
  try {
    newerMigrations = await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  if (newerMigrations.length > 0) logger.warn({ migrations: newerMigrations }, 'the store was migrated by a newer version of imkit-server; running with it (a rolling upgrade: upgrade this node too)');
  store.startBackgroundWork();
  const bus = new EventBus((err, event) => logger.error({ err, event: event.type }, 'event listener failed'));
  // Cluster mode (docs/cluster.md): events, presence and rate-limit counters shared through Redis.
  const cluster = config.redisUrl ? new Cluster({ url: config.redisUrl, prefix: config.clusterPrefix, logger, bus }) : undefined;
  if (cluster) await cluster.connect();
  // In a cluster the counters are shared through Redis, so a limit holds for the cluster as a whole.
  const rates =
    options.rateLimitStore ??
    (cluster ? new RedisRateLimitStore({ url: config.redisUrl!, prefix: `${config.clusterPrefix}:rl:`, nodes: () => cluster.nodes(), logger }) : new MemoryRateLimitStore());
  const services = createServices(store.db, store.dialect, clock, bus, config, (statements) => store.runBatch(statements), rates);
  const bootstrap = { ...(await bootstrapApps(services, config)), ...(await bootstrapOperators(services, config)) };
  const guard = new Guard(store, bus, rates, clock, config, {
    onWatchStatus: (reliable, err) => {
      if (reliable) logger.info('credential cache in use again: changes by other processes are noticed');
      else logger.warn({ err }, 'credential cache bypassed: changes by other processes cannot be noticed (retrying)');
    },
  });
  await guard.ready();
  // Dashboard sessions are a credential of the one guard (docs/dashboard.md).
  guard.operators = services.operators;

  let ready = true;
  let realtime: Realtime | undefined;
  const usage = new UsageMeter(store.db, clock, (err) => logger.error({ err }, 'writing API key usage failed'));
  usage.start(options.usageFlushMs ?? 10_000);
  const metrics =
    config.metricsToken === undefined
      ? undefined
      : new Metrics({ sockets: () => realtime?.socketCounts() ?? { open: 0, authenticated: 0 }, webhookBacklog: () => services.webhooks.backlog() });
  guard.observer = { apiKeyUsed: (appId, keyId, address, refused) => usage.record(appId, keyId, address, refused), refused: metrics && ((kind) => metrics.refused(kind)) };
  if (metrics) {
    bus.on((e, remote) => {
      if (!remote && e.type === 'message.created') metrics.messageStored(e.system);
    });
    services.chat.writer.onBatch = (size) => metrics.batch(size);
  }
  const peaks = new ConnectionPeaks(() => clock.now());
  const monitoring = new MonitoringService(store.db, clock, peaks, (appId) => (cluster ? cluster.total(appId) : (realtime?.appSocketsHere(appId) ?? 0)), metrics, config.metricsToken);
  // On SQLite through the writer thread (a write on the event loop's connection would wait for its commits).
  const audit = new AuditLog(store.db, clock, config.auditRetentionMs, (err) => logger.error({ err }, 'writing the audit log failed'), store.dialect === 'sqlite' ? (statements) => store.runBatch(statements) : undefined);
  audit.start();
  let dispatcher: WebhookDispatcher | undefined;
  const alerts = new KeyAlerts(
    store.db,
    clock,
    { rateFactor: config.alertRateFactor, rateMin: config.alertRateMin, invalidKeys: config.alertInvalidKeys, retentionMs: config.auditRetentionMs },
    {
      write: (statements) => store.runBatch(statements),
      audit,
      wantsWebhook: (appId) => services.chat.outbox.wants(appId, 'key.alert'),
      onEvents: () => dispatcher?.wake(),
      onError: (err) => logger.error({ err }, 'writing key alerts failed'),
    },
  );
  guard.observer.apiKeyPresented = (key, address) => alerts.used(key, address);
  guard.observer.invalidApiKey = (address, key) => alerts.invalidKey(address, key);
  const routes = routeTable(services, () => ready, () => realtime, monitoring, audit, alerts, cluster && (() => ({ redis: cluster.connected ? ('up' as const) : ('down' as const), nodes: cluster.nodes() })));
  const idempotency = new Idempotency(store.db, clock);
  const http = buildHttp({ config, logger, guard, routes, metrics, audit, idempotency });
  // The landing page, the dashboard and the web chat (docs/dashboard.md).
  registerPages(http);
  registerDashboardApi(http, { guard, services, audit, alerts, version: serverVersion() });
  realtime = new Realtime(http.server, { config, guard, services, clock, logger, idempotency, onEventRefused: metrics && (() => metrics.refused('socket_events')), cluster });
  // The peak of logged-in sockets per application (stats), on every node in a cluster.
  if (cluster) cluster.onTotal((appId, before, after) => peaks.changed(appId, before, after));
  else realtime.onAppSockets((appId, before, after) => peaks.changed(appId, before, after));
  await http.ready();
  const batchWorker = new BatchWorker(services.chat, services.batch, logger, { staleMs: 15_000, releaseAllAtStart: store.dialect === 'sqlite' });
  batchWorker.start();
  await services.chat.outbox.load();
  const payloads = new PayloadRenderer(store.db, services.chat.render, services.rooms);
  const pushSender = new PushSender({
    db: store.db,
    dialect: store.dialect,
    clock,
    logger,
    presence: services.presence,
    rooms: services.chat.roomCache,
    payloads,
    outbox: services.chat.outbox,
    providers: services.pushProviders,
    runBatch: (statements) => store.runBatch(statements),
    onAttempt: metrics && ((provider, outcome) => metrics.pushAttempt(provider, outcome)),
  });
  dispatcher = new WebhookDispatcher({
    db: store.db,
    dialect: store.dialect,
    clock,
    bus,
    logger,
    config,
    payloads,
    outbox: services.chat.outbox,
    push: pushSender,
    runBatch: (statements) => store.runBatch(statements),
    bot: {
      setBotState: async (appId, roomId, state) => void (await services.rooms.setBotState(receiverOf(appId), roomId, state)),
      post: async (appId, roomId, senderId, data) => void (await services.messages.botReply(appId, roomId, senderId, data)),
    },
    onAttempt: metrics && ((outcome) => metrics.webhookAttempt(outcome)),
    pollMs: options.webhookPollMs,
  });
  if (cluster) {
    // Periodic clean-ups: one node per period, whichever is alive (a lease in the store, docs/cluster.md).
    const leases = new LeasesRepo(store.db);
    const periodic = (name: string, periodMs: number) => leases.take(name, cluster.nodeId, clock.now(), periodMs).catch(() => false);
    for (const work of [audit.pruning, usage.pruning, alerts.pruning, idempotency.pruning, dispatcher.pruning]) work.gate = periodic;
  }
  services.webhooks.onDue = () => dispatcher.wake();
  services.webhooks.onChange = () => {
    dispatcher.forget();
    cluster?.reload({ outbox: true });
  };
  services.push.onDue = () => dispatcher.wake();
  services.push.onChange = (appId) => {
    pushSender.forget(appId);
    cluster?.reload({ push: appId });
  };
  if (cluster) {
    const rt = realtime;
    const reread = (what: string, work: Promise<void>) => void work.catch((err) => logger.error({ err }, `cluster: reading ${what} again failed`));
    services.chat.outbox.onNote = (what) => cluster.reload(what === 'room webhook' ? { outbox: true } : { push: what.push });
    cluster.attach(rt.io, {
      onTrust: (trusted) => {
        services.chat.roomCache.trust(trusted);
        services.chat.userCache.trust(trusted);
        // Webhook subscriptions and push credentials changed elsewhere meanwhile were not heard of.
        if (trusted) reread('webhook subscriptions', services.chat.outbox.load());
      },
      onReload: ({ outbox, push }) => {
        if (outbox) {
          dispatcher.forget();
          reread('webhook subscriptions', services.chat.outbox.load());
        }
        for (const appId of push) pushSender.forget(appId);
        if (push.length > 0) reread('push credentials', services.chat.outbox.loadPush());
      },
      localUsers: () => rt.usersHere(),
      localCounts: () => rt.appCountsHere(),
    });
  }
  dispatcher.start();

  let closed: Promise<void> | undefined;
  return {
    config,
    http,
    store,
    services,
    logger,
    bootstrap,
    routes,
    realtime,
    guard,
    usage,
    metrics,
    dispatcher,
    cluster,
    audit,
    alerts,
    async listen() {
      const address = await http.listen({ port: config.port, host: config.host });
      return address.replace('[::]', '127.0.0.1').replace('0.0.0.0', '127.0.0.1');
    },
    close() {
      closed ??= (async () => {
        // Graceful (docs/operations.md, Shutdown): the health check says 503 at once (a load balancer stops
        // sending); socket events are refused and the ones being handled finish with their acks; every message
        // accepted is stored; then the sockets close without a DISCONNECT packet (clients reconnect, elsewhere or
        // here after the restart), HTTP requests in flight finish (new ones get 503), and background work stops
        // (webhook and push deliveries not finished stay in the outbox for the next start).
        ready = false;
        await realtime!.drain();
        await services.chat.writer.idle();
        await new Promise((r) => setImmediate(r));
        // The last events go to the other nodes; with Redis away, nothing waits for it.
        await cluster?.beforeClose();
        // A keep-alive connection whose request is in flight when the server stops listening is not closed by Node
        // with it: answered, it would stay open, idle, for the whole keep-alive timeout, and the close (io.close()
        // and http.close() both wait for every connection) with it, past the deadline. From now on a connection is
        // let go as soon as its request is answered (Node adds a second of grace to this timeout).
        http.server.keepAliveTimeout = 1;
        await realtime!.close();
        await http.close();
        await services.chat.writer.idle();
        await batchWorker.stop();
        await dispatcher!.stop();
        await usage.close();
        await alerts.close();
        await audit.close();
        await guard.close();
        await rates.close();
        await cluster?.close();
        await services.files.storage.close();
        await store.close();
      })();
      return closed;
    },
  };
}


async function bootstrapApps(services: Services, config: Config): Promise<Bootstrap> {
  if (config.apiKey || config.clientKey || config.appId) {
    const appId = config.appId ?? 'default';
    const { created, generated } = await services.apps.ensureFromEnv(appId, config.apiKey, config.clientKey);
    return { fromEnv: { appId, created, generated } };
  }
  if (await services.apps.isEmpty()) {
    return { createdDefault: await services.apps.create({ id: 'default', name: 'default' }) };
  }
  return {};
}

/**
 * The first dashboard operator: IMKIT_ADMIN_EMAIL + IMKIT_ADMIN_PASSWORD when given (applied at every start), else,
 * while no operator exists, a setup token for the link `start` prints (docs/dashboard.md).
 */
async function bootstrapOperators(services: Services, config: Config): Promise<Pick<Bootstrap, 'operatorSetupToken' | 'adminFromEnv'>> {
  if ((config.adminEmail === undefined) !== (config.adminPassword === undefined)) {
    throw new ConfigError('IMKIT_ADMIN_EMAIL and IMKIT_ADMIN_PASSWORD go together: set both or neither');
  }
  let adminFromEnv: Bootstrap['adminFromEnv'];
  if (config.adminEmail !== undefined && config.adminPassword !== undefined) {
    adminFromEnv = { email: config.adminEmail.trim().toLowerCase(), ...(await services.operators.ensureFromEnv(config.adminEmail, config.adminPassword)) };
  }
  const operatorSetupToken = await services.operators.setupTokenIfNeeded();
  return { operatorSetupToken, adminFromEnv };
}
