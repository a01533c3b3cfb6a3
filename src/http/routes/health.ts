import { AppError } from '../../errors.js';
import { defineRoutes } from '../route.js';

export function healthRoutes(isReady: () => boolean) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/healthz',
      auth: 'public',
      summary: 'Liveness and readiness: 200 once the store is migrated and the server accepts work, 503 while shutting down',
      example: 'curl $BASE/healthz',
      handler: async () => {
        if (!isReady()) throw new AppError('SERVICE_UNAVAILABLE', 'Shutting down');
        return { status: 'ok' };
      },
    },
  ]);
}
