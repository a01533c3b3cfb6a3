import { callerOf } from '../../chat/policy.js';
import { PROVIDERS } from '../../push/providers.js';
import type { Services } from '../../services.js';
import { defineRoutes } from '../route.js';

const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const J = `-H 'Content-Type: application/json'`;
const A = `-H "IM-API-KEY: $API_KEY"`;
// Types are checked by the service, which names the field it refuses and answers MISSING_PARAMETER as IMKIT does.
const looseBody = { type: 'object' };
const providerParams = { type: 'object', required: ['provider'], properties: { provider: { type: 'string', enum: [...PROVIDERS] } } };

/** Push notifications: device registration, the platform's push routes, credentials per application (docs/push.md). */
export function pushRoutes({ push }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/me/subscribe',
      auth: 'user',
      scope: 'users:write',
      summary: "Register the caller's device for push: type ios|apns|android|fcm|web, token (web: the PushSubscription object), deviceId optional; returns {}",
      example: `curl -X POST $BASE/me/subscribe ${H} ${J} -d '{"type":"fcm","token":"<FCM registration token>","deviceId":"phone-1"}'`,
      schema: { body: looseBody },
      handler: async ({ actor, body }) => push.subscribe(callerOf(actor), body),
    },
    {
      method: 'POST',
      url: '/me/unsubscribe',
      auth: 'user',
      scope: 'users:write',
      summary: "Remove the caller's device(s) of a type by deviceId or token; returns {n, ok} (n: devices removed)",
      example: `curl -X POST $BASE/me/unsubscribe ${H} ${J} -d '{"type":"fcm","deviceId":"phone-1"}'`,
      schema: { body: looseBody },
      handler: async ({ actor, body }) => push.unsubscribe(callerOf(actor), body),
    },
    {
      method: 'POST',
      url: '/push/push2clients',
      auth: 'admin',
      scope: 'push:write',
      summary: 'Push to every registered device of these users (payload: type, expiry, alert, badge, sound, topic, title, body, icon, collapseKey); returns {}',
      example: `curl -X POST $BASE/push/push2clients ${A} ${J} -d '{"clients":["user001"],"payload":{"title":"Hello","body":"A new offer","badge":1,"sound":"default"}}'`,
      schema: { body: looseBody },
      handler: async ({ actor, body }) => push.push2clients(actor.app.id, body),
    },
    {
      method: 'POST',
      url: '/push/push2tokens',
      auth: 'admin',
      scope: 'push:write',
      summary: 'Push to device tokens of one type (ios|apns|android|fcm|web), registered or not; same payload as push2clients; returns {}',
      example: `curl -X POST $BASE/push/push2tokens ${A} ${J} -d '{"type":"ios","tokens":["<64 hex APNs token>"],"payload":{"alert":"Hello","badge":1}}'`,
      schema: { body: looseBody },
      handler: async ({ actor, body }) => push.push2tokens(actor.app.id, body),
    },
    {
      method: 'PUT',
      url: '/admin/push/credentials/:provider',
      auth: 'admin',
      scope: 'push:write',
      summary: 'Set the application\'s credentials for a push provider: fcm (service account JSON), apns ({keyId, teamId, bundleId, key}), web ({subject, publicKey?, privateKey?}), hook ({url}); answers what may be shown, never a secret',
      example: `curl -X PUT $BASE/admin/push/credentials/fcm ${A} ${J} -d @service-account.json`,
      schema: { params: providerParams, body: looseBody },
      handler: async ({ actor, params, body }) => push.putCredentials(actor.app.id, params.provider, body),
    },
    {
      method: 'GET',
      url: '/admin/push/credentials',
      auth: 'admin',
      scope: 'push:write',
      summary: 'The push providers configured for the application, with what may be shown (project, key id, VAPID public key, hook URL), never a secret',
      example: `curl $BASE/admin/push/credentials ${A}`,
      handler: async ({ actor }) => push.listCredentials(actor.app.id),
    },
    {
      method: 'DELETE',
      url: '/admin/push/credentials/:provider',
      auth: 'admin',
      scope: 'push:write',
      summary: "Remove the application's credentials for a push provider (404 PUSH_CREDENTIALS_NOT_FOUND when none)",
      example: `curl -X DELETE $BASE/admin/push/credentials/apns ${A}`,
      schema: { params: providerParams },
      handler: async ({ actor, params }) => push.deleteCredentials(actor.app.id, params.provider),
    },
  ]);
}
