import { STATUS_CODES } from 'node:http';
import cors from '@fastify/cors';
import multipart from '@fastify/multipart';
import { Ajv, type Options as AjvOptions } from 'ajv';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import { corsOptions } from '../auth/cors.js';
import { type Actor, type Guard, header } from '../auth/guard.js';
import type { Idempotency } from '../apps/idempotency-service.js';
import { actionOf, type AuditLog } from '../monitoring/audit.js';
import type { RateDecision } from '../auth/rate-limit.js';
import type { Config } from '../config.js';
import { AppError, fromStoreError, isStatementTimeout } from '../errors.js';
import { trustFunction } from '../lib/client-address.js';
import { jsonTextTooDeep, tooDeep } from '../lib/json-depth.js';
import { redactUrl } from '../logger.js';
import type { Metrics } from '../monitoring/metrics.js';
import { Described, FileReply, type Part, type RouteDef, type RouteRequest } from './route.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every route that is not public. */
    actor?: Actor;
    /** A live API key the guard refused (scope, address, rate): the audit log records it. */
    refusedKey?: AppError['keyRef'];
  }
}

/**
 * Builds the Fastify instance: one error handler, one envelope, one auth hook, and the routes it is given.
 * Knows no business rules.
 */
export function buildHttp(opts: {
  config: Pick<Config, 'bodyLimitBytes' | 'trustProxy' | 'corsOrigins' | 'maxJsonDepth' | 'publicUrl' | 'headersTimeoutMs' | 'requestTimeoutMs' | 'keepAliveTimeoutMs'>;
  logger: Logger;
  guard: Guard;
  routes: RouteDef[];
  /** Set when /metrics is on: every answer is counted by route pattern and status. */
  metrics?: Metrics;
  /** Where API-key calls that change state, and refusals of live keys, are recorded (docs/security.md). */
  audit?: AuditLog;
  /** Idempotency-Key on POSTs (docs/reliability.md); without it the header is ignored. */
  idempotency?: Idempotency;
}): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: opts.config.bodyLimitBytes,
    // Slow clients (docs/operations.md, Timeouts). Node times out a request whose headers, or whole request, have not
    // arrived in time (408 through clientErrorHandler below, then the connection closes), checking every second
    // rather than every 30 s. There is no inactivity timeout on a connection (connectionTimeout 0): it would also
    // cut off a request whose answer takes long, and a WebSocket has its own ping.
    requestTimeout: opts.config.requestTimeoutMs,
    keepAliveTimeout: opts.config.keepAliveTimeoutMs,
    connectionTimeout: 0,
    http: {
      headersTimeout: Math.min(opts.config.headersTimeoutMs, opts.config.requestTimeoutMs),
      requestTimeout: opts.config.requestTimeoutMs,
      connectionsCheckingInterval: 1000,
    },
    // The same trust decision the Socket.IO gateway uses for its handshakes (lib/client-address.ts).
    trustProxy: trustFunction(opts.config.trustProxy),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 512 },
    return503OnClosing: true,
    // Fastify's router answers a URL it cannot decode (a lone "%" in the path) before any hook or error handler,
    // in its own error format: here it gets the one envelope (found by the fuzzer, docs/operations.md).
    frameworkErrors: (err, _request, reply) => {
      const e = new AppError('INVALID_REQUEST', err.code === 'FST_ERR_BAD_URL' ? 'The URL is not valid: bad percent-encoding in the path' : 'The request is not valid');
      void (reply as FastifyReply).status(e.status).send(e.toBody());
    },
    // Requests Node's HTTP parser refuses (two Content-Length headers, a malformed header line, headers over the size
    // limit, a request that took too long) never reach Fastify: the answer is written on the socket here, in the one
    // envelope instead of Fastify's own format, and the connection is closed as Node does.
    clientErrorHandler: (err: Error & { code?: string }, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const e =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new AppError('REQUEST_TIMEOUT', 'The request took too long to arrive')
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? new AppError('HEADERS_TOO_LARGE', 'The request headers are too large')
            : new AppError('INVALID_REQUEST', 'The request is not valid HTTP');
      const body = JSON.stringify(e.toBody());
      if (socket.writable) {
        socket.write(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
      }
      socket.destroy();
    },
    // Fastify's own request logging writes two info lines per request, which cost about a third of the
    // throughput of a busy node. One line per request is written at debug level instead (LOG_LEVEL=debug).
    logController: new LogController({ disableRequestLogging: true }),
  });
  // The caller's address is read once as the request arrives: Node keeps a socket's peer address once asked, but a
  // socket closed before anyone asked (the client, or the parser refusing a second request pipelined behind this
  // one) has none, and request.ip would be undefined in the guard, the key alerts and the audit log (found by the
  // fuzzer). A request whose connection is already gone has no one to answer and goes no further.
  app.addHook('onRequest', (request, _reply, done) => {
    done(request.ip === undefined ? new AppError('INVALID_REQUEST', 'The connection closed before the request was read') : undefined);
  });
  if (opts.logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', (request, reply, done) => {
      // Secret-looking query values (a token in /chat?token=...) are replaced, as in every other log line.
      request.log.debug({ method: request.method, url: redactUrl(request.url), ip: request.ip, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
      done();
    });
  }

  const metrics = opts.metrics;
  if (metrics) {
    app.addHook('onResponse', (request, reply, done) => {
      // The route pattern, never the URL (ids would make a label value per room and user); unknown paths share one.
      metrics.request(request.method, request.routeOptions.url ?? '(unmatched)', reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  }

  const audit = opts.audit;
  if (audit) {
    app.addHook('onResponse', (request, reply, done) => {
      const actor = request.actor;
      const ref = request.refusedKey;
      const route = request.routeOptions.url;
      // Calls of an API key or a dashboard operator that change state (any method but GET), and every refusal of a
      // live key.
      if (route !== undefined && ((actor?.kind === 'admin' && request.method !== 'GET') || ref)) {
        const status = reply.statusCode;
        audit.record({
          appId: actor?.kind === 'admin' ? actor.app.id : ref!.appId,
          actor:
            actor?.kind === 'admin'
              ? actor.operator
                ? { type: 'operator', id: actor.operator.id, fingerprint: null, last4: null }
                : { type: 'apiKey', id: actor.apiKeyId, fingerprint: actor.apiKeyFingerprint, last4: actor.apiKeyLast4 }
              : { type: 'apiKey', id: ref!.keyId, fingerprint: ref!.fingerprint, last4: ref!.last4 },
          ip: request.ip,
          action: actionOf(request.method, route),
          route: `${request.method} ${route}`,
          target: auditTarget(request.params, request.body),
          outcome: status < 400 ? 'ok' : status === 401 || status === 403 || status === 429 ? 'denied' : 'error',
        });
      }
      done();
    });
  }

  // Bodies are validated strictly (a number is not a string); query strings and path params arrive as text
  // and are coerced to the declared types.
  const base: AjvOptions = { allErrors: false, removeAdditional: false, useDefaults: true, strict: false };
  const strictAjv = new Ajv({ ...base, coerceTypes: false });
  const coercingAjv = new Ajv({ ...base, coerceTypes: 'array' });
  // Browsers (the Web SDK) call from other origins with custom headers (IM-CLIENT-KEY, CLIENT_KEY, ...):
  // preflights reflect the requested headers for an allowed Origin (the same decision as Socket.IO's, see
  // auth/cors.ts); domain binding is enforced by the guard, not by CORS.
  void app.register(cors, {
    ...corsOptions(opts.guard, opts.config),
    // The plugin's default allows GET, HEAD and POST only: a browser could not send PUT /rooms/:id or DELETE.
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
    exposedHeaders: ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After'],
    maxAge: 600,
  });

  // The API speaks JSON only: any other content type is 415, not a string handed to the JSON schemas.
  app.removeContentTypeParser('text/plain');
  // Nesting is bounded before anything recurses over a body (validation, JSON.stringify when it is stored, the
  // renderers): thousands of levels overflow the stack there. The text is scanned without recursion first, then
  // parsed exactly as Fastify's own parser does (secure-json-parse, refusing __proto__ and constructor keys).
  const maxDepth = opts.config.maxJsonDepth;
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (jsonTextTooDeep(body as string, maxDepth)) {
      done(tooDeep(maxDepth), undefined);
      return;
    }
    parseJson(request, body as string, done);
  });
  // Query parameters that carry JSON (q, where, pref, ...) get the same bound, before any service parses them.
  app.addHook('preValidation', async (request) => {
    const query = request.query as Record<string, unknown> | undefined;
    if (!query) return;
    for (const value of Object.values(query)) {
      for (const text of Array.isArray(value) ? value : [value]) {
        // Only values that are JSON (an object or array): plain text full of brackets is left to its route.
        if (typeof text === 'string' && /^\s*[[{]/.test(text) && jsonTextTooDeep(text, maxDepth)) throw tooDeep(maxDepth);
      }
    }
  });
  // File uploads (docs/files.md): parsed as they stream, never held whole. A file's size limit is the files
  // service's to apply (it depends on the application); fields are small.
  void app.register(multipart, {
    limits: { fieldNameSize: 100, fieldSize: MAX_FIELD_BYTES, fields: 10, fileSize: Number.MAX_SAFE_INTEGER, files: 1, parts: 12, headerPairs: 100 },
  });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strictAjv : coercingAjv).compile(schema));

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const appErr = toAppError(err);
    if (appErr.keyRef) request.refusedKey = appErr.keyRef;
    // A refusal under overload is the server protecting itself, not a failure to log at every request.
    if (appErr.status >= 500 && appErr.code !== 'SERVICE_UNAVAILABLE') request.log.error({ err }, 'request failed');
    else if (isStatementTimeout(err)) request.log.warn({ method: request.method, url: redactUrl(request.url) }, 'statement timeout: request cancelled');
    if (appErr.rate) setRateHeaders(reply, appErr.rate);
    if (appErr.extra.retryAfter !== undefined) reply.header('Retry-After', String(appErr.extra.retryAfter));
    void reply.status(appErr.status).send(appErr.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new AppError('NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0]} not found`);
    void reply.status(404).send(err.toBody());
  });

  for (const def of opts.routes) {
    app.route({
      method: def.method,
      url: def.url,
      schema: def.schema,
      // Credentials are checked before the body is validated: a stranger learns nothing about the schema.
      preValidation:
        def.auth === 'public'
          ? undefined
          : async (request: FastifyRequest, reply: FastifyReply) => {
              if (!(def.signedAccess && (request.query as Record<string, unknown>)?.signature !== undefined)) {
                const { actor, rate } = await opts.guard.authenticate({ headers: request.headers, ip: request.ip, method: request.method }, def.auth as 'admin', def.scope);
                request.actor = actor;
                setRateHeaders(reply, rate);
              }
              if (request.isMultipart() !== (def.multipart === true)) {
                throw new AppError('UNSUPPORTED_MEDIA_TYPE', def.multipart ? 'Content-Type must be multipart/form-data' : 'Content-Type must be application/json');
              }
            },
      handler: async (request, reply) => {
        // Idempotency-Key on a POST (docs/reliability.md): a retry gets the first answer again.
        const idemKey = def.method === 'POST' && def.auth !== 'public' && !def.multipart && !def.raw && opts.idempotency ? header(request.headers, 'idempotency-key') : undefined;
        if (idemKey === undefined || !request.actor) return answer(request, reply);
        const recover = def.recoverSent && ((messageId: string) => answer(request, reply, messageId));
        const begun = await opts.idempotency!.begin(request.actor, idemKey, def.method, def.url, request.params, request.body, recover !== undefined);
        if ('replay' in begun) {
          void reply.header('Idempotent-Replayed', 'true').code(begun.replay.status).type('application/json; charset=utf-8');
          return reply.send(begun.replay.body);
        }
        try {
          if (begun.sent !== undefined) void reply.header('Idempotent-Replayed', 'true');
          const value = await opts.idempotency!.run(begun, () => answer(request, reply), recover);
          await opts.idempotency!.finish(begun.run, 200, JSON.stringify(value));
          return value;
        } catch (err) {
          const appErr = toAppError(err as FastifyError);
          await opts.idempotency!.finish(begun.run, appErr.status, JSON.stringify(appErr.toBody())).catch(() => undefined);
          throw err;
        }
      },
    });

    /** The route's answer; with `sentMessageId`, the one it gives for a message its first try stored (recoverSent). */
    async function answer(request: FastifyRequest, reply: FastifyReply, sentMessageId?: string): Promise<unknown> {
        const req: RouteRequest = {
          actor: request.actor as Actor,
          body: request.body ?? undefined,
          query: request.query,
          params: request.params,
          ip: request.ip,
          headers: request.headers,
          method: request.method,
          origin: opts.config.publicUrl ?? `${request.protocol}://${request.host}`,
          parts: def.multipart ? partsOf(request) : undefined,
        };
        const result = sentMessageId !== undefined && def.recoverSent ? await def.recoverSent(req, sentMessageId) : await def.handler(req);
        if (result instanceof FileReply) {
          void reply.headers(result.headers);
          return reply.send(result.body);
        }
        if (def.raw) {
          void reply.type(def.raw.contentType);
          return result;
        }
        return result instanceof Described ? ok(result.result, result.message) : ok(result);
    }
  }
  return app;
}

/**
 * What an audited call was done to: the path's parameters and a body's `_id`, as `name=value` pairs. Never
 * content: a message body, a secret or a token is no target.
 */
function auditTarget(params: unknown, body: unknown): string | undefined {
  const parts: string[] = [];
  if (params && typeof params === 'object') for (const [k, v] of Object.entries(params)) parts.push(`${k}=${String(v)}`);
  const id = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>)._id : undefined;
  if (typeof id === 'string') parts.push(`_id=${id}`);
  return parts.length ? parts.join(',') : undefined;
}

/** The largest multipart field read (a larger one is cut there and refused by its route). */
const MAX_FIELD_BYTES = 64 * 1024;

/** A multipart body's parts as the routes see them; the parser's limit errors become 400s that say which. */
async function* partsOf(request: FastifyRequest): AsyncGenerator<Part> {
  try {
    for await (const p of request.parts()) {
      if (p.type === 'file') yield { type: 'file', name: p.fieldname, filename: p.filename, mimeType: p.mimetype, stream: p.file };
      else yield { type: 'field', name: p.fieldname, value: String(p.value), truncated: p.valueTruncated };
    }
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'FST_FILES_LIMIT') throw new AppError('INVALID_REQUEST', 'A multipart body carries one file');
    if (code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') throw new AppError('INVALID_REQUEST', 'A multipart body carries at most 10 fields and one file');
    if (code === 'FST_PROTO_VIOLATION') throw new AppError('INVALID_REQUEST', 'A multipart field may not be named __proto__, constructor or the like');
    if (typeof code === 'string' && code.startsWith('FST_') || (err instanceof Error && /multipart|boundary|Unexpected end/i.test(err.message))) {
      throw new AppError('INVALID_REQUEST', 'The multipart body is malformed');
    }
    throw err;
  }
}

/** The success envelope of every response. */
export function ok(result: unknown, message = 'OK'): { RC: 0; RM: string; result: unknown } {
  return { RC: 0, RM: message, result: result ?? {} };
}

function setRateHeaders(reply: FastifyReply, rate: Pick<RateDecision, 'limit' | 'remaining' | 'resetAt'>): void {
  reply.header('X-RateLimit-Limit', String(rate.limit));
  reply.header('X-RateLimit-Remaining', String(rate.remaining));
  reply.header('X-RateLimit-Reset', String(Math.ceil(rate.resetAt / 1000)));
}

/** Maps anything thrown while serving a request to the one error type. */
function toAppError(err: FastifyError | AppError | Error): AppError {
  if (err instanceof AppError) return err;
  const fromStore = fromStoreError(err);
  if (fromStore) return fromStore;
  const fe = err as FastifyError;
  if (fe.validation && fe.validation.length > 0) return new AppError('INVALID_REQUEST', validationMessage(fe));
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('PAYLOAD_TOO_LARGE', 'Request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('INVALID_JSON', 'Body is empty but Content-Type is application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError('INVALID_JSON', 'Body is not valid JSON');
  }
  if (err instanceof SyntaxError && /prototype property/.test(err.message)) {
    return new AppError('INVALID_JSON', 'Body may not contain "__proto__" or "constructor" keys');
  }
  if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
    return new AppError('INVALID_JSON', 'Body is not valid JSON');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new AppError(fe.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : fe.statusCode === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'INVALID_REQUEST', fe.message);
  }
  if (fe.statusCode === 503) return new AppError('SERVICE_UNAVAILABLE', 'Server is shutting down');
  return new AppError('INTERNAL_ERROR', 'Internal server error');
}

/** "Missing required field: _id" / "Invalid field nickname: must be string": the field is always named. */
function validationMessage(err: FastifyError): string {
  const v = err.validation![0]!;
  const part = err.validationContext === 'querystring' ? 'query parameter' : err.validationContext === 'params' ? 'path parameter' : 'field';
  if (v.keyword === 'required') {
    const missing = (v.params as { missingProperty?: string }).missingProperty ?? '';
    const parent = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
    return `Missing required ${part}: ${parent ? `${parent}.` : ''}${missing}`;
  }
  const field = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
  if (!field) return `Request ${err.validationContext ?? 'body'} ${v.message ?? 'is invalid'}`;
  return `Invalid ${part} ${field}: ${v.message ?? 'is invalid'}`;
}
