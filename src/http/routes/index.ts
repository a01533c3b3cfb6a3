import type { Services } from '../../services.js';
import type { RouteDef } from '../route.js';
import { healthRoutes } from './health.js';
import { messageRoutes } from './messages.js';
import { roomRoutes } from './rooms.js';
import { userRoutes } from './users.js';

/** Every route the server serves, in the order docs/api.md lists them. */
export function routeTable(services: Services, isReady: () => boolean = () => true): RouteDef[] {
  return [...healthRoutes(isReady), ...userRoutes(services), ...roomRoutes(services), ...messageRoutes(services)];
}
