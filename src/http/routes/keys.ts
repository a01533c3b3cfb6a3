import { invalidRequest } from '../../errors.js';
import { parseDuration } from '../../lib/duration.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

/**
 * The application's API keys over HTTP (docs/security.md). No scope is declared: only a key without scopes may
 * manage keys, so a limited key can never make itself a stronger one.
 */
export function keyRoutes({ apps }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/admin/api-keys',
      auth: 'admin',
      summary: 'Add an API key, optionally limited to scopes, addresses, a lifetime and its own requests per minute; the key is in this answer only (needs a key without scopes)',
      example: `curl -X POST $BASE/admin/api-keys -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"name":"reporting","scopes":["rooms:read"],"allowIps":["203.0.113.0/24"],"expiresIn":"90d"}'`,
      schema: {
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', maxLength: 100 },
            scopes: { type: 'array', maxItems: 20, items: { type: 'string', maxLength: 40 } },
            allowIps: { type: 'array', maxItems: 100, items: { type: 'string', maxLength: 64 } },
            expiresIn: { type: 'string', maxLength: 16 },
            rateLimitPerMinute: { type: 'integer' },
          },
        },
      },
      handler: async ({ actor, body }) =>
        apps.createApiKey(actor.app, { name: body?.name, scopes: body?.scopes, allowIps: body?.allowIps, expiresIn: body?.expiresIn, rateLimitPerMinute: body?.rateLimitPerMinute }),
    },
    {
      method: 'GET',
      url: '/admin/api-keys',
      auth: 'admin',
      summary: "The application's API keys: fingerprint, last 4, name, scopes, allowlist, limit, status, created, expires, last use (never a secret; needs a key without scopes)",
      example: 'curl $BASE/admin/api-keys -H "IM-API-KEY: $API_KEY"',
      handler: async ({ actor }) => ({ data: await apps.listApiKeys(actor.app) }),
    },
    {
      method: 'DELETE',
      url: '/admin/api-keys/:key',
      auth: 'admin',
      summary: 'Revoke a live API key, named by its fingerprint, its id, or its last 4 characters when unique; from the next request on (needs a key without scopes)',
      example: 'curl -X DELETE $BASE/admin/api-keys/3f9a1c0b2e -H "IM-API-KEY: $API_KEY"',
      schema: { params: { type: 'object', properties: { key: { type: 'string', minLength: 1, maxLength: 64 } } } },
      handler: async ({ actor, params }) => apps.revokeApiKey(actor.app, params.key),
    },
    {
      method: 'POST',
      url: '/admin/api-keys/:key/rotate',
      auth: 'admin',
      summary: 'Replace a live API key by a new one with the same name, scopes, allowlist and limit; the old key keeps working for expireOldIn (0: revoked now; default 24h); the new key is in this answer only (needs a key without scopes)',
      example: `curl -X POST $BASE/admin/api-keys/3f9a1c0b2e/rotate -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"expireOldIn":"1h"}'`,
      schema: {
        params: { type: 'object', properties: { key: { type: 'string', minLength: 1, maxLength: 64 } } },
        body: { type: ['object', 'null'], additionalProperties: false, properties: { expireOldIn: { type: 'string', maxLength: 16 } } },
      },
      handler: async ({ actor, params, body }) => {
        const text = body?.expireOldIn ?? '24h';
        const ms = parseDuration(text);
        if (ms === undefined) throw invalidRequest('Invalid field expireOldIn: a duration such as 0, 1h, 24h or 7d', { field: 'expireOldIn' });
        return apps.rotateOneApiKey(actor.app, params.key, ms);
      },
    },
  ]);
}
