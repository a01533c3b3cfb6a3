import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppsService } from '../src/apps/apps-service.js';
import { CredentialCache } from '../src/auth/credential-cache.js';
import { UsersService } from '../src/chat/users-service.js';
import { defaultConfig } from '../src/config.js';
import { EventBus } from '../src/events/bus.js';
import { ManualClock } from '../src/lib/clock.js';
import { digest } from '../src/lib/secrets.js';
import { openStore, type Store } from '../src/store/database.js';
import type { ExternalWrites, WatchOptions } from '../src/store/external-writes.js';
import { listenerName } from '../src/store/external-writes.js';
import { createUser, DIALECTS, isolatedStore, POSTGRES_URL, type Res, startTestServer, type TestServer, userHeaders } from './helpers.js';

/**
 * The auth guard answers from memory (src/auth/credential-cache.ts). These tests prove that it does, and that
 * every change to a credential empties it in time: one made through the API or a service of the same server at
 * once, one made by the CLI in another process on the next request (SQLite) or as soon as Postgres delivered its
 * notification (polled for at most 2 s, never asserted as a speed).
 */
const MAIN = path.resolve('dist/main.js');
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error('dist/main.js is missing: run "npm run build" (npm test does it first)');
});

/** The app CLI as a separate process on the test server's store; returns its one JSON line. */
async function cli(t: TestServer, args: string[]): Promise<any> {
  const env = { ...process.env, IMKIT_DATA_DIR: t.config.dataDir, DATABASE_URL: t.config.databaseUrl, IMKIT_DATABASE_SCHEMA: t.config.databaseSchema };
  const r = await run(process.execPath, [MAIN, 'app', ...args, '--json'], { env });
  return JSON.parse(r.stdout);
}

/**
 * A request made after another process's change: on SQLite the very next one must see it; on Postgres the change
 * arrives as a notification, so the request is repeated while it still gets the old answer, for at most 2 s.
 */
async function afterExternalChange(dialect: string, send: () => Promise<Res>, expected: number): Promise<Res> {
  let res = await send();
  if (dialect === 'sqlite') return res;
  const deadline = Date.now() + 2000;
  while (res.status !== expected && Date.now() < deadline) {
    await sleep(20);
    res = await send();
  }
  return res;
}

/** Polls a condition for at most `ms`; returns whether it became true. */
async function until(cond: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(10);
  return cond();
}

async function pgQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

describe.each(DIALECTS)('credential cache (%s)', (dialect) => {
  let t: TestServer;
  const stats = () => t.server.guard.credentials.stats;
  const me = (clientKey: string, token: string, extra: Record<string, string> = {}) =>
    t.request({ method: 'GET', url: '/me/pref', headers: { ...userHeaders(clientKey, token), ...extra } });
  const admin = (apiKey: string) => t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': apiKey } });

  /**
   * On Postgres this server's own writes are also announced by the database, a moment later, and drop what they
   * concern once more. Notifications arrive in commit order: once a marker sent now has arrived, the earlier ones
   * have too. (SQLite does not report a connection's own commits until another connection commits.)
   */
  async function settle(): Promise<void> {
    if (dialect === 'sqlite') return;
    const drops = stats().drops;
    await pgQuery(`select pg_notify('imkit_credentials', json_build_array('${t.config.databaseSchema}', 'token', '~settle', 'marker')::text)`);
    expect(await until(() => stats().drops > drops)).toBe(true);
  }

  /** Makes one request twice; the second must be answered from memory alone. */
  async function expectServedFromMemory(send: () => Promise<Res>, lookups: number): Promise<void> {
    expect((await send()).status).toBe(200);
    const before = { ...stats() };
    expect((await send()).status).toBe(200);
    expect(stats().storeReads).toBe(before.storeReads);
    expect(stats().hits).toBe(before.hits + lookups);
  }

  beforeAll(async () => {
    t = await startTestServer(dialect, { authFailuresPerMinute: 10_000 });
  });
  afterAll(async () => t?.close());

  it('a repeated request is answered from memory: the store is not read for its credentials', async () => {
    const token = await createUser(t, 'amy');
    await settle();
    // client key, domain table, token
    await expectServedFromMemory(() => me(t.clientKey, token), 3);
    // API key (with its application)
    await expectServedFromMemory(() => admin(t.apiKey), 1);
  });

  it('what is not found is not kept: a forged token read after a valid one is refused, and read again each time', async () => {
    const token = await createUser(t, 'ben');
    await settle();
    expect((await me(t.clientKey, token)).status).toBe(200);
    const forged = `${token.slice(0, -4)}AAAA`;
    for (let i = 0; i < 2; i++) {
      const before = stats().storeReads;
      const res = await me(t.clientKey, forged);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('INVALID_TOKEN');
      expect(stats().storeReads).toBe(before + 1);
    }
    expect((await me(t.clientKey, token)).status).toBe(200);
    // a token unknown a moment ago works as soon as it is bound
    expect((await me(t.clientKey, 'ben-custom-token-1')).status).toBe(401);
    await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'ben', token: 'ben-custom-token-1' } });
    expect((await me(t.clientKey, 'ben-custom-token-1')).status).toBe(200);
  });

  it('a token revoked through the API is refused on the next request', async () => {
    const token = await createUser(t, 'cleo');
    await settle();
    await expectServedFromMemory(() => me(t.clientKey, token), 3);
    const del = await t.request({ method: 'DELETE', url: '/admin/clients/cleo/token', headers: { 'IM-API-KEY': t.apiKey }, body: { token } });
    expect(del.status).toBe(200);
    const res = await me(t.clientKey, token);
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('INVALID_TOKEN');
  });

  it("deleting a user refuses the user's token on the next request", async () => {
    const token = await createUser(t, 'dora');
    await settle();
    await expectServedFromMemory(() => me(t.clientKey, token), 3);
    expect((await t.request({ method: 'DELETE', url: '/admin/clients/dora', headers: { 'IM-API-KEY': t.apiKey } })).status).toBe(200);
    expect((await me(t.clientKey, token)).status).toBe(401);
  });

  it('a new expiry of a cached token applies on the next request, and expiry is checked against the clock', async () => {
    const body = (expirationDate: number) => ({ _id: 'eve', token: 'eve-token-123456', expirationDate });
    await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey }, body: body(t.clock.now() + 3_600_000) });
    await settle();
    await expectServedFromMemory(() => me(t.clientKey, 'eve-token-123456'), 3);
    // binding the same token again with an earlier expiry revokes nothing, but changes the cached row
    await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': t.apiKey }, body: body(t.clock.now() + 60_000) });
    expect((await me(t.clientKey, 'eve-token-123456')).status).toBe(200);
    t.clock.advance(60_000);
    const res = await me(t.clientKey, 'eve-token-123456');
    expect(res.status).toBe(401);
    expect(res.body.message).toBe('The provided user token has expired');
  });

  it('API key rotation and revocation by the CLI in another process: refused on the next request', async () => {
    await expectServedFromMemory(() => admin(t.apiKey), 1);
    const rotated = await cli(t, ['rotate-api-key', 'default', '--expire-old-in', '0']);
    const old = await afterExternalChange(dialect, () => admin(t.apiKey), 401);
    expect(old.status).toBe(401);
    expect(old.body.error).toBe('INVALID_API_KEY');
    await expectServedFromMemory(() => admin(rotated.apiKey), 1);

    const other = await cli(t, ['create', '--name', 'Other']);
    await expectServedFromMemory(() => admin(other.apiKey), 1);
    await cli(t, ['revoke-api-key', other.id, other.apiKey.slice(-4)]);
    expect((await afterExternalChange(dialect, () => admin(other.apiKey), 401)).status).toBe(401);
    expect((await admin(rotated.apiKey)).status).toBe(200);
    t.apiKey = rotated.apiKey;
  });

  it('client key rotation by the CLI in another process: refused on the next request', async () => {
    const token = await createUser(t, 'finn');
    await settle();
    await expectServedFromMemory(() => me(t.clientKey, token), 3);
    const { clientKey } = await cli(t, ['rotate-client-key', 'default']);
    const res = await afterExternalChange(dialect, () => me(t.clientKey, token), 403);
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('INVALID_CLIENT_KEY');
    expect((await me(clientKey, token)).status).toBe(200);
    t.clientKey = clientKey;
  });

  it('a change committed by another process while this server holds a transaction open is not missed', async () => {
    await expectServedFromMemory(() => admin(t.apiKey), 1);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let began!: () => void;
    const begun = new Promise<void>((r) => (began = r));
    const trx = t.server.store.db.transaction().execute(async (tx) => {
      await tx.selectFrom('apps').select('id').execute(); // a read: the transaction now has its snapshot
      began();
      await gate;
    });
    await begun;
    if (dialect === 'sqlite') {
      // SQLite: the server's transactions begin IMMEDIATE (they hold the write lock), so the CLI's write waits for
      // this one to end (busy_timeout) instead of committing under it; its change must be noticed all the same.
      const rotating = cli(t, ['rotate-api-key', 'default', '--expire-old-in', '0']);
      await sleep(300);
      release();
      await trx;
      const rotated = await rotating;
      expect((await admin(t.apiKey)).status).toBe(401);
      expect((await admin(rotated.apiKey)).status).toBe(200);
      t.apiKey = rotated.apiKey;
      return;
    }
    const rotated = await cli(t, ['rotate-api-key', 'default', '--expire-old-in', '0']);
    const pending = afterExternalChange(dialect, () => admin(t.apiKey), 401);
    await sleep(20);
    release();
    await trx;
    expect((await pending).status).toBe(401);
    expect((await admin(rotated.apiKey)).status).toBe(200);
    t.apiKey = rotated.apiKey;
  });

  it('a domain bound while the server runs takes effect: by this server at once, by the CLI on the next request', async () => {
    const token = await createUser(t, 'gus');
    await settle();
    const at = (host: string) => me(t.clientKey, token, { host });
    await expectServedFromMemory(() => at('chat.shop.example'), 3);
    await t.server.services.apps.create({ id: 'shop', name: 'Shop', domains: ['chat.shop.example'] });
    const mismatch = await at('chat.shop.example');
    expect(mismatch.status).toBe(403);
    expect(mismatch.body.error).toBe('CLIENT_KEY_MISMATCH');

    await settle();
    await expectServedFromMemory(() => at('a.cdn.example'), 3);
    await cli(t, ['create', '--name', 'Cdn', '--domain', '*.cdn.example']);
    const res = await afterExternalChange(dialect, () => at('a.cdn.example'), 403);
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('CLIENT_KEY_MISMATCH');
    expect((await at('localhost')).status).toBe(200);
  });
});

/** A store whose "changes by other processes" are played by the test. */
function withFakeWatch(store: Store): { store: Store; watch: { reliable: boolean; opts?: WatchOptions } } {
  const watch: { reliable: boolean; opts?: WatchOptions } = { reliable: true };
  const fake: ExternalWrites = {
    get reliable() {
      return watch.reliable;
    },
    check: () => undefined,
    started: Promise.resolve(),
    close: async () => {},
  };
  return {
    store: {
      ...store,
      watchExternalWrites: (opts) => {
        watch.opts = opts;
        return fake;
      },
    },
    watch,
  };
}

describe.each(DIALECTS)('credential cache on its own (%s)', (dialect) => {
  let store: Store;
  let drop: () => Promise<void>;
  let apps: AppsService;
  let users: UsersService;
  const bus = new EventBus();
  const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));

  beforeAll(async () => {
    const iso = isolatedStore(dialect);
    drop = iso.drop;
    store = openStore(defaultConfig(iso));
    await store.migrate();
    apps = new AppsService(store.db, clock); // no bus: these writes are "another process" for the cache
    users = new UsersService(store.db, dialect, clock, 3_600_000);
  });
  afterAll(async () => {
    await store?.close();
    await drop?.();
  });

  it('is bypassed while changes by other processes cannot be noticed, and used again once they can', async () => {
    const { store: s, watch } = withFakeWatch(store);
    const cache = new CredentialCache(s, bus);
    const app = await apps.create({ id: 'bypass', name: 'Bypass' });
    const d = digest(app.apiKey);
    watch.reliable = false;
    for (let i = 0; i < 2; i++) expect((await cache.apiKey(d))?.app.id).toBe('bypass');
    expect(cache.stats).toMatchObject({ hits: 0, storeReads: 2 });
    // watching resumes: the watch reports a change (what happened meanwhile is unknown), then the cache is used
    watch.reliable = true;
    watch.opts!.onChange();
    for (let i = 0; i < 2; i++) expect((await cache.apiKey(d))?.key.app_id).toBe('bypass');
    expect(cache.stats).toMatchObject({ hits: 1, storeReads: 3 });
    // a reported change empties it
    watch.opts!.onChange();
    await cache.apiKey(d);
    expect(cache.stats).toMatchObject({ hits: 1, storeReads: 4 });
    await cache.close();
  });

  it('a read that began before a change does not store its result', async () => {
    const { store: s, watch } = withFakeWatch(store);
    const cache = new CredentialCache(s, bus);
    const app = await apps.create({ id: 'race', name: 'Race' });
    const d = digest(app.apiKey);
    const reading = cache.apiKey(d);
    watch.opts!.onChange(); // the change lands while the store is being read
    expect((await reading)?.app.id).toBe('race');
    await cache.apiKey(d);
    expect(cache.stats).toMatchObject({ hits: 0, storeReads: 2 });
    await cache.close();
  });

  it('keeps at most maxTokens user tokens, forgetting the oldest', async () => {
    const { store: s } = withFakeWatch(store);
    const cache = new CredentialCache(s, bus, { maxTokens: 2 });
    const app = await apps.resolve('bypass');
    const tokens: string[] = [];
    for (const id of ['t1', 't2', 't3']) tokens.push((await users.upsert(app, { id, issueAccessToken: true, custom: {} })).token as string);
    for (const token of tokens) expect((await cache.token(app.id, digest(token)))?.user_id).toBeTruthy();
    expect(cache.stats.storeReads).toBe(3);
    await cache.token(app.id, digest(tokens[2]!)); // still held
    await cache.token(app.id, digest(tokens[1]!)); // still held
    expect(cache.stats).toMatchObject({ hits: 2, storeReads: 3 });
    await cache.token(app.id, digest(tokens[0]!)); // forgotten
    expect(cache.stats).toMatchObject({ hits: 2, storeReads: 4 });
    await cache.close();
  });

  it('cached rows cannot be changed by a caller', async () => {
    const { store: s } = withFakeWatch(store);
    const cache = new CredentialCache(s, bus);
    const app = await apps.create({ id: 'frozen', name: 'Frozen' });
    const found = (await cache.apiKey(digest(app.apiKey)))!;
    expect(() => {
      (found.app as { name: string }).name = 'changed';
    }).toThrow(TypeError);
    await cache.close();
  });
});

describe.runIf(POSTGRES_URL)('credential cache: losing the Postgres LISTEN connection (postgres)', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('postgres', { authFailuresPerMinute: 10_000 });
  });
  afterAll(async () => t?.close());

  it('a revocation committed while the listener is down is not missed; the cache is used again afterwards', async () => {
    const admin = (apiKey: string) => t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': apiKey } });
    const schema = t.config.databaseSchema!;
    expect((await admin(t.apiKey)).status).toBe(200);
    const logged = (text: string) => t.logs.some((l) => l.includes(text));
    // kill this server's LISTEN connection, and revoke the key straight away (most likely before it reconnects)
    await pgQuery(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = '${listenerName(schema)}'`);
    await pgQuery(`update ${schema}.api_keys set revoked_at = 1 where app_id = 'default'`);
    expect(await until(() => logged('credential cache bypassed'), 5000)).toBe(true);
    expect(await until(() => logged('credential cache in use again'), 5000)).toBe(true);
    const res = await admin(t.apiKey);
    expect(res.status).toBe(401);
    // listening again: a key is served from memory, and a change is noticed
    const app = await t.server.services.apps.resolve('default');
    const { apiKey } = await t.server.services.apps.rotateApiKey(app, 0);
    const drops = t.server.guard.credentials.stats.drops;
    await pgQuery(`select pg_notify('imkit_credentials', json_build_array('${schema}', 'token', '~settle', 'marker')::text)`);
    expect(await until(() => t.server.guard.credentials.stats.drops > drops)).toBe(true);
    expect((await admin(apiKey)).status).toBe(200);
    const reads = t.server.guard.credentials.stats.storeReads;
    expect((await admin(apiKey)).status).toBe(200);
    expect(t.server.guard.credentials.stats.storeReads).toBe(reads);
    await pgQuery(`update ${schema}.api_keys set revoked_at = 1 where app_id = 'default'`);
    expect((await afterExternalChange('postgres', () => admin(apiKey), 401)).status).toBe(401);
  });
});

describe.each(DIALECTS)('credential cache: a change drops what it concerns (%s)', (dialect) => {
  let t: TestServer;
  let other: Store;
  let otherUsers: UsersService;
  let b: { apiKey: string };
  const stats = () => t.server.guard.credentials.stats;
  const me = (token: string) => t.request({ method: 'GET', url: '/me/pref', headers: userHeaders(t.clientKey, token) });

  /** On Postgres: waits until every notification committed before now has arrived (a marker sent after them). */
  async function settle(): Promise<void> {
    if (dialect === 'sqlite') return;
    const drops = stats().drops;
    await pgQuery(`select pg_notify('imkit_credentials', json_build_array('${t.config.databaseSchema}', 'token', '~settle', 'marker')::text)`);
    expect(await until(() => stats().drops > drops)).toBe(true);
  }

  /** The request is answered from memory: the store is not read for its client key, domains and token. */
  async function expectFromMemory(token: string): Promise<void> {
    const before = { ...stats() };
    expect((await me(token)).status).toBe(200);
    expect(stats().storeReads).toBe(before.storeReads);
    expect(stats().hits).toBe(before.hits + 3);
  }

  beforeAll(async () => {
    t = await startTestServer(dialect, { authFailuresPerMinute: 10_000 });
    b = await t.server.services.apps.create({ id: 'tenant-b', name: 'B' });
    // Another connection to the same store, as another process (the CLI, another node) would have.
    other = openStore(t.config);
    otherUsers = new UsersService(other.db, dialect, t.clock, 3_600_000);
  });
  afterAll(async () => {
    await other?.close();
    await t?.close();
  });

  it("issuing tokens, for another application or this one, through this server or another connection, keeps what is cached", async () => {
    const token = await createUser(t, 'ann');
    await settle();
    expect((await me(token)).status).toBe(200);
    await expectFromMemory(token);
    const flushes = stats().flushes;

    for (let i = 0; i < 3; i++) await createUser(t, `b-user-${i}`, b.apiKey);
    await createUser(t, 'ann-colleague');
    const appB = (await t.server.guard.credentials.app('tenant-b'))!;
    await otherUsers.upsert(appB, { id: 'b-remote', issueAccessToken: true, custom: {} });
    await otherUsers.upsert(appB, { id: 'b-custom', token: 'b-custom-token-000001', custom: {} });
    await settle();

    await expectFromMemory(token);
    expect(stats().flushes).toBe(flushes);
  });

  it("revoking a token drops that token only: another user's cached token stays, the revoked one is refused at once", async () => {
    const keep = await createUser(t, 'kai');
    const gone = await createUser(t, 'gil');
    await settle();
    for (const tok of [keep, gone]) expect((await me(tok)).status).toBe(200);
    const del = await t.request({ method: 'DELETE', url: '/admin/clients/gil/token', headers: { 'IM-API-KEY': t.apiKey }, body: { token: gone } });
    expect(del.status).toBe(200);
    expect((await me(gone)).status).toBe(401);
    await settle();
    await expectFromMemory(keep);
  });

  it('a revocation through another connection, or tokens deleted by hand, apply on the next request; the rest stays cached', async () => {
    const keep = await createUser(t, 'lou');
    const revoked = await createUser(t, 'mo');
    const deleted = await createUser(t, 'ned');
    await settle();
    for (const tok of [keep, revoked, deleted]) expect((await me(tok)).status).toBe(200);
    const app = (await t.server.guard.credentials.app(t.appId))!;
    const flushes = stats().flushes;

    await otherUsers.revokeTokens(app, 'mo', revoked);
    expect((await afterExternalChange(dialect, () => me(revoked), 401)).status).toBe(401);
    // An operator deleting a user's tokens by hand (sqlite3, psql): the triggers name each token.
    if (dialect === 'sqlite') await sql`delete from user_tokens where app_id = ${app.id} and user_id = 'ned'`.execute(other.db);
    else await pgQuery(`delete from ${t.config.databaseSchema}.user_tokens where app_id = '${app.id}' and user_id = 'ned'`);
    expect((await afterExternalChange(dialect, () => me(deleted), 401)).status).toBe(401);

    await settle();
    await expectFromMemory(keep);
    expect(stats().flushes).toBe(flushes);
  });

  it("a change to another application's keys keeps this application's entries; a change to this one's drops them", async () => {
    const token = await createUser(t, 'pia');
    await settle();
    expect((await me(token)).status).toBe(200);
    const appB = await t.server.services.apps.resolve('tenant-b');
    await t.server.services.apps.rotateApiKey(appB, 0);
    await settle();
    // The domain table is one snapshot for every application: an application's change reloads it (one read); this
    // application's client key and token are still held.
    const before = { ...stats() };
    expect((await me(token)).status).toBe(200);
    expect(stats().storeReads).toBe(before.storeReads + 1);
    expect(stats().hits).toBe(before.hits + 2);
    const appA = await t.server.services.apps.resolve(t.appId);
    const { apiKey } = await t.server.services.apps.rotateApiKey(appA, 3_600_000);
    const reads = stats().storeReads;
    expect((await me(token)).status).toBe(200);
    expect(stats().storeReads).toBe(reads + 3);
    await settle();
    expect((await t.request({ method: 'GET', url: '/admin/clients', headers: { 'IM-API-KEY': apiKey } })).status).toBe(200);
  });
});

describe('credential cache: a reader too far behind the change log (sqlite)', () => {
  it('empties everything when the changes it missed were already pruned from the log', async () => {
    const t = await startTestServer('sqlite', { authFailuresPerMinute: 10_000 });
    const other = openStore(t.config);
    try {
      const token = await createUser(t, 'quinn');
      const me = () => t.request({ method: 'GET', url: '/me/pref', headers: userHeaders(t.clientKey, token) });
      expect((await me()).status).toBe(200);
      const flushes = t.server.guard.credentials.stats.flushes;
      // More changes than the log keeps (4096), the last of them revoking quinn's token, in one transaction.
      await other.db.transaction().execute(async (trx) => {
        for (let i = 0; i < 4100; i++) await sql`update user_tokens set expires_at = expires_at where user_id = 'quinn'`.execute(trx);
        await sql`delete from user_tokens where user_id = 'quinn'`.execute(trx);
      });
      expect((await me()).status).toBe(401);
      expect(t.server.guard.credentials.stats.flushes).toBe(flushes + 1);
    } finally {
      await other.close();
      await t.close();
    }
  });
});
