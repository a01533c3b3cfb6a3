import { stringifySetCookie } from 'cookie';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type Guard, header, SESSION_COOKIE, type OperatorAuth } from '../auth/guard.js';
import { AppError } from '../errors.js';
import type { AuditLog } from '../monitoring/audit.js';
import { SERVER_ALERTS, type KeyAlerts } from '../monitoring/key-alerts.js';
import { csrfTokenFor, type NewSession } from '../operators/operators-service.js';
import type { Services } from '../services.js';
import { ok } from './http-server.js';

/**
 * The dashboard's own calls (docs/dashboard.md): the operator's session (setup, login, logout) and what concerns
 * no single application or has no API route (the applications, a client key shown again, domains). Everything
 * else the dashboard does goes through the API's admin routes with the session cookie and the X-IMKIT-APP header,
 * through the same guard. Not in the route table (these are not the IMKIT API): the pages are their only client.
 *
 * Every call here is refused when its Origin names another site; the session's checks (cookie, CSRF token) are
 * the guard's (Guard.authenticateOperator).
 */
export function registerDashboardApi(app: FastifyInstance, deps: { guard: Guard; services: Services; audit: AuditLog; alerts: KeyAlerts; version: string }): void {
  const { guard, services, audit } = deps;
  const operators = services.operators;
  const apps = services.apps;
  const credentials = (request: FastifyRequest) => ({ headers: request.headers, ip: request.ip, method: request.method });
  const operatorOf = (request: FastifyRequest) => guard.authenticateOperator(credentials(request));

  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/dashboard/api/')) return;
    void reply.header('Cache-Control', 'no-store');
    const origin = header(request.headers, 'origin');
    if (origin !== undefined) {
      let same = false;
      try {
        same = new URL(origin).host === request.host;
      } catch {
        same = false;
      }
      if (!same) throw new AppError('CSRF_TOKEN_INVALID', 'Dashboard calls are accepted from the dashboard\'s own pages only');
    }
  });

  const setSession = (request: FastifyRequest, reply: FastifyReply, s: NewSession) => {
    void reply.header(
      'Set-Cookie',
      stringifySetCookie(SESSION_COOKIE, s.token, { httpOnly: true, sameSite: 'strict', path: '/', secure: request.protocol === 'https', maxAge: s.maxAgeSeconds }),
    );
    return ok({ operator: s.operator, csrfToken: s.csrfToken, expiresAt: new Date(s.expiresAt).toISOString() });
  };
  const clearSession = (request: FastifyRequest, reply: FastifyReply) =>
    reply.header('Set-Cookie', stringifySetCookie(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'strict', path: '/', secure: request.protocol === 'https', maxAge: 0, expires: new Date(0) }));
  const logged = (auth: OperatorAuth, request: FastifyRequest, appId: string, action: string, target?: string) =>
    audit.record({ appId, actor: { type: 'operator', id: auth.operator.id }, ip: request.ip, action, route: `${request.method} ${request.routeOptions.url}`, target, outcome: 'ok' });

  const credentialsBody = {
    type: 'object',
    required: ['email', 'password'],
    additionalProperties: false,
    properties: { email: { type: 'string', maxLength: 254 }, password: { type: 'string', maxLength: 1024 } },
  };

  // The web chat opened without &clientKey= (docs/dashboard.md, Web chat): the token travels in a header, never
  // in this URL.
  app.post('/chat/api/client-key', async (request) =>
    ok(await guard.clientKeyForToken(credentials(request), (tokenDigest) => apps.clientKeyForToken(tokenDigest))),
  );

  app.get('/dashboard/api/status', async () => ok({ setupNeeded: (await operators.count()) === 0, version: deps.version }));

  app.post<{ Body: { token: string; email: string; password: string } }>(
    '/dashboard/api/setup',
    { schema: { body: { ...credentialsBody, required: ['token', 'email', 'password'], properties: { ...credentialsBody.properties, token: { type: 'string', maxLength: 200 } } } } },
    async (request, reply) => setSession(request, reply, await operators.completeSetup(request.body.token, request.body.email, request.body.password, request.ip)),
  );

  app.post<{ Body: { email: string; password: string } }>('/dashboard/api/login', { schema: { body: credentialsBody } }, async (request, reply) => {
    const session = await operators.login(request.body.email, request.body.password, request.ip);
    return setSession(request, reply, session);
  });

  app.post('/dashboard/api/logout', async (request, reply) => {
    const auth = await operatorOf(request);
    await operators.logout(auth.sessionToken);
    clearSession(request, reply);
    return ok({});
  });

  // Asked by every page load: not being logged in is an answer here (operator null), not an error.
  app.get('/dashboard/api/session', async (request) => {
    let auth: OperatorAuth;
    try {
      auth = await operatorOf(request);
    } catch (err) {
      if (err instanceof AppError && err.code === 'INVALID_SESSION') return ok({ operator: null, setupNeeded: (await operators.count()) === 0 });
      throw err;
    }
    return ok({ operator: auth.operator, csrfToken: csrfTokenFor(auth.sessionToken), expiresAt: new Date(auth.expiresAt).toISOString() });
  });

  app.get('/dashboard/api/operators', async (request) => {
    await operatorOf(request);
    return ok({ data: await operators.list() });
  });

  // The server's own key alerts (invalid keys from one address name no application: docs/security.md, Alerts).
  // An application's alerts go through GET /admin/alerts like every admin route.
  app.get('/dashboard/api/alerts', async (request) => {
    await operatorOf(request);
    return ok(await deps.alerts.list(SERVER_ALERTS, { open: true, limit: 20 }));
  });

  app.post<{ Params: { id: string } }>(
    '/dashboard/api/alerts/:id/acknowledge',
    { schema: { params: { type: 'object', properties: { id: { type: 'string', maxLength: 64 } } } } },
    async (request) => {
      const auth = await operatorOf(request);
      const alert = await deps.alerts.acknowledge(SERVER_ALERTS, request.params.id, `operator:${auth.operator.id}`);
      logged(auth, request, SERVER_ALERTS, 'alert.acknowledge', `alert=${request.params.id}`);
      return ok(alert);
    },
  );

  app.get('/dashboard/api/apps', async (request) => {
    await operatorOf(request);
    return ok({ data: await apps.list() });
  });

  app.post<{ Body: { name: string; id?: string; domains?: string[] } }>(
    '/dashboard/api/apps',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: { name: { type: 'string', maxLength: 200 }, id: { type: 'string', maxLength: 64 }, domains: { type: 'array', maxItems: 100, items: { type: 'string', maxLength: 253 } } },
        },
      },
    },
    async (request) => {
      const auth = await operatorOf(request);
      const created = await apps.create({ name: request.body.name, id: request.body.id, domains: request.body.domains });
      logged(auth, request, created.id, 'app.create', `app=${created.id}`);
      return ok(created);
    },
  );

  const appOf = async (id: string) => apps.get(id).then((a) => a ?? Promise.reject(new AppError('APP_NOT_FOUND', `No application ${id}`)));
  const appParams = { type: 'object', properties: { app: { type: 'string', minLength: 1, maxLength: 64 } } };

  app.get<{ Params: { app: string } }>('/dashboard/api/apps/:app/client-key', { schema: { params: appParams } }, async (request) => {
    await operatorOf(request);
    return ok({ clientKey: await apps.clientKey(await appOf(request.params.app)) });
  });

  app.post<{ Params: { app: string } }>('/dashboard/api/apps/:app/client-key/rotate', { schema: { params: appParams } }, async (request) => {
    const auth = await operatorOf(request);
    const target = await appOf(request.params.app);
    const rotated = await apps.rotateClientKey(target);
    logged(auth, request, target.id, 'client_key.rotate', `app=${target.id}`);
    return ok(rotated);
  });

  app.put<{ Params: { app: string }; Body: { domains: string[] } }>(
    '/dashboard/api/apps/:app/domains',
    {
      schema: {
        params: appParams,
        body: { type: 'object', required: ['domains'], additionalProperties: false, properties: { domains: { type: 'array', maxItems: 100, items: { type: 'string', maxLength: 253 } } } },
      },
    },
    async (request) => {
      const auth = await operatorOf(request);
      const target = await appOf(request.params.app);
      const result = await apps.setDomains(target, request.body.domains);
      logged(auth, request, target.id, 'domains.update', `app=${target.id}`);
      return ok(result);
    },
  );
}
