import { afterEach, describe, expect, it } from 'vitest';
import type { AppRow } from '../src/store/apps-repo.js';
import { DIALECTS, startTestServer, type TestServer } from './helpers.js';
import { Receiver } from './webhook-receiver.js';

/** Issue #20: key anomaly alerts, each firing once on a scripted scenario. */
describe.each(DIALECTS)('key anomaly alerts (%s)', (dialect) => {
  let t: TestServer;
  let app: AppRow;
  const receivers: Receiver[] = [];

  const start = async (overrides: Parameters<typeof startTestServer>[1] = {}) => {
    t = await startTestServer(dialect, overrides);
    app = await t.server.services.apps.resolve(t.appId);
  };
  afterEach(async () => {
    await t.close();
    for (const r of receivers.splice(0)) await r.close();
  });

  const call = (key: string, remote: string) =>
    t.server.http.inject({ method: 'GET', url: '/admin/clients', remoteAddress: remote, headers: { 'IM-API-KEY': key } }).then((r) => ({ status: r.statusCode, body: r.json() as any }));
  const alerts = async (query = '') => {
    const res = await t.request({ method: 'GET', url: `/admin/alerts${query}`, headers: { 'IM-API-KEY': t.apiKey } });
    expect(res.status).toBe(200);
    return (res.body as any).result as { data: any[]; totalCount: number };
  };
  const auditOf = async (action: string) =>
    ((await t.request({ method: 'GET', url: `/admin/audit?action=${encodeURIComponent(action)}`, headers: { 'IM-API-KEY': t.apiKey } })).body as any).result.data as any[];

  it('a key used from an address never seen for it raises one alert (audit entry, open until acknowledged)', async () => {
    await start();
    const made = (await t.server.services.apps.createApiKey(app, { name: 'backend' })) as { apiKey: string; fingerprint: string; last4: string };
    // Its first address is where it lives: no alert, however often.
    for (let i = 0; i < 3; i++) expect((await call(made.apiKey, '203.0.113.10')).status).toBe(200);
    await t.server.alerts.flush();
    expect((await alerts()).totalCount).toBe(0);

    expect((await call(made.apiKey, '198.51.100.66')).status).toBe(200);
    expect((await call(made.apiKey, '198.51.100.66')).status).toBe(200);
    expect((await call(made.apiKey, '203.0.113.10')).status).toBe(200);
    const listed = await alerts();
    expect(listed.totalCount).toBe(1);
    const [a] = listed.data;
    expect(a).toMatchObject({ kind: 'key.new_address', ip: '198.51.100.66', server: false, acknowledged: false, key: { fingerprint: made.fingerprint, last4: made.last4 }, detail: { knownAddresses: 1 } });
    expect(JSON.stringify(listed)).not.toContain(made.apiKey);

    const entries = await auditOf('alert.key.new_address');
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ actor: { type: 'apiKey', fingerprint: made.fingerprint }, ip: '198.51.100.66', target: `alert=${a._id}`, outcome: 'ok' });

    // A key limited to scopes without audit:read may not read alerts; acknowledging needs a key without scopes.
    const scoped = (await t.server.services.apps.createApiKey(app, { scopes: ['audit:read'] })).apiKey as string;
    const noAudit = (await t.server.services.apps.createApiKey(app, { scopes: ['users:read'] })).apiKey as string;
    expect((await t.request({ method: 'GET', url: '/admin/alerts', headers: { 'IM-API-KEY': noAudit } })).status).toBe(403);
    expect((await t.request({ method: 'GET', url: '/admin/alerts', headers: { 'IM-API-KEY': scoped } })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: `/admin/alerts/${a._id}/acknowledge`, headers: { 'IM-API-KEY': scoped } })).status).toBe(403);

    const acked = await t.request({ method: 'POST', url: `/admin/alerts/${a._id}/acknowledge`, headers: { 'IM-API-KEY': t.apiKey } });
    expect(acked.status).toBe(200);
    expect((acked.body as any).result).toMatchObject({ _id: a._id, acknowledged: true });
    expect((await alerts('?open=true')).totalCount).toBe(0);
    expect((await alerts()).totalCount).toBe(1);
    for (const bad of ['nope', '0123456789abcdef01234567', `${'f'.repeat(24)}`]) {
      const r = await t.request({ method: 'POST', url: `/admin/alerts/${bad}/acknowledge`, headers: { 'IM-API-KEY': t.apiKey } });
      expect(r.status, bad).toBe(404);
      expect((r.body as any).error).toBe('ALERT_NOT_FOUND');
    }
  });

  it('the addresses a key was seen from survive a restart: a known one raises nothing, a new one does', async () => {
    await start();
    const key = (await t.server.services.apps.createApiKey(app, {})).apiKey as string;
    await call(key, '203.0.113.10');
    await call(key, '203.0.113.11'); // one alert
    await t.server.alerts.flush();
    // A second server on the same store, as after a restart, meets the key afresh.
    const { createServer } = await import('../src/server.js');
    const second = await createServer(t.config, { clock: t.clock });
    try {
      const via = (remote: string) => second.http.inject({ method: 'GET', url: '/admin/clients', remoteAddress: remote, headers: { 'IM-API-KEY': key } });
      expect((await via('203.0.113.10')).statusCode).toBe(200);
      expect((await via('203.0.113.11')).statusCode).toBe(200);
      expect((await via('203.0.113.12')).statusCode).toBe(200);
      await second.alerts.flush();
    } finally {
      await second.close();
    }
    const listed = await alerts();
    expect(listed.data.map((a) => a.ip)).toEqual(['203.0.113.12', '203.0.113.11']);
  });

  it("a key's rate far above its own baseline raises one alert; a new key's first burst does not", async () => {
    await start({ alertRateFactor: 5, alertRateMin: 50 });
    const key = (await t.server.services.apps.createApiKey(app, { name: 'steady' })).apiKey as string;
    const fresh = (await t.server.services.apps.createApiKey(app, { name: 'fresh' })).apiKey as string;
    // A new key has no baseline: 120 requests in its first minute are not a jump.
    for (let i = 0; i < 120; i++) await call(fresh, '203.0.113.20');
    // Twelve quiet minutes at 10 requests each: baseline 10/min, threshold max(50, 5 x 10) = 50.
    for (let m = 0; m < 12; m++) {
      for (let i = 0; i < 10; i++) await call(key, '203.0.113.20');
      t.clock.advance(60_000);
    }
    await t.server.alerts.flush();
    expect((await alerts()).totalCount).toBe(0);
    // A minute of 80: the 51st request crosses the threshold, and the rest of the hour raises nothing more.
    for (let i = 0; i < 80; i++) await call(key, '203.0.113.20');
    t.clock.advance(60_000);
    for (let i = 0; i < 80; i++) await call(key, '203.0.113.20');
    const listed = await alerts();
    expect(listed.totalCount).toBe(1);
    expect(listed.data[0]).toMatchObject({ kind: 'key.rate_jump', detail: { requestsThisMinute: 51, threshold: 50 } });
    expect(listed.data[0].detail.baselinePerMinute).toBeGreaterThan(8);
    expect(listed.data[0].detail.baselinePerMinute).toBeLessThan(12);
    expect(await auditOf('alert.key.rate_jump')).toHaveLength(1);
  });

  it('an address sending many invalid keys raises one server alert; the application whose revoked key was among them hears of it', async () => {
    await start({ alertInvalidKeys: 5 });
    const leaked = (await t.server.services.apps.createApiKey(app, { name: 'leaked' })) as { apiKey: string; fingerprint: string };
    await t.server.services.apps.revokeApiKey(app, leaked.fingerprint);
    const stranger = '198.51.100.99';
    const bogus = (i: number) => `bogus-key-${i}-${'x'.repeat(20)}`;
    for (let i = 0; i < 3; i++) expect((await call(bogus(i), stranger)).status).toBe(401);
    const revoked = await call(leaked.apiKey, stranger);
    expect(revoked.body.error).toBe('INVALID_API_KEY');
    await t.server.alerts.flush();
    expect((await t.server.alerts.list('*', {})).totalCount).toBe(0);
    // The revoked key's use is in the application's audit log, denied.
    const refusals = ((await t.request({ method: 'GET', url: `/admin/audit?actor=${leaked.fingerprint}`, headers: { 'IM-API-KEY': t.apiKey } })).body as any).result.data;
    expect(refusals[0]).toMatchObject({ outcome: 'denied', ip: stranger, action: 'clients.read' });

    expect((await call(bogus(4), stranger)).status).toBe(401); // the fifth
    for (let i = 5; i < 12; i++) await call(bogus(i), stranger);
    await t.server.alerts.flush();
    const server = await t.server.alerts.list('*', {});
    expect(server.totalCount).toBe(1);
    expect(server.data[0]).toMatchObject({ kind: 'key.invalid_keys', server: true, ip: stranger, key: null, detail: { attempts: 5, windowMinutes: 10 } });
    const mine = await alerts();
    expect(mine.totalCount).toBe(1);
    expect(mine.data[0]).toMatchObject({ kind: 'key.invalid_keys', ip: stranger, detail: { attempts: 5, revokedKeys: [leaked.fingerprint] } });
    expect(JSON.stringify([server, mine])).not.toContain('bogus-key');
    expect(await auditOf('alert.key.invalid_keys')).toHaveLength(1);

    // IPv6 addresses of one /64 count together; another /64 counts apart.
    for (let i = 1; i <= 5; i++) await call(bogus(100 + i), `2001:db8:7:1::${i}`);
    for (let i = 1; i <= 4; i++) await call(bogus(200 + i), `2001:db8:7:2::${i}`);
    await t.server.alerts.flush();
    const after = await t.server.alerts.list('*', {});
    expect(after.data.map((a) => a.ip)).toEqual(['2001:db8:7:1::/64', stranger]);
    // A valid key from the same address is still served.
    expect((await call(t.apiKey, '2001:db8:7:1::9')).status).toBe(200);
  });

  it('an alert reaches the endpoints subscribed to key.alert, signed like every webhook', async () => {
    await start({ webhookAllowPrivateNetworks: true });
    const rx = await new Receiver().start();
    receivers.push(rx);
    const created = await t.request({ method: 'POST', url: '/admin/webhooks', headers: { 'IM-API-KEY': t.apiKey }, body: { url: rx.url(), events: ['key.alert'] } });
    expect(created.status).toBe(200);
    const key = (await t.server.services.apps.createApiKey(app, {})).apiKey as string;
    await call(key, '203.0.113.30');
    await call(key, '203.0.113.31');
    await expect.poll(() => rx.requests.length, { timeout: 10_000 }).toBe(1);
    const got = rx.requests[0]!;
    expect(got.json).toMatchObject({ type: 'key.alert', data: { alert: { kind: 'key.new_address', ip: '203.0.113.31' } } });
    expect(got.headers['webhook-signature']).toMatch(/^v1,/);
    expect(got.body).not.toContain(key);
  });
});
