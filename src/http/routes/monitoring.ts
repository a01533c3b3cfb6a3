import type { AuditLog } from '../../monitoring/audit.js';
import type { KeyAlerts } from '../../monitoring/key-alerts.js';
import type { MonitoringService } from '../../monitoring/monitoring-service.js';
import { defineRoutes } from '../route.js';

/** Live connection figures, answered by the realtime layer (on every node, through its adapter). */
export interface Presence {
  connectionCount(appId: string): Promise<number>;
}

/** `monitoring` is built by createServer (the docs generator lists the routes without it). */
export function monitoringRoutes(presence: () => Presence | undefined, monitoring?: MonitoringService, audit?: AuditLog, alerts?: KeyAlerts) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/admin/connection-count',
      auth: 'admin',
      scope: 'stats:read',
      summary: "How many authenticated sockets of the caller's application are connected now",
      example: 'curl $BASE/admin/connection-count -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => ({ count: (await presence()?.connectionCount(actor.app.id)) ?? 0 }),
    },
    {
      method: 'GET',
      url: '/admin/stats',
      auth: 'admin',
      scope: 'stats:read',
      summary:
        "The application's figures of the last hour: active users, active and total rooms, messages, this node's peak of sockets, host memory; the keys masked to their last 4 characters (docs/monitoring.md)",
      example: 'curl $BASE/admin/stats -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => monitoring!.stats(actor),
    },
    {
      method: 'GET',
      url: '/admin/usage',
      auth: 'admin',
      scope: 'stats:read',
      summary: "The application's API keys (last 4 characters) with their last use, address and requests per minute over the last hour (written every 10 s)",
      example: 'curl $BASE/admin/usage -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => monitoring!.usage(actor),
    },
    {
      method: 'GET',
      url: '/admin/audit',
      auth: 'admin',
      scope: 'audit:read',
      summary: "What the application's API keys and its operators did, newest first: calls that change state, refusals of live keys, key events (filters actor = key id or fingerprint, action, target; page with before = the last _id)",
      example: 'curl -G $BASE/admin/audit -H "IM-API-KEY: $API_KEY" -d limit=20 -d action=clients.create',
      schema: {
        querystring: {
          type: 'object',
          properties: {
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
            before: { type: 'string', maxLength: 24 },
            actor: { type: 'string', maxLength: 64 },
            action: { type: 'string', maxLength: 100 },
            target: { type: 'string', maxLength: 500 },
          },
        },
      },
      handler: async ({ actor, query }) => audit!.list(actor.app.id, query),
    },
    {
      method: 'GET',
      url: '/admin/alerts',
      auth: 'admin',
      scope: 'audit:read',
      summary:
        "Key anomaly alerts of the application, newest first: a key used from a new address, a key's rate far above its baseline, an address sending many invalid keys (open = not yet acknowledged; page with before = the last _id; docs/security.md)",
      example: 'curl -G $BASE/admin/alerts -H "IM-API-KEY: $API_KEY" -d open=true',
      schema: {
        querystring: {
          type: 'object',
          properties: {
            open: { type: 'boolean' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
            before: { type: 'string', maxLength: 24 },
          },
        },
      },
      handler: async ({ actor, query }) => alerts!.list(actor.app.id, query),
    },
    {
      method: 'POST',
      url: '/admin/alerts/:id/acknowledge',
      auth: 'admin',
      // No scope: like managing keys, acknowledging what happened to them needs a key without scopes.
      summary: 'Acknowledges an alert: it leaves the open list (the dashboard banner) and stays in the list and the audit log',
      example: 'curl -X POST $BASE/admin/alerts/$ALERT_ID/acknowledge -H "IM-API-KEY: $API_KEY"',
      schema: { params: { type: 'object', properties: { id: { type: 'string', maxLength: 64 } }, required: ['id'] } },
      handler: async ({ actor, params }) => alerts!.acknowledge(actor.app.id, params.id, actor.kind !== 'admin' ? actor.userId : actor.operator ? `operator:${actor.operator.id}` : `apiKey:${actor.apiKeyFingerprint ?? actor.apiKeyId}`),
    },
    {
      method: 'GET',
      url: '/metrics',
      // Not an application's credential: the operator's bearer token, checked here (IMKIT_METRICS_TOKEN).
      auth: 'public',
      summary: 'Prometheus metrics of this node (text format); requires `Authorization: Bearer $IMKIT_METRICS_TOKEN`, 401 while that setting is unset (docs/monitoring.md)',
      example: 'curl $BASE/metrics -H "Authorization: Bearer $METRICS_TOKEN"',
      raw: { contentType: 'text/plain; version=0.0.4; charset=utf-8' },
      handler: async ({ headers }) => monitoring!.metricsText(headers.authorization),
    },
  ]);
}
