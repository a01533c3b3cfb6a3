import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Kinds of refusal counted by `imkit_rate_limit_refusals_total` (docs/monitoring.md). */
export type RefusalKind = 'api_key' | 'user_token' | 'auth_failures' | 'socket_events';

/** What the metrics read from the live server when scraped. */
export interface MetricSources {
  /** Sockets connected to this node, and those logged in. */
  sockets(): { open: number; authenticated: number };
  /** Webhook events not yet fanned out, and deliveries waiting or being sent (read from the store). */
  webhookBacklog(): Promise<{ events: number; byStatus: Record<string, number> }>;
}

/**
 * The server's Prometheus metrics, one registry per server (tests run several servers in one process). Built
 * only when IMKIT_METRICS_TOKEN is set: with /metrics off, nothing is counted on the request path.
 * prom-client's default metrics (event-loop lag, heap, CPU, handles, GC) are in the same registry; they describe
 * the process, so with several servers in one process each registry reports the same process. prom-client
 * offers no way to stop what they start (an event-loop delay monitor, a GC observer), so each server with
 * metrics on leaves those running until the process exits: one per process in production.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly latency: Histogram<'method' | 'route'>;
  private readonly messages: Counter<'kind'>;
  private readonly batches: Histogram;
  private readonly refusals: Counter<'kind'>;
  private readonly webhookAttempts: Counter<'outcome'>;
  private readonly pushAttempts: Counter<'provider' | 'outcome'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'imkit_http_requests_total', help: 'HTTP requests answered, by route pattern and status', labelNames: ['method', 'route', 'status'], registers });
    this.latency = new Histogram({
      name: 'imkit_http_request_duration_seconds',
      help: 'Time from receiving a request to sending its answer, by route pattern',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.messages = new Counter({ name: 'imkit_messages_stored_total', help: 'Messages stored (kind: user or system); rate() gives messages per second', labelNames: ['kind'], registers });
    this.batches = new Histogram({
      name: 'imkit_message_batch_size',
      help: "Users' messages written by one group commit (src/chat/message-writer.ts)",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    });
    this.refusals = new Counter({ name: 'imkit_rate_limit_refusals_total', help: 'Requests, socket logins and socket events refused by a rate limit (429), by limit', labelNames: ['kind'], registers });
    new Gauge({
      name: 'imkit_sockets',
      help: 'Sockets connected to this node (state: open = every connected socket, authenticated = logged in)',
      labelNames: ['state'],
      registers,
      collect() {
        const s = sources.sockets();
        this.set({ state: 'open' }, s.open);
        this.set({ state: 'authenticated' }, s.authenticated);
      },
    });
    this.webhookAttempts = new Counter({
      name: 'imkit_webhook_attempts_total',
      help: 'Webhook delivery attempts by outcome: delivered (2xx), retry (failed, another attempt scheduled), failed (no attempt left), refused (target not allowed)',
      labelNames: ['outcome'],
      registers,
    });
    this.pushAttempts = new Counter({
      name: 'imkit_push_attempts_total',
      help: 'Push notification attempts by provider (fcm, apns, web, hook) and outcome: delivered, retry, failed, invalid (the provider reported the token dead; the device was removed)',
      labelNames: ['provider', 'outcome'],
      registers,
    });
    new Gauge({
      name: 'imkit_webhook_backlog',
      help: 'Webhook and push work waiting: state = events (not yet turned into deliveries), pending (deliveries waiting for an attempt), sending (in flight)',
      labelNames: ['state'],
      registers,
      async collect() {
        const b = await sources.webhookBacklog();
        this.set({ state: 'events' }, b.events);
        this.set({ state: 'pending' }, b.byStatus.pending ?? 0);
        this.set({ state: 'sending' }, b.byStatus.sending ?? 0);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** `route` is the route pattern (`/rooms/:id`), never the URL: a label per room id would grow without end. */
  request(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) });
    this.latency.observe({ method, route }, seconds);
  }

  messageStored(system: boolean): void {
    this.messages.inc({ kind: system ? 'system' : 'user' });
  }

  batch(size: number): void {
    this.batches.observe(size);
  }

  webhookAttempt(outcome: string): void {
    this.webhookAttempts.inc({ outcome });
  }

  pushAttempt(provider: string, outcome: string): void {
    this.pushAttempts.inc({ provider, outcome });
  }

  refused(kind: RefusalKind): void {
    this.refusals.inc({ kind });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
