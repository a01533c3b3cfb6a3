import { createHash, timingSafeEqual } from 'node:crypto';
import { AppError } from '../../errors.js';
import type { Metrics } from '../../monitoring/metrics.js';
import type { MonitoringService } from '../../monitoring/monitoring-service.js';
import { defineRoutes } from '../route.js';

/** Live connection figures, answered by the realtime layer (on every node, through its adapter). */
export interface Presence {
  connectionCount(appId: string): Promise<number>;
}

/** What the monitoring routes need besides presence; built by createServer (absent in the docs generator). */
export interface MonitorDeps {
  service?: MonitoringService;
  /** Set only when IMKIT_METRICS_TOKEN is (see Metrics). */
  metrics?: Metrics;
  metricsToken?: string;
}

export function monitoringRoutes(presence: () => Presence | undefined, monitor: MonitorDeps = {}) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/admin/connection-count',
      auth: 'admin',
      summary: "How many authenticated sockets of the caller's application are connected now",
      example: 'curl $BASE/admin/connection-count -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => ({ count: (await presence()?.connectionCount(actor.app.id)) ?? 0 }),
    },
    {
      method: 'GET',
      url: '/admin/stats',
      auth: 'admin',
      summary:
        "The application's figures of the last hour: active users, active and total rooms, messages, this node's peak of sockets, host memory; the keys masked to their last 4 characters (docs/monitoring.md)",
      example: 'curl $BASE/admin/stats -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => monitor.service!.stats(actor),
    },
    {
      method: 'GET',
      url: '/admin/usage',
      auth: 'admin',
      summary: "The application's API keys (last 4 characters) with their last use, address and requests per minute over the last hour (written every 10 s)",
      example: 'curl $BASE/admin/usage -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => monitor.service!.usage(actor),
    },
    {
      method: 'GET',
      url: '/metrics',
      // Not an application's credential: the operator's bearer token, checked here (IMKIT_METRICS_TOKEN).
      auth: 'public',
      summary: 'Prometheus metrics of this node (text format); requires `Authorization: Bearer $IMKIT_METRICS_TOKEN`, 401 while that setting is unset (docs/monitoring.md)',
      example: 'curl $BASE/metrics -H "Authorization: Bearer $METRICS_TOKEN"',
      raw: { contentType: 'text/plain; version=0.0.4; charset=utf-8' },
      handler: async ({ headers }) => {
        const { metrics, metricsToken } = monitor;
        if (!metrics || metricsToken === undefined) {
          throw new AppError('INVALID_TOKEN', 'Metrics are disabled on this server: set IMKIT_METRICS_TOKEN (or --metrics-token) to a random string of 16 or more characters, and send it as "Authorization: Bearer <token>"');
        }
        const raw = headers.authorization;
        const presented = (Array.isArray(raw) ? raw[0] : raw)?.replace(/^Bearer\s+/i, '').trim() ?? '';
        if (!sameSecret(presented, metricsToken)) throw new AppError('INVALID_TOKEN', 'The metrics token is missing or wrong: send "Authorization: Bearer <IMKIT_METRICS_TOKEN>"');
        return metrics.text();
      },
    },
  ]);
}

/** Compares digests, so the time taken says nothing about the token, its length included. */
function sameSecret(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
