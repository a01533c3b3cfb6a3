import type { RouteDef } from './route.js';

/** The error codes every error response may carry, with what they mean (see docs/auth.md). */
const ERROR_RESPONSES: Record<string, { name: string; description: string }> = {
  '400': { name: 'BadRequest', description: 'INVALID_REQUEST (a field is missing, of the wrong type or out of range; the message names it) or INVALID_JSON' },
  '401': { name: 'Unauthorized', description: 'MISSING_API_KEY, INVALID_API_KEY, MISSING_CLIENT_KEY or INVALID_TOKEN' },
  '403': { name: 'Forbidden', description: 'INSUFFICIENT_PERMISSIONS, INVALID_CLIENT_KEY or CLIENT_KEY_MISMATCH' },
  '404': { name: 'NotFound', description: 'NOT_FOUND: the route or the object it names does not exist' },
  '413': { name: 'PayloadTooLarge', description: 'PAYLOAD_TOO_LARGE: the body exceeds IMKIT_BODY_LIMIT' },
  '415': { name: 'UnsupportedMediaType', description: 'UNSUPPORTED_MEDIA_TYPE: the body must be application/json' },
  '429': { name: 'TooManyRequests', description: 'RATE_LIMIT_EXCEEDED: retry after `retryAfter` seconds (also in the Retry-After header)' },
  '503': {
    name: 'ServiceUnavailable',
    description: 'SERVICE_UNAVAILABLE: the server is shutting down, or (sending messages) more than IMKIT_MAX_QUEUED_MESSAGES wait to be stored; retry after `retryAfter` seconds when given (also in the Retry-After header)',
  },
};

const AUTH_TEXT: Record<RouteDef['auth'], string> = {
  admin: 'API key (`IM-API-KEY`) only.',
  user: 'A user: client key (`IM-CLIENT-KEY`) + user token (`IM-Authorization`), or the API key with `IM-CLIENT-ID` naming the user to act as.',
  either: 'A user (client key + user token), or the API key alone as the platform administrator (`IM-CLIENT-ID` optionally names a user to act as).',
  public: 'None.',
};

type Json = Record<string, unknown>;

/** Fastify's `/rooms/:id/members/:uid` as OpenAPI's `/rooms/{id}/members/{uid}` (a `(regex)` suffix is dropped). */
export function toOpenApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)(\([^)]*\))?/g, '{$1}');
}

/** The names of a Fastify url's path parameters, in order. */
function pathParamNames(url: string): string[] {
  return [...url.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
}

/** The tag of a route: the first segment of its path (`/admin/clients` -> `admin`). */
export function tagOf(url: string): string {
  return url.split('/').find((s) => s !== '') ?? 'root';
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function operationId(method: string, url: string, taken: Set<string>): string {
  const words = url
    .replace(/\([^)]*\)/g, '')
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '');
  const base = method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  let id = base;
  for (let n = 2; taken.has(id); n++) id = `${base}${n}`;
  taken.add(id);
  return id;
}

/** Query-string or path schema properties as OpenAPI parameter objects. */
function parametersFrom(schema: object | undefined, where: 'query' | 'path', names?: string[]): Json[] {
  const s = (schema ?? {}) as { properties?: Record<string, object>; required?: string[] };
  const props = s.properties ?? {};
  const required = new Set(s.required ?? []);
  const list = names ?? Object.keys(props);
  return list.map((name) => {
    const prop = clone((props[name] ?? { type: 'string' }) as Json);
    const description = typeof prop.description === 'string' ? prop.description : undefined;
    delete prop.description;
    return {
      name,
      in: where,
      required: where === 'path' ? true : required.has(name),
      ...(description ? { description } : {}),
      schema: prop,
    };
  });
}

function allowsNull(schema: object): boolean {
  const type = (schema as { type?: unknown }).type;
  return type === 'null' || (Array.isArray(type) && type.includes('null'));
}

/**
 * An OpenAPI 3.1 document of the route table: paths, schemas (the same JSON Schemas that validate the
 * requests), security per auth class, the curl examples as x-codeSamples, and the envelopes.
 */
export function openApiDocument(routes: RouteDef[], info: { version: string }): object {
  const paths: Record<string, Record<string, Json>> = {};
  const tags: string[] = [];
  const taken = new Set<string>();

  for (const r of routes) {
    const path = toOpenApiPath(r.url);
    const tag = tagOf(r.url);
    if (!tags.includes(tag)) tags.push(tag);

    const parameters: Json[] = [
      ...parametersFrom(r.schema?.params, 'path', pathParamNames(r.url)),
      ...parametersFrom(r.schema?.querystring, 'query'),
    ];
    if (r.auth === 'user' || r.auth === 'either') parameters.push({ $ref: '#/components/parameters/ClientId' });

    const security =
      r.auth === 'admin'
        ? [{ apiKey: [] }]
        : r.auth === 'public'
          ? []
          : [{ clientKey: [], userToken: [] }, { apiKey: [] }];

    const responses: Json = {
      '200': r.raw
        ? { description: 'OK (sent as is, without the envelope)', content: { [r.raw.contentType]: { schema: r.raw.contentType.includes('json') ? { type: 'object' } : { type: 'string' } } } }
        : { $ref: '#/components/responses/Success' },
    };
    const codes = ['400', ...(r.auth === 'public' ? [] : ['401', '403']), '404', ...(r.schema?.body ? ['413', '415'] : []), ...(r.auth === 'public' ? [] : ['429'])];
    for (const code of codes) responses[code] = { $ref: `#/components/responses/${ERROR_RESPONSES[code]!.name}` };

    const op: Json = {
      tags: [tag],
      summary: r.summary,
      description: `Auth: ${AUTH_TEXT[r.auth]}`,
      operationId: operationId(r.method, r.url, taken),
      security,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(r.schema?.body
        ? { requestBody: { required: !allowsNull(r.schema.body), content: { 'application/json': { schema: clone(r.schema.body) } } } }
        : {}),
      responses,
      ...(r.example ? { 'x-codeSamples': [{ lang: 'shell', label: 'curl', source: r.example }] } : {}),
      'x-auth': r.auth,
    };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }

  const errorResponses: Json = {};
  for (const [code, e] of Object.entries(ERROR_RESPONSES)) {
    errorResponses[e.name] = {
      description: e.description,
      ...(code === '429' || code === '503' ? { headers: { 'Retry-After': { description: 'Seconds to wait', schema: { type: 'integer' } } } } : {}),
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'imkit-server',
      version: info.version,
      description:
        'Self-hostable chat server implementing the IMKIT Platform API. Every success is HTTP 200 with `{"RC":0,"RM":"OK","result":...}`; ' +
        'every error has HTTP status = RC and `{"RC","RM","error","message"}` (see docs/auth.md).',
    },
    servers: [{ url: '/' }],
    tags: tags.map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'IM-API-KEY', description: 'The API key of an application (acts as its platform administrator).' },
        clientKey: { type: 'apiKey', in: 'header', name: 'IM-CLIENT-KEY', description: 'The client key of an application; names the application, used with a user token.' },
        userToken: { type: 'apiKey', in: 'header', name: 'IM-Authorization', description: 'A user token, with or without `Bearer `.' },
      },
      parameters: {
        ClientId: {
          name: 'IM-CLIENT-ID',
          in: 'header',
          required: false,
          description:
            'With the API key: the user to act as (required on user routes). With a client key + user token: if given, it must name the token\'s user.',
          schema: { type: 'string' },
        },
      },
      schemas: {
        Success: {
          type: 'object',
          required: ['RC', 'RM', 'result'],
          properties: { RC: { const: 0 }, RM: { type: 'string', examples: ['OK'] }, result: { description: 'The result of the operation' } },
        },
        Error: {
          type: 'object',
          required: ['RC', 'RM', 'error', 'message'],
          properties: {
            RC: { type: 'integer', description: 'The HTTP status' },
            RM: { type: 'string', description: 'The message' },
            error: { type: 'string', description: 'The error code, e.g. INVALID_REQUEST' },
            message: { type: 'string' },
            retryAfter: { type: 'integer', description: 'Seconds to wait (RATE_LIMIT_EXCEEDED, and SERVICE_UNAVAILABLE under overload)' },
          },
        },
      },
      responses: {
        Success: { description: 'OK', content: { 'application/json': { schema: { $ref: '#/components/schemas/Success' } } } },
        ...errorResponses,
      },
    },
  };
}
