import { callerOf } from '../../chat/policy.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const J = `-H 'Content-Type: application/json'`;

/** Runtime config: announcement, feature flags, censorship and any other key (spec §3.9). */
export function configRoutes({ config }: Services) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/config',
      auth: 'either',
      scope: 'config:read',
      summary: "The application's runtime config: every key and its value",
      example: `curl $BASE/config -H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`,
      handler: async ({ actor }) => config.get(callerOf(actor)),
    },
    {
      method: 'POST',
      url: '/config',
      auth: 'admin',
      scope: 'config:write',
      summary:
        'Set config keys: each key sent replaces that key, others are kept; returns the whole config. Checked keys: `announcement {text, pin?}`, `featureFlags {name: scalar}`, `censorship {keywords: string[], mode?: "mask"|"reject"}`',
      example: `curl -X POST $BASE/config -H "IM-API-KEY: $API_KEY" ${J} -d '{"censorship":{"keywords":["spam"],"mode":"mask"}}'`,
      // Any JSON: the service checks the shape and answers INVALID_BODY / INVALID_CONFIG_FORMAT.
      handler: async ({ actor, body }) => config.update(callerOf(actor), body),
    },
    {
      method: 'DELETE',
      url: '/config/:key',
      auth: 'admin',
      scope: 'config:write',
      summary: 'Delete one config key (deleting `censorship` turns filtering off); 404 CONFIG_NOT_FOUND when absent',
      example: `curl -X DELETE $BASE/config/announcement -H "IM-API-KEY: $API_KEY"`,
      schema: { params: { type: 'object', required: ['key'], properties: { key: { type: 'string', minLength: 1, maxLength: 256 } } } },
      handler: async ({ actor, params }) => config.delete(callerOf(actor), params.key),
    },
  ]);
}
