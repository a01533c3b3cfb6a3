import { AppError } from '../../errors.js';
import { defineRoutes } from '../route.js';

export function healthRoutes(isReady: () => boolean, cluster?: () => { redis: 'up' | 'down'; nodes: number } | undefined) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/healthz',
      auth: 'public',
      summary: 'Liveness and readiness: 200 once the store is migrated and the server accepts work, 503 while shutting down; in cluster mode also whether this node reaches Redis and how many nodes it knows of',
      example: 'curl $BASE/healthz',
      handler: async () => {
        if (!isReady()) throw new AppError('SERVICE_UNAVAILABLE', 'Shutting down');
        const c = cluster?.();
        // Cluster mode: whether this node reaches Redis (it serves either way) and how many nodes it knows of.
        return c ? { status: 'ok', cluster: c } : { status: 'ok' };
      },
    },
  ]);
}
