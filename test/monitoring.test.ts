import { sql } from 'kysely';
// @ts-expect-error no types ship with parse-prometheus-text-format
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config.js';
import { ManualClock } from '../src/lib/clock.js';
import { createServer, type ImkitServer } from '../src/server.js';
import { createUser, DIALECTS, isolatedStore, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

const METRICS_TOKEN = 'test-metrics-token-0123456789';

interface Family {
  name: string;
  type: string;
  metrics: Array<{ value?: string; count?: string; labels?: Record<string, string> }>;
}

describe.each(DIALECTS)('monitoring (%s)', (dialect) => {
  const open: TestServer[] = [];
  const clients: TestClient[] = [];
  const stores: Array<{ drop(): Promise<void> }> = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const t of open.splice(0)) await t.close();
    for (const s of stores.splice(0)) await s.drop();
  });
  const start = async (overrides: Parameters<typeof startTestServer>[1] = {}) => {
    const t = await startTestServer(dialect, overrides);
    open.push(t);
    return t;
  };
  const admin = (t: TestServer, key = t.apiKey) => ({ 'IM-API-KEY': key });
  const ok = async (t: TestServer, method: string, url: string, body?: unknown, headers: Record<string, string> = admin(t)) => {
    const res = await t.request({ method, url, body, headers });
    if (res.status !== 200) throw new Error(`${method} ${url}: ${res.status} ${res.raw}`);
    return res.body.result;
  };
  const stats = (t: TestServer) => ok(t, 'GET', '/admin/stats');
  const urls = new WeakMap<TestServer, Promise<string>>();
  const connect = async (t: TestServer, token: string) => {
    if (!urls.has(t)) urls.set(t, t.server.listen());
    const c = await TestClient.connect(await urls.get(t)!, 'bundle');
    clients.push(c);
    expect((await c.login(token, t.clientKey)).RC).toBe(0);
    return c;
  };
  /** Waits (without timing anything) until the server side saw what a client did. */
  const until = async (what: () => Promise<boolean>) => {
    for (let i = 0; i < 200; i++) {
      if (await what()) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('condition not reached');
  };

  describe('GET /admin/stats', () => {
    it("counts the last hour's users, rooms and messages of the caller's application only, and masks the keys", async () => {
      const t = await start();
      // Message ids begin with their time and never go back within a process (src/lib/ids.ts): the other dialect's
      // run, whose clock went two hours on, must lie in this run's past, or this run's ids would carry its times.
      t.clock.set(Date.parse('2026-06-01T00:00:00Z') + DIALECTS.indexOf(dialect) * 86_400_000);
      const empty = await stats(t);
      expect(empty).toMatchObject({ userList: [], roomCount: 0, totalRoomCount: 0, messageCount: 0, peakConnectionCount: 0 });

      await createUser(t, 'alice');
      const bobToken = await createUser(t, 'bob');
      await createUser(t, 'carol');
      await ok(t, 'POST', '/rooms', { _id: 'r1', roomType: 'group', members: ['alice', 'bob', 'carol'] });
      for (let i = 0; i < 3; i++) await ok(t, 'POST', '/messages', { room: 'r1', sender: 'alice', messageType: 'text', message: `m${i}` });
      // bob logs in (GET /me with his token); carol does nothing.
      await ok(t, 'GET', '/me', undefined, userHeaders(t.clientKey, bobToken));

      // Another application's traffic counts for it alone.
      const other = await t.server.services.apps.create({ name: 'Other' });
      await createUser(t, 'zed', other.apiKey);
      await ok(t, 'POST', '/rooms', { _id: 'rz', roomType: 'group', members: ['zed'] }, admin(t, other.apiKey));
      await ok(t, 'POST', '/messages', { room: 'rz', sender: 'zed', messageType: 'text', message: 'other' }, admin(t, other.apiKey));

      const s = await stats(t);
      const now = t.clock.now();
      expect(s).toMatchObject({ userList: ['alice', 'bob'], roomCount: 1, totalRoomCount: 1, messageCount: 3 });
      expect(s.end).toBe(Math.floor(now / 1000));
      expect(s.end - s.start).toBe(3600);
      expect(s.endTime).toBe(new Date(now).toISOString());
      expect(s.startTime).toBe(new Date(now - 3_600_000).toISOString());
      expect(s.totalMem).toBeGreaterThan(0);
      expect(s.freeMem).toBeGreaterThan(0);
      // The keys are never shown: their last 4 characters only.
      expect(s.apiKey).toBe(`****${t.apiKey.slice(-4)}`);
      expect(s.clientKey).toBe(`****${t.clientKey.slice(-4)}`);
      const res = await t.request({ method: 'GET', url: '/admin/stats', headers: admin(t) });
      expect(res.raw).not.toContain(t.apiKey);
      expect(res.raw).not.toContain(t.clientKey);

      const theirs = await ok(t, 'GET', '/admin/stats', undefined, admin(t, other.apiKey));
      expect(theirs).toMatchObject({ userList: ['zed'], roomCount: 1, totalRoomCount: 1, messageCount: 1, apiKey: `****${other.apiKey.slice(-4)}` });

      // A room with a new message counts as active again; one only created long ago does not.
      t.clock.advance(2 * 3_600_000);
      expect(await stats(t)).toMatchObject({ userList: [], roomCount: 0, totalRoomCount: 1, messageCount: 0 });
      await ok(t, 'POST', '/messages', { room: 'r1', sender: 'carol', messageType: 'text', message: 'later' });
      expect(await stats(t)).toMatchObject({ userList: ['carol'], roomCount: 1, totalRoomCount: 1, messageCount: 1 });
    });

    it("reports this node's peak of the application's logged-in sockets within the hour", async () => {
      const t = await start();
      const tokens = [await createUser(t, 'u1'), await createUser(t, 'u2')];
      const a = await connect(t, tokens[0]!);
      await connect(t, tokens[1]!);
      expect((await stats(t)).peakConnectionCount).toBe(2);
      a.close();
      await until(async () => (await ok(t, 'GET', '/admin/connection-count')).count === 1);
      // One socket left, but two were logged in within the hour.
      expect((await stats(t)).peakConnectionCount).toBe(2);
      t.clock.advance(61 * 60_000);
      expect((await stats(t)).peakConnectionCount).toBe(1);
      // Another application's sockets are not counted.
      const other = await t.server.services.apps.create({ name: 'Other' });
      expect((await ok(t, 'GET', '/admin/stats', undefined, admin(t, other.apiKey))).peakConnectionCount).toBe(0);
    });

    if (dialect === 'sqlite') {
      it('counts the messages of the window as a range of the primary key (no table scan)', async () => {
        const t = await start();
        const plan = await sql.raw<{ detail: string }>(`explain query plan select count(*) as n from messages where app_id = 'a' and id >= '6650000000000000000000000'`).execute(t.server.store.db);
        expect(plan.rows.map((r) => r.detail).join('; ')).toMatch(/SEARCH messages USING COVERING INDEX sqlite_autoindex_messages_1 \(app_id=\? AND id>\?\)/);
        // The users who logged in during the window: a range of users_app_login, not every user of the application.
        const users = await sql.raw<{ detail: string }>(`explain query plan select id from users where app_id = 'a' and last_login_at >= 5`).execute(t.server.store.db);
        expect(users.rows.map((r) => r.detail).join('; ')).toMatch(/SEARCH users USING (COVERING )?INDEX users_app_login \(app_id=\? AND last_login_at>\?\)/);
      });
    }
  });

  describe('GET /metrics', () => {
    it('answers 401 with how to turn it on while IMKIT_METRICS_TOKEN is unset', async () => {
      const t = await start();
      const res = await t.request({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ RC: 401, error: 'INVALID_TOKEN' });
      expect(res.body.message).toContain('IMKIT_METRICS_TOKEN');
      // The API key is no way in either.
      expect((await t.request({ method: 'GET', url: '/metrics', headers: admin(t) })).status).toBe(401);
      expect(t.server.metrics).toBeUndefined();
    });

    it('answers 401 without the token or with a wrong one', async () => {
      const t = await start({ metricsToken: METRICS_TOKEN });
      for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Bearer ${METRICS_TOKEN}x` }, admin(t)] as Array<Record<string, string>>) {
        const res = await t.request({ method: 'GET', url: '/metrics', headers });
        expect(res.status).toBe(401);
        expect(res.body).toMatchObject({ RC: 401, error: 'INVALID_TOKEN' });
      }
    });

    it('serves the Prometheus text format, and its counters move with traffic', async () => {
      const t = await start({ metricsToken: METRICS_TOKEN, userRateLimitPerMinute: 2, socketEventsPer10s: 1 });
      let firstText = '';
      let lastText = '';
      const scrape = async (): Promise<Family[]> => {
        const res = await t.request({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
        expect(res.status).toBe(200);
        expect(String(res.headers['content-type'])).toMatch(/^text\/plain; version=0\.0\.4/);
        firstText ||= res.raw;
        lastText = res.raw;
        return parsePrometheusTextFormat(res.raw) as Family[];
      };
      const value = (families: Family[], name: string, labels: Record<string, string> = {}): number => {
        const family = families.find((f) => f.name === name);
        const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
        return Number(sample?.value ?? sample?.count ?? 0);
      };

      const token = await createUser(t, 'alice');
      await createUser(t, 'bob');
      await ok(t, 'POST', '/rooms', { _id: 'room-42', roomType: 'group', members: ['alice', 'bob'] });
      const before = await scrape();
      expect(before.find((f) => f.name === 'nodejs_eventloop_lag_seconds')).toBeDefined();
      expect(value(before, 'imkit_sockets', { state: 'authenticated' })).toBe(0);

      for (let i = 0; i < 3; i++) await ok(t, 'POST', '/messages', { room: 'room-42', sender: 'alice', messageType: 'text', message: `m${i}` });
      await ok(t, 'GET', '/rooms/room-42');
      await t.request({ method: 'GET', url: '/no/such/route-42' });
      // The user token's limit is 2 a minute: the third call is refused.
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) })).status);
      expect(statuses).toEqual([200, 200, 429]);
      const carol = await connect(t, await createUser(t, 'carol'));
      // The socket's event budget is one event per 10 s: the second is refused.
      await ok(t, 'POST', '/rooms/room-42/members', { members: ['carol'] });
      const acks = [];
      for (let i = 0; i < 2; i++) acks.push(((await carol.emitAck('chat message', { room: 'room-42', messageType: 'text', message: `s${i}` }))[0] as any)?.RC);
      expect(acks).toEqual([0, 429]);

      const after = await scrape();
      const sent = { method: 'POST', route: '/messages', status: '200' };
      expect(value(after, 'imkit_http_requests_total', sent) - value(before, 'imkit_http_requests_total', sent)).toBe(3);
      // The parser folds a histogram's label sets into one (prom2json's shape): its type is checked there, and the
      // count of one label set in the text.
      expect(after.find((f) => f.name === 'imkit_http_request_duration_seconds')?.type).toBe('HISTOGRAM');
      const countOf = (text: string) => Number(/^imkit_http_request_duration_seconds_count\{method="POST",route="\/messages"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      expect(countOf(lastText) - countOf(firstText)).toBe(3);
      expect(value(after, 'imkit_http_requests_total', { method: 'GET', route: '/rooms/:id', status: '200' })).toBe(1);
      expect(value(after, 'imkit_http_requests_total', { route: '(unmatched)', status: '404' })).toBe(1);
      // Route patterns only: no label carries an id from a URL.
      expect(JSON.stringify(after)).not.toContain('room-42');
      // Three by REST, one by carol's socket.
      expect(value(after, 'imkit_messages_stored_total', { kind: 'user' }) - value(before, 'imkit_messages_stored_total', { kind: 'user' })).toBe(4);
      expect(value(after, 'imkit_message_batch_size') - value(before, 'imkit_message_batch_size')).toBeGreaterThanOrEqual(1);
      expect(value(after, 'imkit_rate_limit_refusals_total', { kind: 'user_token' })).toBe(1);
      expect(value(after, 'imkit_rate_limit_refusals_total', { kind: 'socket_events' })).toBe(1);
      expect(value(after, 'imkit_sockets', { state: 'authenticated' })).toBe(1);
      expect(value(after, 'imkit_sockets', { state: 'open' })).toBe(1);
    });

    it('keeps one registry per server', async () => {
      const a = await start({ metricsToken: METRICS_TOKEN });
      const b = await start({ metricsToken: METRICS_TOKEN });
      await ok(a, 'GET', '/admin/connection-count');
      const text = (t: TestServer) => t.request({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } }).then((r) => r.raw);
      expect(await text(a)).toContain('route="/admin/connection-count"');
      expect(await text(b)).not.toContain('route="/admin/connection-count"');
    });
  });

  describe('per-API-key usage', () => {
    it('is counted in memory and written in batches, with the last 4 characters and the last address', async () => {
      // The default interval (10 s) does not pass on the server's clock here: the test writes with flush().
      const t = await start();
      await t.server.usage.flush();
      await t.server.store.db.deleteFrom('api_key_usage').execute();
      t.clock.set(Date.parse('2026-06-01T00:10:00Z'));
      for (let i = 0; i < 4; i++) await ok(t, 'GET', '/admin/connection-count');
      expect(await t.server.store.db.selectFrom('api_key_usage').selectAll().execute()).toEqual([]);
      await t.server.usage.flush();
      const rows = await t.server.store.db.selectFrom('api_key_usage').selectAll().execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ app_id: t.appId, requests: 4, refused: 0, last_used_at: t.clock.now(), last_address: '127.0.0.1', minute: t.clock.now() });
      expect(JSON.stringify(rows)).not.toContain(t.apiKey);

      // More in the same minute add up; the next minute reads the last full one.
      await ok(t, 'GET', '/admin/connection-count');
      await t.server.usage.flush();
      t.clock.advance(60_000);
      const other = await t.server.services.apps.create({ name: 'Other' });
      await ok(t, 'GET', '/admin/connection-count', undefined, admin(t, other.apiKey));
      await t.server.usage.flush();
      const usage = await ok(t, 'GET', '/admin/usage');
      expect(usage.keys).toHaveLength(1);
      expect(usage.keys[0]).toMatchObject({
        last4: t.apiKey.slice(-4),
        lastUsedAt: '2026-06-01T00:10:00.000Z',
        lastAddress: '127.0.0.1',
        requestsLastMinute: 5,
        requestsLastHour: 5,
        perMinute: [{ minute: '2026-06-01T00:10:00.000Z', requests: 5, refused: 0 }],
      });
      expect(JSON.stringify(usage)).not.toContain(t.apiKey);
      const theirs = await ok(t, 'GET', '/admin/usage', undefined, admin(t, other.apiKey));
      expect(theirs.keys).toHaveLength(1);
      expect(theirs.keys[0]).toMatchObject({ last4: other.apiKey.slice(-4), requestsLastMinute: 0, requestsLastHour: 1 });
    });

    it('counts the requests its rate limit refused', async () => {
      const t = await start({ rateLimitPerMinute: 2 });
      t.clock.set(Date.parse('2026-06-01T00:20:00Z'));
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await t.request({ method: 'GET', url: '/admin/connection-count', headers: admin(t) })).status);
      expect(statuses).toEqual([200, 200, 429]);
      await t.server.usage.flush();
      const rows = await t.server.store.db.selectFrom('api_key_usage').select(['requests', 'refused']).where('minute', '=', t.clock.now()).execute();
      expect(rows).toEqual([{ requests: 3, refused: 1 }]);
    });

    it('is written by the timer after the batch interval, and what is left at close', async () => {
      const store = isolatedStore(dialect);
      stores.push(store);
      const config = defaultConfig({ ...store, logLevel: 'silent', port: 0, host: '127.0.0.1' });
      const first = await createServer(config, { clock: new ManualClock(Date.parse('2026-06-01T00:00:00Z')), usageFlushMs: 20 });
      const apiKey = first.bootstrap.createdDefault!.apiKey;
      const call = (s: ImkitServer) => s.http.inject({ method: 'GET', url: '/admin/connection-count', headers: { 'IM-API-KEY': apiKey } });
      try {
        expect((await call(first)).statusCode).toBe(200);
        const written = async () => (await first.store.db.selectFrom('api_key_usage').select(['requests', 'last_address']).execute());
        await until(async () => (await written()).length > 0);
        expect(await written()).toEqual([{ requests: 1, last_address: '127.0.0.1' }]);
      } finally {
        await first.close();
      }
      // A server whose timer never fires (an hour) still writes its counts when it closes.
      const second = await createServer(config, { clock: new ManualClock(Date.parse('2026-06-01T00:00:00Z')), usageFlushMs: 3_600_000 });
      expect((await call(second)).statusCode).toBe(200);
      expect((await call(second)).statusCode).toBe(200);
      await second.close();
      const third = await createServer(config, { clock: new ManualClock(Date.parse('2026-06-01T00:00:00Z')), usageFlushMs: 3_600_000 });
      try {
        const rows = await third.store.db.selectFrom('api_key_usage').select('requests').execute();
        expect(rows).toEqual([{ requests: 3 }]);
      } finally {
        await third.close();
      }
    });
  });
});
