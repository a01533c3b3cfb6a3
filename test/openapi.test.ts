import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openApiDocument, toOpenApiPath } from '../src/http/openapi.js';
import { type TestServer, startTestServer } from './helpers.js';

const METHODS = ['get', 'post', 'put', 'delete'];

function escHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The page's inline scripts, concatenated. */
function inlineScript(html: string): string {
  return [...html.matchAll(/<script(?:\s[^>]*)?>([\s\S]*?)<\/script>/g)].map((m) => m[1]).join('\n');
}

describe('OpenAPI document and docs page', () => {
  let t: TestServer;
  let spec: any;

  beforeAll(async () => {
    t = await startTestServer('sqlite');
    spec = (await t.request({ method: 'GET', url: '/openapi.json' })).body;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('serves /openapi.json bare (no RC envelope) as application/json, without credentials', async () => {
    const res = await t.request({ method: 'GET', url: '/openapi.json' });
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
    expect(res.body).not.toHaveProperty('RC');
    expect(res.body).not.toHaveProperty('result');
    expect(res.body.openapi).toBe('3.1.0');
  });

  it('is a valid-looking OpenAPI 3.1 document', () => {
    expect(spec.openapi).toMatch(/^3\.1\.\d+$/);
    expect(spec.info.title).toBe('imkit-server');
    expect(spec.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Object.keys(spec.paths).length).toBeGreaterThan(0);
    for (const path of Object.keys(spec.paths)) expect(path).toMatch(/^\//);
    expect(spec.components.securitySchemes).toEqual({
      apiKey: expect.objectContaining({ type: 'apiKey', in: 'header', name: 'IM-API-KEY' }),
      clientKey: expect.objectContaining({ type: 'apiKey', in: 'header', name: 'IM-CLIENT-KEY' }),
      userToken: expect.objectContaining({ type: 'apiKey', in: 'header', name: 'IM-Authorization' }),
    });
    // Every $ref points at something that exists.
    const refs = [...JSON.stringify(spec).matchAll(/"\$ref":"#\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of new Set(refs)) {
      const target = ref.split('/').reduce((o: any, k) => (o ? o[k] : undefined), spec);
      expect(target, ref).toBeDefined();
    }
  });

  it('lists every route of the server with its method, summary, curl example and tag', () => {
    const ops = Object.values(spec.paths as Record<string, Record<string, unknown>>).flatMap((item) => Object.keys(item).filter((k) => METHODS.includes(k)));
    expect(ops.length).toBe(t.server.routes.length);
    const ids = new Set<string>();
    for (const r of t.server.routes) {
      const op = spec.paths[toOpenApiPath(r.url)]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.url}`).toBeDefined();
      expect(op.summary).toBe(r.summary);
      expect(op['x-codeSamples']).toEqual([expect.objectContaining({ lang: 'shell', source: r.example })]);
      const tag = r.url.split('/')[1];
      expect(op.tags).toEqual([tag]);
      expect(spec.tags.map((x: { name: string }) => x.name)).toContain(tag);
      expect(ids.has(op.operationId), op.operationId).toBe(false);
      ids.add(op.operationId);
      expect(op.responses['200']).toBeDefined();
      for (const code of ['400', '404']) expect(op.responses[code], `${r.method} ${r.url} ${code}`).toBeDefined();
    }
    // The docs routes describe themselves.
    expect(spec.paths['/openapi.json']?.get).toBeDefined();
    expect(spec.paths['/docs']?.get).toBeDefined();
  });

  it('gives each auth class its security: admin only the API key, user/either client key + token or API key, public none', () => {
    const byAuth = (auth: string) => t.server.routes.filter((r) => r.auth === auth).map((r) => spec.paths[toOpenApiPath(r.url)][r.method.toLowerCase()]);
    const admin = byAuth('admin');
    expect(admin.length).toBeGreaterThan(0);
    for (const op of admin) {
      expect(op.security).toEqual([{ apiKey: [] }]);
      expect(op.responses['401']).toBeDefined();
      expect(op.responses['429']).toBeDefined();
    }
    const users = [...byAuth('user'), ...byAuth('either')];
    expect(users.length).toBeGreaterThan(0);
    for (const op of users) {
      expect(op.security).toEqual([{ clientKey: [], userToken: [] }, { apiKey: [] }]);
      expect(op.parameters).toContainEqual({ $ref: '#/components/parameters/ClientId' });
    }
    expect(spec.components.parameters.ClientId).toMatchObject({ name: 'IM-CLIENT-ID', in: 'header', required: false });
    const pub = byAuth('public');
    expect(pub.length).toBeGreaterThanOrEqual(3);
    for (const op of pub) {
      expect(op.security).toEqual([]);
      expect(op.responses['401']).toBeUndefined();
    }
  });

  it('converts path params and carries the body, query and path schemas', () => {
    const withParam = t.server.routes.find((r) => r.url === '/admin/clients/:id' && r.method === 'DELETE');
    expect(withParam).toBeDefined();
    const op = spec.paths['/admin/clients/{id}'].delete;
    expect(op.parameters).toContainEqual({ name: 'id', in: 'path', required: true, schema: { type: 'string', minLength: 1, maxLength: 128 } });
    for (const path of Object.keys(spec.paths)) {
      expect(path).not.toContain(':');
      for (const name of [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1])) {
        for (const [method, o] of Object.entries(spec.paths[path] as Record<string, any>)) {
          expect(o.parameters, `${method} ${path} {${name}}`).toContainEqual(expect.objectContaining({ name, in: 'path', required: true }));
        }
      }
    }
    const create = spec.paths['/admin/clients'].post;
    expect(create.requestBody.content['application/json'].schema).toMatchObject({ type: 'object', required: ['_id'] });
    expect(create.requestBody.required).toBe(true);
    const list = spec.paths['/admin/clients'].get;
    expect(list.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name)).toEqual(
      expect.arrayContaining(Object.keys((t.server.routes.find((r) => r.url === '/admin/clients' && r.method === 'GET')!.schema!.querystring as any).properties)),
    );
    // A body that may be null is optional.
    expect(spec.paths['/admin/clients/{id}/token'].delete.requestBody.required).toBe(false);
  });

  it('describes the success envelope and the shared error body', () => {
    expect(spec.components.schemas.Success).toMatchObject({ required: ['RC', 'RM', 'result'], properties: { RC: { const: 0 } } });
    expect(Object.keys(spec.components.schemas.Error.properties)).toEqual(['RC', 'RM', 'error', 'message', 'retryAfter']);
    expect(spec.components.schemas.Error.required).not.toContain('retryAfter');
    const admin = spec.paths['/admin/clients'].post;
    expect(admin.responses['200']).toEqual({ $ref: '#/components/responses/Success' });
    for (const code of ['400', '401', '403', '404', '413', '429']) {
      const ref = admin.responses[code].$ref as string;
      expect(spec.components.responses[ref.split('/').pop()!].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Error' });
    }
    // The raw routes say they are not enveloped.
    expect(spec.paths['/docs'].get.responses['200'].content['text/html; charset=utf-8']).toBeDefined();
  });

  it('converts Fastify paths and is pure over its input', () => {
    expect(toOpenApiPath('/rooms/:id/members/:uid')).toBe('/rooms/{id}/members/{uid}');
    expect(toOpenApiPath('/a/:n(^\\d+)/b')).toBe('/a/{n}/b');
    const routes = t.server.routes.filter((r) => r.schema?.body);
    const before = JSON.stringify(routes.map((r) => r.schema));
    const doc = openApiDocument(routes, { version: '9.9.9' }) as any;
    expect(doc.info.version).toBe('9.9.9');
    doc.paths[toOpenApiPath(routes[0]!.url)][routes[0]!.method.toLowerCase()].requestBody.content['application/json'].schema.mutated = true;
    expect(JSON.stringify(routes.map((r) => r.schema))).toBe(before);
  });

  it('other routes keep the envelope', async () => {
    const res = await t.request({ method: 'GET', url: '/healthz' });
    expect(res.body).toEqual({ RC: 0, RM: 'OK', result: { status: 'ok' } });
  });

  it('serves /docs as a self-contained HTML page that fetches /openapi.json', async () => {
    const res = await t.request({ method: 'GET', url: '/docs' });
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^text\/html/);
    const html = res.raw;
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain('<title>imkit-server API</title>');
    expect(res.body).toBeUndefined(); // not a JSON envelope
    const script = inlineScript(html);
    expect(script).toMatch(/fetch\(\s*['"]\/openapi\.json['"]/);
    // No external resources: no script src at all, no absolute http(s) src/href, no CSS imports.
    expect(html).not.toMatch(/<script[^>]*\ssrc=/i);
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*['"]?(https?:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//);
    // The script at least compiles.
    expect(() => new vm.Script(script)).not.toThrow();
  });

  it('the page script renders every route grouped by tag, with auth, summary, example and fields', async () => {
    const html = (await t.request({ method: 'GET', url: '/docs' })).raw;
    const elements: Record<string, { innerHTML: string; textContent: string; value: string; addEventListener: () => void }> = {};
    const element = (id: string) => (elements[id] ??= { innerHTML: '', textContent: '', value: '', addEventListener: () => {} });
    const fetched: string[] = [];
    const context = vm.createContext({
      document: { getElementById: element },
      navigator: {},
      setTimeout,
      fetch: async (url: string) => {
        fetched.push(url);
        const r = await t.request({ method: 'GET', url });
        return { ok: r.status === 200, status: r.status, json: async () => JSON.parse(r.raw) };
      },
    });
    vm.runInContext(inlineScript(html), context);
    await vi.waitFor(() => expect(element('app').innerHTML).toContain('class="op"'));
    expect(fetched).toEqual(['/openapi.json']);
    const page = element('app').innerHTML;
    const nav = element('nav').innerHTML;
    expect(element('version').textContent).toContain('3.1.0');
    for (const r of t.server.routes) {
      const path = escHtml(toOpenApiPath(r.url));
      expect(page, `${r.method} ${r.url}`).toContain(`<span class="method m-${r.method.toLowerCase()}">${r.method}</span><span class="path">${path}</span>`);
      expect(page).toContain(`auth-${r.auth}`);
      expect(page).toContain(escHtml(r.summary));
      expect(page).toContain(`<pre>${escHtml(r.example!)}</pre>`);
    }
    for (const tag of new Set(t.server.routes.map((r) => r.url.split('/')[1]!))) {
      expect(page).toContain(`<section id="tag-${escHtml(tag)}"><h2>${escHtml(tag)}</h2>`);
      expect(nav).toContain(`href="#tag-${escHtml(tag)}"`);
    }
    // Body fields with required marks and constraints; nested array items as dotted names.
    expect(page).toMatch(/<td class="name">_id<span class="req">required<\/span><\/td><td class="type">string<\/td><td class="notes">1-128 characters<\/td>/);
    expect(page).toContain('<td class="name">data[]._id<span class="req">required</span>');
    expect(page).toContain('Query parameters');

    // The filter keeps only matching routes.
    const filtered = (context as any).renderSpec(JSON.parse((await t.request({ method: 'GET', url: '/openapi.json' })).raw), 'healthz');
    expect(filtered.main).toContain('/healthz');
    expect(filtered.main).not.toContain('/admin/clients');
    expect((context as any).renderSpec({ paths: {} }, '').main).toContain('No route matches');
  });

  it('the page shows an error when /openapi.json cannot be loaded', async () => {
    const html = (await t.request({ method: 'GET', url: '/docs' })).raw;
    const app = { innerHTML: '', textContent: '', value: '', addEventListener: () => {} };
    const context = vm.createContext({
      document: { getElementById: () => app },
      navigator: {},
      setTimeout,
      fetch: async () => ({ ok: false, status: 500, json: async () => ({}) }),
    });
    vm.runInContext(inlineScript(html), context);
    await vi.waitFor(() => expect(app.innerHTML).toContain('class="error"'));
    expect(app.innerHTML).toContain('HTTP 500');
  });
});
