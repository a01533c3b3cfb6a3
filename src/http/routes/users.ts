import { MAX_BATCH_USERS, MIN_CUSTOM_TOKEN_LENGTH, UsersService } from '../../chat/users-service.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const userId = { type: 'string', minLength: 1, maxLength: 128 };
const profile = {
  nickname: { type: 'string', maxLength: 256 },
  avatarUrl: { type: 'string', maxLength: 4096 },
  description: { type: 'string', maxLength: 4096 },
};
const expirationDate = { type: ['string', 'integer'], maxLength: 64 };
const idParams = { type: 'object', required: ['id'], properties: { id: userId } };

/** Users and tokens (spec §3.1 U1-U6, plus POST /me and DELETE /admin/clients/:id). */
/** A token the backend chooses: long enough not to be guessed (the service checks it too, for other callers). */
const customToken = { type: 'string', minLength: MIN_CUSTOM_TOKEN_LENGTH, maxLength: 4096 };

export function userRoutes({ users }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/admin/clients',
      auth: 'admin',
      scope: 'users:write',
      summary: 'Create or update a user; issue a token (issueAccessToken) or bind a custom one (token)',
      example: `curl -X POST $BASE/admin/clients -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"_id":"u1","nickname":"Alice","issueAccessToken":true}'`,
      schema: {
        body: {
          type: 'object',
          required: ['_id'],
          properties: {
            _id: userId,
            ...profile,
            isRobot: { type: 'boolean' },
            issueAccessToken: { type: 'boolean' },
            token: customToken,
            expirationDate,
          },
        },
      },
      handler: async ({ actor, body }) =>
        users.upsert(actor.app, {
          ...UsersService.profileFrom(body),
          id: body._id,
          issueAccessToken: body.issueAccessToken,
          token: body.token,
          expirationDate: body.expirationDate,
        }),
    },
    {
      method: 'POST',
      url: '/admin/clients/list',
      auth: 'admin',
      scope: 'users:write',
      summary: 'Create or update many users at once (never issues tokens)',
      example: `curl -X POST $BASE/admin/clients/list -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"data":[{"_id":"u2","nickname":"Bob"}]}'`,
      schema: {
        body: {
          type: 'object',
          required: ['data'],
          properties: {
            data: {
              type: 'array',
              maxItems: MAX_BATCH_USERS,
              items: { type: 'object', required: ['_id'], properties: { _id: userId, ...profile, isRobot: { type: 'boolean' } } },
            },
          },
        },
      },
      handler: async ({ actor, body }) =>
        users.upsertMany(
          actor.app,
          (body.data as Array<Record<string, unknown>>).map((item) => ({ ...UsersService.profileFrom(item), id: item._id as string })),
        ),
    },
    {
      method: 'GET',
      url: '/admin/clients',
      auth: 'admin',
      scope: 'users:read',
      summary: 'List users, optionally filtered by a MongoDB-style query q (limit <= 100)',
      example: `curl -G $BASE/admin/clients -H "IM-API-KEY: $API_KEY" --data-urlencode 'q={"nickname":{"$regex":"^Al"}}' -d limit=20`,
      schema: {
        querystring: {
          type: 'object',
          properties: {
            q: { type: 'string', maxLength: 8192 },
            limit: { type: 'integer', minimum: 1, default: 50 },
            skip: { type: 'integer', minimum: 0, maximum: 1_000_000_000, default: 0 },
          },
        },
      },
      handler: async ({ actor, query }) => users.list(actor.app, query.q, query.limit, query.skip),
    },
    {
      method: 'DELETE',
      url: '/admin/clients/:id',
      auth: 'admin',
      scope: 'users:write',
      summary: 'Delete a user and revoke all of their tokens',
      example: `curl -X DELETE $BASE/admin/clients/u1 -H "IM-API-KEY: $API_KEY"`,
      schema: { params: idParams },
      handler: async ({ actor, params }) => users.delete(actor.app, params.id),
    },
    {
      method: 'PUT',
      url: '/admin/clients/:id/token',
      auth: 'admin',
      scope: 'tokens:write',
      summary: "Replace a user's custom token",
      example: `curl -X PUT $BASE/admin/clients/u1/token -H "IM-API-KEY: $API_KEY" -H 'Content-Type: application/json' -d '{"token":"my-own-token-0000001","expirationDate":"2030-01-01T00:00:00Z"}'`,
      schema: {
        params: idParams,
        body: {
          type: 'object',
          required: ['token', 'expirationDate'],
          properties: { token: customToken, expirationDate },
        },
      },
      handler: async ({ actor, params, body }) => users.replaceToken(actor.app, params.id, body.token, body.expirationDate),
    },
    {
      method: 'DELETE',
      url: '/admin/clients/:id/token',
      auth: 'admin',
      scope: 'tokens:write',
      summary: 'Revoke one token of a user (body token) or all of them (no body)',
      example: `curl -X DELETE $BASE/admin/clients/u1/token -H "IM-API-KEY: $API_KEY"`,
      schema: {
        params: idParams,
        body: { type: ['object', 'null'], properties: { token: { type: 'string', minLength: 1, maxLength: 4096 } } },
      },
      handler: async ({ actor, params, body }) => users.revokeTokens(actor.app, params.id, body?.token),
    },
    {
      method: 'GET',
      url: '/me',
      auth: 'user',
      scope: 'users:read',
      summary: 'The calling user (the API key names the user with IM-CLIENT-ID)',
      example: `curl $BASE/me -H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`,
      handler: async ({ actor, ip, headers }) =>
        users.me(actor, { ip, userAgent: typeof headers['user-agent'] === 'string' ? headers['user-agent'] : undefined }),
    },
    {
      method: 'POST',
      url: '/me',
      auth: 'user',
      scope: 'users:write',
      summary: "Update the calling user's own profile (nickname, avatarUrl, description, custom fields)",
      example: `curl -X POST $BASE/me -H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN" -H 'Content-Type: application/json' -d '{"nickname":"Alice B."}'`,
      schema: { body: { type: 'object', properties: profile } },
      handler: async ({ actor, body }) => users.updateMe(actor, UsersService.profileFrom(body)),
    },
  ]);
}
