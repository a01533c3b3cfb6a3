import { defineRoutes } from '../route.js';

/** Live connection figures, answered by the realtime layer (on every node, through its adapter). */
export interface Presence {
  connectionCount(appId: string): Promise<number>;
}

export function monitoringRoutes(presence: () => Presence | undefined) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/admin/connection-count',
      auth: 'admin',
      summary: "How many authenticated sockets of the caller's application are connected now",
      example: 'curl $BASE/admin/connection-count -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => ({ count: (await presence()?.connectionCount(actor.app.id)) ?? 0 }),
    },
  ]);
}
