import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCOPES } from '../src/auth/scopes.js';
import type { AppRow } from '../src/store/apps-repo.js';
import { DIALECTS, startTestServer, type TestServer } from './helpers.js';

/** Issue #20, part 1: keys limited to addresses, a lifetime and a rate of their own; keys told apart by fingerprint. */
describe.each(DIALECTS)('API keys with limits (%s)', (dialect) => {
  let t: TestServer;
  let app: AppRow;

  beforeEach(async () => {
    t = await startTestServer(dialect);
    app = await t.server.services.apps.resolve(t.appId);
  });
  afterEach(async () => t.close());

  /** A request from `remote` (the TCP peer), optionally carrying an X-Forwarded-For header. */
  const from = (remote: string, key: string, xff?: string) =>
    t.server.http
      .inject({ method: 'GET', url: '/admin/clients', remoteAddress: remote, headers: { 'IM-API-KEY': key, ...(xff ? { 'X-Forwarded-For': xff } : {}) } })
      .then((r) => ({ status: r.statusCode, body: r.json() as any }));

  it('an allowlisted key is refused from any other address, IPv4 and IPv6 alike, with 403 IP_NOT_ALLOWED', async () => {
    const key = (await t.server.services.apps.createApiKey(app, { allowIps: ['203.0.113.0/24', '2001:db8:1::/48'] })).apiKey as string;
    expect((await from('203.0.113.7', key)).status).toBe(200);
    expect((await from('::ffff:203.0.113.8', key)).status).toBe(200); // IPv4-mapped IPv6 matches its IPv4 entry
    expect((await from('2001:db8:1::42', key)).status).toBe(200);
    for (const outside of ['198.51.100.7', '2001:db8:2::1', '127.0.0.1', '::1']) {
      const r = await from(outside, key);
      expect(r.status, outside).toBe(403);
      expect(r.body).toMatchObject({ RC: 403, error: 'IP_NOT_ALLOWED' });
      expect(r.body.message).toContain(outside);
      expect(JSON.stringify(r.body)).not.toContain(key);
    }
    // The application's other keys are not concerned.
    expect((await from('198.51.100.7', t.apiKey)).status).toBe(200);
  });

  it('behind a trusted proxy the address checked is the one the proxy reports; a forged header from an untrusted peer is ignored', async () => {
    await t.close();
    t = await startTestServer(dialect, { trustProxy: ['10.0.0.0/8'] });
    app = await t.server.services.apps.resolve(t.appId);
    const key = (await t.server.services.apps.createApiKey(app, { allowIps: ['203.0.113.0/24'] })).apiKey as string;
    // Through the proxy at 10.1.1.1: the client it reports is checked.
    expect((await from('10.1.1.1', key, '203.0.113.9')).status).toBe(200);
    expect((await from('10.1.1.1', key, '198.51.100.9')).status).toBe(403);
    // Entries left of the proxy's own are the client's words: not believed.
    expect((await from('10.1.1.1', key, '203.0.113.9, 198.51.100.9')).status).toBe(403);
    // A stranger (not a trusted proxy) writing an allowed address into the header: its own address counts.
    const forged = await from('198.51.100.77', key, '203.0.113.9');
    expect(forged.status).toBe(403);
    expect(forged.body.message).toContain('198.51.100.77');
  });

  it('a key with its own limit is refused past it with the seed 429; one that expires stops working by itself', async () => {
    const limited = (await t.server.services.apps.createApiKey(app, { rateLimitPerMinute: 3 })).apiKey as string;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await from('203.0.113.1', limited)).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect((await from('203.0.113.1', t.apiKey)).status).toBe(200); // the application's default key keeps its 1000

    const shortLived = (await t.server.services.apps.createApiKey(app, { expiresIn: '60s' })).apiKey as string;
    expect((await from('203.0.113.1', shortLived)).status).toBe(200);
    t.clock.advance(60_001);
    const expired = await from('203.0.113.1', shortLived);
    expect(expired.status).toBe(401);
    expect(expired.body.error).toBe('INVALID_API_KEY');
  });

  it('keys are told apart by fingerprint (any number of them), listed without secrets, and revoked by fingerprint', async () => {
    const made: Array<{ apiKey: string; fingerprint: string }> = [];
    for (let i = 0; i < 20; i++) made.push((await t.server.services.apps.createApiKey(app, { name: `worker ${i}` })) as any);
    for (const m of made) expect(m.fingerprint).toBe(createHash('sha256').update(m.apiKey).digest('hex').slice(0, 10));
    expect(new Set(made.map((m) => m.fingerprint)).size).toBe(20);
    const listed = await t.server.services.apps.listApiKeys(app);
    expect(listed).toHaveLength(21);
    expect(JSON.stringify(listed)).not.toMatch(new RegExp(made.map((m) => m.apiKey.replace(/[+/=]/g, '\\$&')).join('|')));
    // Most of these keys share their last 4 characters: revoking by them is ambiguous, by fingerprint exact.
    const victim = made[7]!;
    const r = await t.server.services.apps.revokeApiKey(app, victim.fingerprint);
    expect(r.fingerprint).toBe(victim.fingerprint);
    expect((await from('203.0.113.1', victim.apiKey)).status).toBe(401);
    expect((await from('203.0.113.1', made[8]!.apiKey)).status).toBe(200);
    expect(listed.find((k) => k.fingerprint === victim.fingerprint)).toMatchObject({ name: 'worker 7', scopes: null, allowIps: null, status: 'live' });
  });

  it('over HTTP: a key without scopes manages keys; a limited key may not, whatever its scopes', async () => {
    const admin = { 'IM-API-KEY': t.apiKey };
    const made = await t.request({ method: 'POST', url: '/admin/api-keys', headers: admin, body: { name: 'ops', scopes: [...SCOPES], allowIps: ['::1', '127.0.0.1'], expiresIn: '30d', rateLimitPerMinute: 100 } });
    expect(made.status, made.raw).toBe(200);
    expect(made.body.result).toMatchObject({ name: 'ops', scopes: [...SCOPES], rateLimitPerMinute: 100, status: 'expiring' });
    const limited = made.body.result.apiKey as string;
    // Every scope there is, and still no key management: it would let a limited key make itself a stronger one.
    for (const [method, url, body] of [['POST', '/admin/api-keys', {}], ['GET', '/admin/api-keys', undefined], ['DELETE', `/admin/api-keys/${made.body.result.fingerprint}`, undefined]] as const) {
      const r = await t.request({ method, url, headers: { 'IM-API-KEY': limited }, body });
      expect(r.status, `${method} ${url}`).toBe(403);
      expect(r.body.error).toBe('INSUFFICIENT_PERMISSIONS');
    }
    const listed = await t.request({ method: 'GET', url: '/admin/api-keys', headers: admin });
    expect(listed.body.result.data.map((k: any) => k.name ?? '(none)').sort()).toEqual(['(none)', 'ops']);
    expect(listed.raw).not.toContain(limited);
    const gone = await t.request({ method: 'DELETE', url: `/admin/api-keys/${made.body.result.fingerprint}`, headers: admin });
    expect(gone.body.result).toMatchObject({ fingerprint: made.body.result.fingerprint });
    expect((await t.request({ method: 'GET', url: '/admin/stats', headers: { 'IM-API-KEY': limited } })).status).toBe(401);
    const bad = await t.request({ method: 'POST', url: '/admin/api-keys', headers: admin, body: { expiresIn: 'soon' } });
    expect(bad.body).toMatchObject({ RC: 400, error: 'INVALID_REQUEST', field: 'expiresIn' });
  });

  it('the audit log records API-key calls that change state and refusals of live keys, without secrets; filters, pages, retention', async () => {
    const admin = { 'IM-API-KEY': t.apiKey };
    const fp = createHash('sha256').update(t.apiKey).digest('hex').slice(0, 10);
    const made = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'amy', issueAccessToken: true } });
    const token = made.body.result.token as string;
    await t.request({ method: 'GET', url: '/admin/clients', headers: admin }); // a read: not recorded
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'r1', members: ['amy'] } });
    await t.request({ method: 'POST', url: '/rooms/r1/message', headers: { ...admin, 'IM-CLIENT-ID': 'amy' }, body: { message: 'secret plans' } });
    await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 7 } }); // invalid: an error
    const scoped = (await t.server.services.apps.createApiKey(app, { scopes: ['rooms:read'] })) as any;
    const bound = (await t.server.services.apps.createApiKey(app, { allowIps: ['203.0.113.0/24'] })) as any;
    await t.request({ method: 'DELETE', url: '/rooms/r1', headers: { 'IM-API-KEY': scoped.apiKey } });
    await from('198.51.100.4', bound.apiKey);
    const read = await t.request({ method: 'GET', url: '/admin/audit?limit=500', headers: admin });
    expect(read.status).toBe(200);
    const entries = read.body.result.data as any[];
    expect(read.body.result.totalCount).toBe(entries.length);
    const summary = entries.map((e) => `${e.action} ${e.outcome} ${e.actor.fingerprint}`).reverse();
    expect(summary).toEqual([
      `clients.create ok ${fp}`,
      `rooms.create ok ${fp}`,
      `rooms.message.create ok ${fp}`,
      `clients.create error ${fp}`,
      `rooms.delete denied ${scoped.fingerprint}`,
      `clients.read denied ${bound.fingerprint}`,
    ]);
    const first = entries[entries.length - 1];
    expect(first).toMatchObject({ _id: expect.stringMatching(/^[0-9a-f]{24}$/), atMS: t.clock.now(), actor: { type: 'apiKey', id: expect.stringMatching(/^ak_/), last4: t.apiKey.slice(-4) }, route: 'POST /admin/clients', target: '_id=amy', ip: '127.0.0.1' });
    expect(entries[0]).toMatchObject({ ip: '198.51.100.4', route: 'GET /admin/clients' });
    for (const secret of [t.apiKey, scoped.apiKey, bound.apiKey, token, 'secret plans']) expect(read.raw).not.toContain(secret);
    // Filters and pages.
    const byActor = await t.request({ method: 'GET', url: `/admin/audit?actor=${scoped.fingerprint}`, headers: admin });
    expect(byActor.body.result.data.map((e: any) => e.action)).toEqual(['rooms.delete']);
    const byAction = await t.request({ method: 'GET', url: '/admin/audit?action=clients.create&limit=1', headers: admin });
    expect(byAction.body.result).toMatchObject({ totalCount: 2, data: [{ outcome: 'error' }] });
    const next = await t.request({ method: 'GET', url: `/admin/audit?action=clients.create&limit=1&before=${byAction.body.result.data[0]._id}`, headers: admin });
    expect(next.body.result.data).toEqual([expect.objectContaining({ outcome: 'ok', target: '_id=amy' })]);
    // Reading it needs audit:read.
    expect((await t.request({ method: 'GET', url: '/admin/audit', headers: { 'IM-API-KEY': scoped.apiKey } })).status).toBe(403);
    // Entries older than the retention (90 days by default) are removed.
    t.clock.advance(91 * 86_400_000);
    await t.server.audit.flush();
    const after = await t.request({ method: 'GET', url: '/admin/audit?limit=500', headers: admin });
    expect(after.body.result).toEqual({ data: [], totalCount: 0 });
  });

  it('bad limits are refused with a clear error naming the field, and nothing is stored', async () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ scopes: ['rooms:read', 'rooms:admin'] }, 'scopes'],
      [{ scopes: [] }, 'scopes'],
      [{ allowIps: ['203.0.113.0/33'] }, 'allowIps'],
      [{ allowIps: ['not-an-address'] }, 'allowIps'],
      [{ rateLimitPerMinute: 0 }, 'rateLimitPerMinute'],
      [{ name: 'x'.repeat(101) }, 'name'],
    ];
    for (const [input, field] of bad) {
      await expect(t.server.services.apps.createApiKey(app, input as any), JSON.stringify(input)).rejects.toMatchObject({ code: 'INVALID_REQUEST', extra: { field } });
    }
    expect(await t.server.services.apps.listApiKeys(app)).toHaveLength(1);
  });
});
