import { type ChildProcess, execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, loadConfig } from '../src/config.js';
import { createServer } from '../src/server.js';
import { CuttableLink, PrivatePostgres, PrivateRedis } from './cluster-helpers.js';
import { freePort, POSTGRES_URL, startServerProcess } from './helpers.js';
import { type Generation, TestClient } from './realtime-helpers.js';
import { Receiver } from './webhook-receiver.js';

/**
 * Cluster mode (issue 18, docs/cluster.md): three nodes as separate processes on one PostgreSQL and one Redis, both
 * private to this test (started on spare ports, stopped and restarted by it).
 */
const MAIN = path.resolve('dist/main.js');
const run = promisify(execFile);
const API_KEY = 'cluster-test-api-key-0123456789abcdef012345';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000, stepMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

describe('cluster mode: start-up checks', () => {
  it('refuses REDIS_URL without DATABASE_URL (SQLite) with one line', () => {
    expect(() => loadConfig({}, { REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(/^REDIS_URL \(cluster mode\) needs DATABASE_URL to be PostgreSQL/);
    expect(() => loadConfig({}, { REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://u@h/db' })).not.toThrow();
    expect(() => loadConfig({}, { REDIS_URL: 'http://x', DATABASE_URL: 'postgres://u@h/db' })).toThrow(/REDIS_URL: must start with redis:\/\//);
  });

  it('the CLI says so and exits with 2 (a settings error)', async () => {
    const err = await run(process.execPath, [MAIN, 'start'], { env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: '' } }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toMatch(/REDIS_URL \(cluster mode\) needs DATABASE_URL/);
  });
});

// PostgreSQL is needed here (private instances of the machine's PostgreSQL and Redis binaries): the suite runs these
// when IMKIT_TEST_POSTGRES_URL says PostgreSQL is installed, and always under CI (where a missing one fails them).
if (POSTGRES_URL !== undefined || process.env.CI) describe('cluster mode: three nodes', () => {
  let redis: PrivateRedis;
  let pg: PrivatePostgres;
  const nodes: Array<{ port: number; proc: ChildProcess; output: string[]; base: string }> = [];
  let env: Record<string, string>;
  let clientKey = '';
  const tokens: Record<string, string> = {};
  const clients: TestClient[] = [];
  const receiver = new Receiver();
  /** Every message id acknowledged so far (REST 200 or socket ack), per room. */
  const acked = new Map<string, string[]>();

  const api = async (node: number, method: string, url: string, body?: unknown, key = API_KEY) => {
    const headers: Record<string, string> = { 'IM-API-KEY': key };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${nodes[node]!.base}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
  };
  const restSend = async (node: number, room: string, message: string, sender = 'backend') => {
    const r = await api(node, 'POST', '/messages', { room, sender, message, messageType: 'text' });
    if (r.status === 200) {
      const list = acked.get(room) ?? [];
      list.push(r.body.result._id);
      acked.set(room, list);
    }
    return r;
  };
  const connect = async (node: number, user: string, generation: Generation) => {
    const c = await TestClient.connect(nodes[node]!.base, generation);
    const ack = await c.login(tokens[user]!, clientKey);
    if (generation !== 'vue') expect(ack, JSON.stringify(ack)).toMatchObject({ RC: 0 });
    clients.push(c);
    return c;
  };
  const waitFor = (pred: () => boolean, ms = 5_000) => until('a condition', async () => pred(), ms, 20);
  const messagesOf = (c: TestClient) => c.events.filter((e) => e.event === 'chat message').map((e) => e.payload);
  const startNode = async (i: number) => {
    const port = nodes[i]?.port ?? (await freePort());
    const output: string[] = [];
    const proc = await startServerProcess(port, env, output);
    nodes[i] = { port, proc, output, base: `http://127.0.0.1:${port}` };
  };

  beforeAll(async () => {
    [redis, pg] = await Promise.all([PrivateRedis.start(), PrivatePostgres.start()]);
    await receiver.start();
    env = {
      DATABASE_URL: pg.url,
      REDIS_URL: redis.url,
      IMKIT_CLUSTER_PREFIX: `t${process.pid}`,
      IMKIT_API_KEY: API_KEY,
      IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      IMKIT_SOCKET_EVENT_LIMIT: '100000',
      IMKIT_USER_RATE_LIMIT: '100000',
      IMKIT_SHUTDOWN_TIMEOUT: '5s',
      IMKIT_LOG_FORMAT: 'json',
      IMKIT_LEGACY_SOCKET_AUTH: 'default',
    };
    // The first node migrates the store and creates the application; the other two start together.
    await startNode(0);
    await Promise.all([startNode(1), startNode(2)]);
    const ck = await run(process.execPath, [MAIN, 'app', 'rotate-client-key', 'default', '--json'], { env: { ...process.env, ...env } });
    clientKey = JSON.parse(ck.stdout).clientKey as string;
    for (const u of ['u1', 'u2', 'u3', 'u4', 'backend']) {
      const r = await api(0, 'POST', '/admin/clients', { _id: u, nickname: u, issueAccessToken: true });
      tokens[u] = r.body.result.token;
    }
    expect((await api(1, 'POST', '/rooms', { _id: 'g', name: 'G', roomType: 'group', members: ['u1', 'u2', 'u3', 'u4', 'backend'], owner: 'backend' })).status).toBe(200);
    // Every node sees the other two.
    for (let i = 0; i < 3; i++) await until(`node ${i} to see 3 nodes`, async () => (await api(i, 'GET', '/healthz')).body?.result?.cluster?.nodes === 3);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.socket.disconnect();
    for (const n of nodes) if (n.proc.exitCode === null) n.proc.kill('SIGKILL');
    await receiver.close();
    await Promise.all([redis?.stop(), pg?.stop()]);
  }, 60_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(show());
  });
  const show = () => nodes.map((n, i) => `--- node ${i}\n${n.output.join('').slice(-3000)}`).join('\n');

  it('a message sent on one node reaches every member on every node, in each client generation', async () => {
    const c1 = await connect(0, 'u1', 'bundle');
    const c2 = await connect(1, 'u2', 'vue');
    const c3 = await connect(2, 'u3', 'legacy');
    const c4 = await connect(2, 'u4', 'flutter');
    // Presence is cluster-wide: every node counts the four sockets, and sees u3 (on node 2) online.
    for (let i = 0; i < 3; i++) await until(`connection count 4 on node ${i}`, async () => (await api(i, 'GET', '/admin/connection-count')).body.result.count === 4);
    const room = await fetch(`${nodes[0]!.base}/rooms/g`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': tokens.u1! } }).then((r) => r.json() as Promise<any>);
    const online = Object.fromEntries(room.result.members.map((m: any) => [m._id, m.isSocketConnected]));
    expect(online).toMatchObject({ u1: true, u2: true, u3: true, u4: true, backend: false });
    // A socket that changes its encoding leaves one user channel and joins the other in one turn: still online.
    expect(c1.decode((await c1.emitAck('conf', { encoding: 'json' }))[0])).toMatchObject({ RC: 0 });
    expect(c1.decode((await c1.emitAck('conf', { encoding: 'base64' }))[0])).toMatchObject({ RC: 0 });
    await sleep(200);
    const again = await fetch(`${nodes[1]!.base}/rooms/g`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': tokens.u2! } }).then((r) => r.json() as Promise<any>);
    expect(again.result.members.find((m: any) => m._id === 'u1').isSocketConnected).toBe(true);

    const ack = c1.decode((await c1.emitAck('chat message', { room: 'g', message: 'from node 0', messageType: 'text' }))[0]);
    expect(ack.RC).toBe(0);
    acked.set('g', [ack.result._id]);
    for (const c of [c1, c2, c3, c4]) await waitFor(() => messagesOf(c).some((m) => m._id === ack.result._id));
    expect((await restSend(1, 'g', 'from node 1 over REST')).status).toBe(200);
    const restId = acked.get('g')!.at(-1);
    for (const c of [c1, c2, c3, c4]) await waitFor(() => messagesOf(c).some((m) => m._id === restId));
    // Each received each message once.
    for (const c of [c1, c2, c3, c4]) expect(messagesOf(c).map((m) => m._id)).toEqual([ack.result._id, restId]);
  });

  it('membership changes and bans on one node apply to delivery on the others at once', async () => {
    const [c1, , c3, c4] = clients;
    // u4 (on node 2) leaves the room through node 0; u3 (on node 2) is banned through node 1.
    expect((await api(0, 'POST', '/rooms/g/delete/members', { members: ['u4'] })).status).toBe(200);
    expect((await api(1, 'POST', '/blockStatus/room/g/u3', {})).status).toBe(200);
    const before4 = messagesOf(c4!).length;
    const before3 = messagesOf(c3!).length;
    expect((await restSend(2, 'g', 'after the changes')).status).toBe(200);
    const id = acked.get('g')!.at(-1);
    await waitFor(() => messagesOf(c1!).some((m) => m._id === id));
    await sleep(300);
    expect(messagesOf(c4!).length).toBe(before4);
    expect(messagesOf(c3!).length).toBe(before3);
    // u4 back, for the tests below.
    expect((await api(1, 'POST', '/rooms/g/members', { members: ['u4'] })).status).toBe(200);
    expect((await api(0, 'DELETE', '/blockStatus/room/g/u3')).status).toBe(200);
  });

  it('an API key revoked on node 0 is refused on node 2 within a second', async () => {
    const created = await api(0, 'POST', '/admin/api-keys', { name: 'short-lived' });
    expect(created.status).toBe(200);
    const key = created.body.result.apiKey as string;
    expect(key).toMatch(/.{20,}/);
    // Node 2 has it cached after this request.
    expect((await api(2, 'GET', '/admin/clients?limit=1', undefined, key)).status).toBe(200);
    expect((await api(0, 'DELETE', `/admin/api-keys/${created.body.result.id}`)).status).toBe(200);
    const revokedAt = Date.now();
    const refused = await until('node 2 to refuse the key', async () => {
      const r = await api(2, 'GET', '/admin/clients?limit=1', undefined, key);
      return r.status === 401 ? r : undefined;
    }, 5_000, 20);
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
    expect(refused.body.error).toBeDefined();
  });

  it('a user token revoked on node 0 drops its socket on node 2', async () => {
    const c4 = clients[3]!;
    expect(c4.disconnected).toBe(false);
    expect((await api(0, 'DELETE', '/admin/clients/u4/token', {})).status).toBe(200);
    await waitFor(() => c4.disconnected, 3_000);
    tokens.u4 = (await api(0, 'POST', '/admin/clients', { _id: 'u4', nickname: 'u4', issueAccessToken: true })).body.result.token;
  });

  it('a webhook event is delivered exactly once although three dispatchers run', async () => {
    const hook = await api(1, 'POST', '/admin/webhooks', { url: `http://127.0.0.1:${receiver.port}/hooks`, events: ['message.created'] });
    expect(hook.status).toBe(200);
    await sleep(300);
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await restSend(i % 3, 'g', `hooked ${i}`);
      expect(r.status).toBe(200);
      sent.push(r.body.result._id);
    }
    const ids = () => receiver.requests.filter((r) => r.json?.type === 'message.created').map((r) => r.json.data?.message?._id ?? r.json.data?._id);
    await until('30 webhook deliveries', async () => sent.every((id) => ids().includes(id)));
    await sleep(1_500);
    const events = receiver.requests.filter((r) => r.json?.type === 'message.created').map((r) => r.headers['webhook-id']);
    expect(new Set(events).size).toBe(events.length);
    expect(events.length).toBe(30);
  });

  it('the API-key limit holds for the sum of the nodes: 1000 in a sliding minute, then 429 with the seed\'s body', async () => {
    const created = await api(0, 'POST', '/admin/api-keys', { name: 'limited' });
    const key = created.body.result.apiKey as string;
    let allowed = 0;
    let refused: any;
    // 1,100 requests spread over the three nodes, 20 at a time.
    for (let sent = 0; sent < 1_100; sent += 20) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, j) => api((sent + j) % 3, 'GET', '/admin/clients?limit=1', undefined, key)));
      for (const a of answers) {
        if (a.status === 200) allowed++;
        else if (a.status === 429) refused ??= a.body;
        else throw new Error(`unexpected ${a.status}: ${JSON.stringify(a.body)}`);
      }
    }
    // All inside one minute: exactly the limit (the issue allows 2%; the shared log is exact).
    expect(allowed).toBeGreaterThanOrEqual(980);
    expect(allowed).toBeLessThanOrEqual(1_000);
    expect(refused).toMatchObject({ RC: 429, RM: 'Too many requests, please try again later' });
  }, 60_000);

  it('Redis lost: nodes keep serving REST and their own sockets; fan-out between nodes resumes when it returns', async () => {
    const [c1, c2, c3] = clients;
    await redis.down();
    for (let i = 0; i < 3; i++) await until(`node ${i} to notice Redis is gone`, async () => (await api(i, 'GET', '/healthz')).body?.result?.cluster?.redis === 'down');
    for (let i = 0; i < 3; i++) expect((await restSend(i, 'g', `without redis ${i}`)).status).toBe(200);
    // Rate limits fall back to each node's share: a key of 30 a minute allows 10 on one node (3 nodes known).
    const limited = await api(1, 'POST', '/admin/api-keys', { name: 'thirty', rateLimitPerMinute: 30 });
    expect(limited.status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 15; i++) statuses.push((await api(0, 'GET', '/admin/clients?limit=1', undefined, limited.body.result.apiKey)).status);
    expect(statuses.filter((x) => x === 200)).toHaveLength(10);
    expect(statuses.slice(10)).toEqual([429, 429, 429, 429, 429]);
    // A socket on node 0 still gets what node 0 stores.
    const local = acked.get('g')!.at(-3);
    await waitFor(() => messagesOf(c1!).some((m) => m._id === local));
    // Caches are bypassed: a membership change on node 1 applies on node 0 without Redis.
    expect((await api(1, 'POST', '/rooms/g/delete/members', { members: ['u2'] })).status).toBe(200);
    const before2 = messagesOf(c2!).length;
    expect((await restSend(0, 'g', 'u2 removed')).status).toBe(200);
    await sleep(300);
    expect(messagesOf(c2!).length).toBe(before2);
    expect((await api(0, 'POST', '/rooms/g/members', { members: ['u2'] })).status).toBe(200);

    await redis.up();
    for (let i = 0; i < 3; i++) await until(`node ${i} back on Redis with 3 nodes`, async () => (await api(i, 'GET', '/healthz')).body?.result?.cluster?.nodes === 3 && (await api(i, 'GET', '/healthz')).body.result.cluster.redis === 'up');
    // Fan-out resumes: node 0's message reaches u3 on node 2.
    const got = await until('a message from node 0 to reach node 2', async () => {
      const r = await restSend(0, 'g', 'after redis returned');
      const id = r.body.result._id;
      await sleep(200);
      return messagesOf(c3!).some((m) => m._id === id);
    }, 20_000, 100);
    expect(got).toBe(true);
  }, 60_000);

  it('PostgreSQL lost: 503 in the error envelope, no crash; every acknowledged message is there when it returns', async () => {
    const c1 = clients[0]!;
    await pg.down();
    const r = await api(0, 'GET', '/rooms/g');
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ RC: 503 });
    const send = await restSend(1, 'g', 'while postgres is down');
    expect(send.status).toBe(503);
    const ack = c1.decode((await c1.emitAck('chat message', { room: 'g', message: 'socket while down', messageType: 'text' }))[0]);
    expect(ack.RC).toBeGreaterThanOrEqual(500);
    await pg.up();
    await until('node 1 to answer again', async () => (await api(1, 'GET', '/rooms/g')).status === 200);
    for (let i = 0; i < 3; i++) expect(nodes[i]!.proc.exitCode, show()).toBeNull();
    expect((await restSend(2, 'g', 'postgres is back')).status).toBe(200);
  }, 60_000);

  it('a node started while Redis is away serves alone, caches off, and joins once Redis comes', async () => {
    const port = await freePort();
    const lateRedis = `redis://127.0.0.1:${port}`;
    const server = await createServer(defaultConfig({ databaseUrl: pg.url, redisUrl: lateRedis, clusterPrefix: `late${process.pid}`, apiKey: API_KEY, port: 0, logLevel: 'silent' }));
    let late: PrivateRedis | undefined;
    try {
      const base = await server.listen();
      const health = async () => ((await (await fetch(`${base}/healthz`)).json()) as any).result.cluster;
      expect(await health()).toEqual({ redis: 'down', nodes: 1 });
      // It serves, and its room cache keeps nothing (other nodes' changes could not be heard).
      const room = await fetch(`${base}/rooms/g`, { headers: { 'IM-API-KEY': API_KEY } });
      expect(room.status).toBe(200);
      const cache = server.services.chat.roomCache;
      await cache.get('default', 'g');
      expect(cache.peek('default', 'g')).toBeUndefined();
      late = await PrivateRedis.startOn(port);
      await until('the late node to reach Redis', async () => (await health()).redis === 'up', 15_000, 100);
      await cache.get('default', 'g');
      expect(cache.peek('default', 'g')).toBeDefined();
    } finally {
      await server.close();
      await late?.stop();
    }
  }, 60_000);

  it('one node loses Redis alone: the others drop its users after 5 s, and learn them again when it returns', async () => {
    // The fourth node reaches Redis through a link the test cuts; the three others keep their Redis.
    const link = await CuttableLink.open(redis.port);
    const server = await createServer(defaultConfig({ databaseUrl: pg.url, redisUrl: link.url, clusterPrefix: env.IMKIT_CLUSTER_PREFIX, apiKey: API_KEY, port: 0, logLevel: 'silent', shutdownTimeoutMs: 2_000 }));
    let c: TestClient | undefined;
    try {
      const base = await server.listen();
      const health = async (url: string) => ((await (await fetch(`${url}/healthz`)).json()) as any).result.cluster;
      await until('node 0 to count 4 nodes', async () => (await health(nodes[0]!.base)).nodes === 4);
      c = await TestClient.connect(base, 'bundle');
      expect(await c.login(tokens.backend!, clientKey)).toMatchObject({ RC: 0 });
      const backendOnline = async () => {
        const room = await fetch(`${nodes[0]!.base}/rooms/g`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': tokens.u1! } }).then((r) => r.json() as Promise<any>);
        return room.result.members.find((m: any) => m._id === 'backend').isSocketConnected as boolean;
      };
      await until('node 0 to see backend online', async () => backendOnline());

      await link.cut();
      await until('the fourth node to notice', async () => (await health(base)).redis === 'down');
      // It goes on serving its own socket.
      const local = await fetch(`${base}/messages`, { method: 'POST', headers: { 'IM-API-KEY': API_KEY, 'Content-Type': 'application/json' }, body: JSON.stringify({ room: 'g', sender: 'u1', message: 'the fourth node alone', messageType: 'text' }) }).then((r) => r.json() as Promise<any>);
      expect(local.RC).toBe(0);
      acked.get('g')!.push(local.result._id);
      await waitFor(() => messagesOf(c!).some((m) => m._id === local.result._id));
      // Silent for the peer timeout: node 0 drops it, and with it backend's presence.
      await until('node 0 to drop the fourth node', async () => (await health(nodes[0]!.base)).nodes === 3, 15_000, 200);
      expect(await backendOnline()).toBe(false);

      await link.restore();
      // Back on Redis it says hello with its whole presence: node 0 learns backend's socket again.
      await until('node 0 to see backend online again', async () => backendOnline(), 15_000, 100);
      expect((await health(nodes[0]!.base)).nodes).toBe(4);
    } finally {
      c?.socket.disconnect();
      await server.close();
      await link.cut();
    }
  }, 60_000);

  it('a node killed with -9: its clients resume on another node and miss nothing acknowledged', async () => {
    const [, , c3] = clients;
    nodes[2]!.proc.kill('SIGKILL');
    await waitFor(() => c3!.disconnected, 5_000);
    // As an SDK does: reconnect (here to node 0), log in, then catch up over REST.
    const again = await connect(0, 'u3', 'legacy');
    const stored: string[] = [];
    for (let before = ''; ; ) {
      const page = await fetch(`${nodes[0]!.base}/rooms/g/messages/v3?limit=100${before ? `&beforeMessage=${before}` : ''}`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': tokens.u3! } }).then((r) => r.json() as Promise<any>);
      const ids = (page.result.data as any[]).map((m) => m._id as string).filter((id) => id !== before);
      if (ids.length === 0) break;
      stored.push(...ids);
      before = ids.at(-1)!;
    }
    for (const id of acked.get('g')!) expect(stored).toContain(id);
    // Delivery to the moved client works, from a node that is not its own.
    expect((await restSend(1, 'g', 'to the moved client')).status).toBe(200);
    const id = acked.get('g')!.at(-1);
    await waitFor(() => messagesOf(again).some((m) => m._id === id));
    // The dead node's sockets leave the cluster's count once it stops answering (docs/cluster.md: 5 s).
    const live = clients.filter((c) => !c.disconnected).length;
    await until('the dead node to leave the count', async () => (await api(0, 'GET', '/admin/connection-count')).body.result.count === live, 15_000, 200);
    expect((await api(0, 'GET', '/healthz')).body.result.cluster.nodes).toBe(2);
  }, 60_000);
});
