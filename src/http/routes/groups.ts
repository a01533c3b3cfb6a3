import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

/** User groups (spec §3.2 G1, G2). */
export function groupRoutes({ groups }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/admin/groups',
      auth: 'admin',
      scope: 'users:write',
      summary: 'Create a user group (a virtual user: put its id in a room’s members and all its users join the room)',
      example: `curl -X POST $BASE/admin/groups -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"_id":"support","nickname":"Support team","members":["agent1","agent2"]}'`,
      schema: {
        body: {
          type: 'object',
          properties: {
            _id: { type: 'string', minLength: 1, maxLength: 128 },
            nickname: { type: 'string', maxLength: 256 },
            avatarUrl: { type: 'string', maxLength: 4096 },
            members: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 128 }, maxItems: 10_000 },
          },
        },
      },
      handler: async ({ actor, body }) => groups.create(actor.app.id, body),
    },
    {
      method: 'GET',
      url: '/admin/groups',
      auth: 'admin',
      scope: 'users:read',
      summary: 'List user groups with their members (limit, default 50, at most 1000)',
      example: 'curl -G $BASE/admin/groups -H "IM-API-KEY: $API_KEY" -d limit=20',
      schema: { querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } } } },
      handler: async ({ actor, query }) => groups.list(actor.app.id, query.limit),
    },
  ]);
}
