import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config.js';
import type { DomainEvent } from '../src/events/bus.js';
import { directRoomId } from '../src/chat/rooms-service.js';
import { openStore } from '../src/store/database.js';
import { createUser, DIALECTS, freePort, isolatedStore, startServerProcess, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('batch send (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['boss', 'ua', 'ub', 'uc']) tok[u] = await createUser(t, u);
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'news', members: ['ua', 'ub'] } });
  });
  afterAll(async () => t?.close());

  const progress = (id: string) => t.request({ method: 'GET', url: `/messages/batch/${id}`, headers: admin });
  const done = async (id: string) => {
    for (let i = 0; i < 200; i++) {
      const p = (await progress(id)).body.result;
      if (p.status === 'done') return p;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('batch did not finish');
  };

  it('accepts at once, fills $placeholders$ in message and extra, sends to rooms and to receivers’ direct rooms', async () => {
    const events: DomainEvent[] = [];
    const off = t.server.services.bus.on((e) => events.push(e));
    const res = await t.request({
      method: 'POST',
      url: '/messages/batch',
      headers: admin,
      body: {
        messageType: 'text',
        message: 'Hi $name$, order $orderId$ shipped',
        extra: { order: '$orderId$', list: ['$name$'] },
        sender: 'boss',
        paras: [
          { receiver: 'ua', $name$: 'Ann', $orderId$: 'ORD-1' },
          { receiver: 'uc', $name$: 'Cy', $orderId$: 7 },
          { room: 'news', receiver: 'ub', $name$: 'all' },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.result).toEqual({ batchID: expect.stringMatching(/^batch-\d{8}-[0-9a-f]{12}$/), count: 3 });
    const p = await done(res.body.result.batchID);
    off();
    expect(p).toMatchObject({ status: 'done', count: 3, sent: 3, failed: 0, pending: 0, errors: [] });
    const dm = await t.request({ method: 'GET', url: `/rooms/${directRoomId('boss', 'ua')}/messages/v3`, headers: userHeaders(t.clientKey, tok.ua!) });
    expect(dm.body.result.data[0]).toMatchObject({ message: 'Hi Ann, order ORD-1 shipped', extra: { order: 'ORD-1', list: ['Ann'] }, sender: { _id: 'boss' } });
    const dmC = await t.request({ method: 'GET', url: `/rooms/${directRoomId('boss', 'uc')}`, headers: userHeaders(t.clientKey, tok.uc!) });
    expect(dmC.body.result).toMatchObject({ roomType: 'direct', unread: 1, lastMessage: { message: 'Hi Cy, order 7 shipped' } });
    const news = await t.request({ method: 'GET', url: '/rooms/news/messages/v3', headers: userHeaders(t.clientKey, tok.ub!) });
    expect(news.body.result.data.map((m: any) => m.message)).toEqual(['Hi all, order $orderId$ shipped']); // room wins over receiver
    expect(events.filter((e) => e.type === 'message.created')).toHaveLength(3);
  });

  it('refuses bad batches whole, before queueing anything', async () => {
    const cases: Array<[unknown, number, string]> = [
      [{ messageType: 'text', paras: [{ room: 'news' }] }, 400, 'message'],
      [{ message: 'x', paras: [{ room: 'news' }] }, 400, 'messageType'],
      [{ message: 'x', messageType: 'text', paras: [] }, 400, 'paras'],
      [{ message: 'x', messageType: 'text', paras: [{}] }, 400, 'paras.0'],
      [{ message: 'x', messageType: 'text', paras: [{ receiver: 'ua' }] }, 400, 'sender'],
      [{ message: 'x', messageType: 'text', sender: 'boss', paras: [{ receiver: 'ghost' }] }, 404, 'ghost'],
      [{ message: 'x', messageType: 'text', paras: [{ room: 'nowhere' }] }, 404, 'nowhere'],
      [{ message: 'x'.repeat(70_000), messageType: 'text', paras: [{ room: 'news' }] }, 413, 'at most'],
    ];
    for (const [body, status, text] of cases) {
      const res = await t.request({ method: 'POST', url: '/messages/batch', headers: admin, body });
      expect([status, res.status, res.body.message]).toEqual([status, status, expect.stringContaining(text)]);
    }
    const byUser = await t.request({ method: 'POST', url: '/messages/batch', headers: userHeaders(t.clientKey, tok.ua!), body: { message: 'x', messageType: 'text', paras: [{ room: 'news' }] } });
    expect(byUser.status).toBe(403);
    expect((await progress('batch-nope')).body.error).toBe('BATCH_NOT_FOUND');
  });
});

/**
 * 10,000 messages, the server killed with SIGKILL halfway, restarted: every message arrives exactly once.
 * Real server processes (the built bin) on a real store.
 */
describe.each(DIALECTS)('batch survives kill -9 (%s)', (dialect) => {
  const store = isolatedStore(dialect);
  const env = { IMKIT_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl, IMKIT_DATABASE_SCHEMA: store.databaseSchema, LOG_LEVEL: 'warn', IMKIT_APP_ID: 'app', IMKIT_API_KEY: 'batch-test-api-key-0123456789', IMKIT_RATE_LIMIT: '100000' };
  let proc: ChildProcess | undefined;
  afterAll(async () => {
    proc?.kill('SIGKILL');
    await store.drop();
  });

  it('sends each of 10,000 messages exactly once across a crash', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const start = () => startServerProcess(port, env);
    const api = async (method: string, url: string, body?: unknown) => {
      const res = await fetch(`${base}${url}`, { method, headers: { 'IM-API-KEY': env.IMKIT_API_KEY, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return (await res.json()) as any;
    };
    proc = await start();
    await api('POST', '/admin/clients/list', { data: Array.from({ length: 5 }, (_, i) => ({ _id: `m${i}` })) });
    for (let r = 0; r < 20; r++) await api('POST', '/rooms', { _id: `r${r}`, members: ['m0', 'm1', 'm2', 'm3', 'm4'] });
    const N = 10_000;
    const paras = Array.from({ length: N }, (_, i) => ({ room: `r${i % 20}`, $n$: i }));
    const { result } = await api('POST', '/messages/batch', { messageType: 'text', message: 'item $n$', sender: 'm0', paras });
    expect(result.count).toBe(N);

    let sentAtKill = 0;
    for (let i = 0; i < 2000; i++) {
      sentAtKill = (await api('GET', `/messages/batch/${result.batchID}`)).result.sent;
      if (sentAtKill >= N / 10) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    proc.kill('SIGKILL');
    await new Promise((r) => proc!.once('exit', r));
    expect(sentAtKill).toBeGreaterThan(0);
    expect(sentAtKill).toBeLessThan(N);
    const restartedAt = Date.now();

    proc = await start();
    let final: any;
    for (let i = 0; i < 2400; i++) {
      final = (await api('GET', `/messages/batch/${result.batchID}`)).result;
      if (final.status === 'done') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(final).toMatchObject({ status: 'done', count: N, sent: N, failed: 0, pending: 0 });
    proc.kill('SIGTERM');
    await new Promise((r) => proc!.once('exit', r));
    proc = undefined;

    const s = openStore(defaultConfig({ ...store }));
    try {
      const rows = await s.db.selectFrom('messages').select(['message', 'created_at']).where('app_id', '=', 'app').execute();
      expect(rows).toHaveLength(N);
      expect(new Set(rows.map((r) => r.message)).size).toBe(N);
      expect(rows.some((r) => r.created_at >= restartedAt)).toBe(true); // the restarted server finished the job
      const badges = await s.db.selectFrom('room_members').select(['user_id', 'badge']).where('app_id', '=', 'app').where('room_id', '=', 'r0').execute();
      expect(badges.find((b) => b.user_id === 'm1')!.badge).toBe(N / 20);
    } finally {
      await s.close();
    }
  });
});

