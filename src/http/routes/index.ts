import type { Services } from '../../services.js';
import type { RouteDef } from '../route.js';
import { batchRoutes } from './batch.js';
import { configRoutes } from './config.js';
import { docsRoutes } from './docs.js';
import { fileRoutes } from './files.js';
import { groupRoutes } from './groups.js';
import { healthRoutes } from './health.js';
import { keyRoutes } from './keys.js';
import { messageRoutes } from './messages.js';
import { moderationRoutes } from './moderation.js';
import type { MonitoringService } from '../../monitoring/monitoring-service.js';
import type { AuditLog } from '../../monitoring/audit.js';
import type { KeyAlerts } from '../../monitoring/key-alerts.js';
import { monitoringRoutes, type Presence } from './monitoring.js';
import { prefRoutes } from './prefs.js';
import { pushRoutes } from './push.js';
import { roomRoutes } from './rooms.js';
import { searchRoutes } from './search.js';
import { userRoutes } from './users.js';
import { webhookRoutes } from './webhooks.js';

/** Every route the server serves, in the order docs/api.md lists them. */
export function routeTable(services: Services, isReady: () => boolean = () => true, presence: () => Presence | undefined = () => undefined, monitoring?: MonitoringService, audit?: AuditLog, alerts?: KeyAlerts, cluster?: () => { redis: 'up' | 'down'; nodes: number } | undefined): RouteDef[] {
  // The docs routes describe the whole table, themselves included.
  const routes: RouteDef[] = [...healthRoutes(isReady, cluster), ...docsRoutes(() => routes), ...userRoutes(services), ...roomRoutes(services), ...messageRoutes(services), ...prefRoutes(services), ...searchRoutes(services), ...fileRoutes(services), ...batchRoutes(services), ...groupRoutes(services), ...moderationRoutes(services), ...configRoutes(services), ...webhookRoutes(services), ...pushRoutes(services), ...keyRoutes(services), ...monitoringRoutes(presence, monitoring, audit, alerts)];
  return routes;
}
