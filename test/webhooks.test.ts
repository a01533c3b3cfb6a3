import type { ChildProcess } from 'node:child_process';
import dns from 'node:dns';
import os from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
// @ts-expect-error no types ship with parse-prometheus-text-format
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { defaultConfig, type Config } from '../src/config.js';
import { ManualClock } from '../src/lib/clock.js';
import { createServer, type ImkitServer } from '../src/server.js';
import { Webhook } from 'standardwebhooks';
import { WEBHOOK_EVENT_TYPES } from '../src/webhooks/outbox.js';
import { newWebhookSecret, signatureHeader } from '../src/webhooks/signing.js';
import { createUser, DIALECTS, freePort, isolatedStore, startServerProcess, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';
import { Receiver, verifySignature } from './webhook-receiver.js';

const A = (t: TestServer) => ({ 'IM-API-KEY': t.apiKey });

async function addEndpoint(t: TestServer, url: string, events: string[], extra: Record<string, unknown> = {}) {
  const res = await t.request({ method: 'POST', url: '/admin/webhooks', headers: A(t), body: { url, events, ...extra } });
  expect(res.status, res.raw).toBe(200);
  return res.body.result as { id: string; secret: string; url: string; events: string[] };
}

async function appSecret(t: TestServer): Promise<string> {
  return (await t.server.services.webhooks.appSecret(t.appId)).secret as string;
}

describe.each(DIALECTS)('webhooks (%s)', (dialect) => {
  let t: TestServer;
  let rx: Receiver;

  beforeEach(async () => {
    rx = await new Receiver().start();
    t = await startTestServer(dialect, { webhookAllowPrivateNetworks: true });
  });
  afterEach(async () => {
    await t.close();
    await rx.close();
  });

  it('every event type reaches an endpoint subscribed to "*", signed, with the documented payload', async () => {
    const ep = await addEndpoint(t, rx.url('/all'), ['*']);
    expect(ep.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(ep.id).toMatch(/^we_[0-9a-f]{24}$/);
    const listed = await t.request({ method: 'GET', url: '/admin/webhooks', headers: A(t) });
    expect(listed.body.result.data).toEqual([expect.objectContaining({ id: ep.id, url: rx.url('/all'), events: ['*'] })]);
    expect(listed.raw).not.toContain(ep.secret);

    const u1 = await createUser(t, 'u1');
    await createUser(t, 'u2');
    await createUser(t, 'u3');
    const h1 = userHeaders(t.clientKey, u1);
    expect((await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r1', name: 'Room', members: ['u1', 'u2'], owner: 'u1' } })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/rooms/r1/members', headers: A(t), body: { invitees: ['u3'] } })).status).toBe(200);
    const sent = await t.request({ method: 'POST', url: '/rooms/r1/message', headers: h1, body: { message: 'hello', messageType: 'text' } });
    expect(sent.status).toBe(200);
    const mid = sent.body.result._id as string;
    expect((await t.request({ method: 'POST', url: '/rooms/r1/message', headers: h1, body: { _id: mid, message: 'hello again' } })).status).toBe(200);
    const m2 = (await t.request({ method: 'POST', url: '/rooms/r1/message', headers: h1, body: { message: 'to recall' } })).body.result._id;
    expect((await t.request({ method: 'POST', url: '/rooms/r1/message', headers: h1, body: { _id: m2, messageType: 'recall' } })).status).toBe(200);
    expect((await t.request({ method: 'DELETE', url: `/rooms/r1/messages/${mid}`, headers: A(t) })).status).toBe(200);
    expect((await t.request({ method: 'PUT', url: '/rooms/r1', headers: A(t), body: { name: 'Renamed' } })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/blockStatus/room/r1/u2', headers: A(t) })).status).toBe(200);
    expect((await t.request({ method: 'DELETE', url: '/blockStatus/room/r1/u2', headers: A(t) })).status).toBe(200);
    // Payloads show the state when the event is fanned out (docs/webhooks.md): before the room, its member and u3
    // are deleted below, the events that render them must have gone out (a busy machine may fan out late).
    await rx.waitFor((r) => ['room.updated', 'members.added', 'room.created', 'user.created'].every((type) => r.some((x) => x.json?.type === type)));
    expect((await t.request({ method: 'POST', url: '/admin/clients/u1/mute/r1', headers: A(t) })).status).toBe(200);
    expect((await t.request({ method: 'DELETE', url: '/admin/clients/u1/mute/r1', headers: A(t) })).status).toBe(200);
    expect((await t.request({ method: 'DELETE', url: '/rooms/r1/members/u3', headers: A(t), body: { systemMessage: false } })).status).toBe(200);
    expect((await t.request({ method: 'DELETE', url: '/rooms/r1', headers: A(t) })).status).toBe(200);
    expect((await t.request({ method: 'DELETE', url: '/admin/clients/u3', headers: A(t) })).status).toBe(200);
    // The API key, used so far from 127.0.0.1, from an address new to it: a key alert (docs/security.md).
    expect((await t.server.http.inject({ method: 'GET', url: '/admin/clients', remoteAddress: '198.51.100.1', headers: A(t) })).statusCode).toBe(200);

    await rx.waitFor((r) => new Set(r.map((x) => x.json?.type)).size === WEBHOOK_EVENT_TYPES.length);
    const byType = new Map<string, any>();
    for (const r of rx.on('/all')) {
      expect(verifySignature(ep.secret, r), `signature of ${r.json.type}`).toBe(true);
      expect(verifySignature('whsec_' + Buffer.alloc(32).toString('base64'), r)).toBe(false);
      expect(r.headers['webhook-id']).toBe(r.json.id);
      expect(r.headers['content-type']).toBe('application/json');
      expect(Number(r.headers['webhook-timestamp'])).toBe(Math.floor(t.clock.now() / 1000));
      expect(r.json).toMatchObject({ id: expect.stringMatching(/^evt_[0-9a-f]{24}$/), appID: t.appId, createdAt: expect.any(Number) });
      if (!byType.has(r.json.type)) byType.set(r.json.type, r.json.data);
    }
    expect([...byType.keys()].sort()).toEqual([...WEBHOOK_EVENT_TYPES].sort());
    expect(byType.get('user.created')).toMatchObject({ userID: 'u1', user: { _id: 'u1', nickname: 'u1' } });
    expect(byType.get('room.created')).toMatchObject({ roomID: 'r1', members: ['u1', 'u2'], room: { _id: 'r1', name: 'Room' } });
    expect(byType.get('members.added')).toMatchObject({ roomID: 'r1', joined: false, members: [{ _id: 'u3', nickname: 'u3' }] });
    expect(byType.get('message.created')).toMatchObject({ roomID: 'r1', actorID: 'u1', message: { _id: mid, room: 'r1', messageType: 'text', sender: { _id: 'u1' } } });
    expect(byType.get('message.edited')).toMatchObject({ roomID: 'r1', actorID: 'u1', message: { _id: mid } });
    expect(byType.get('message.recalled')).toMatchObject({ roomID: 'r1', message: { _id: m2, messageType: 'recall', message: '' } });
    expect(byType.get('message.deleted')).toEqual({ roomID: 'r1', actorID: null, messageIDs: [mid] });
    expect(byType.get('room.updated')).toMatchObject({ roomID: 'r1', changes: ['name'], room: { name: 'Renamed' } });
    expect(byType.get('user.banned')).toMatchObject({ roomID: 'r1', userID: 'u2', unblockAt: null });
    expect(byType.get('user.unbanned')).toMatchObject({ roomID: 'r1', userID: 'u2' });
    expect(byType.get('user.muted')).toMatchObject({ roomID: 'r1', userID: 'u1' });
    expect(byType.get('user.unmuted')).toMatchObject({ roomID: 'r1', userID: 'u1' });
    expect(byType.get('members.removed')).toMatchObject({ roomID: 'r1', members: [{ _id: 'u3' }] });
    expect(byType.get('room.deleted')).toMatchObject({ roomID: 'r1', members: expect.arrayContaining(['u1', 'u2']) });
    expect(byType.get('user.deleted')).toEqual({ userID: 'u3' });
    expect(byType.get('key.alert')).toMatchObject({ alert: { kind: 'key.new_address', ip: '198.51.100.1', acknowledged: false } });
    // At-least-once, but here every event arrived once: one request per event id.
    const ids = rx.on('/all').map((r) => r.json.id);
    expect(new Set(ids).size).toBe(ids.length);
    // The log shows each delivery as delivered.
    // (The receiver may have the request before the dispatcher records the answer.)
    const log = async () => (await t.request({ method: 'GET', url: `/admin/webhooks/deliveries?endpoint=${ep.id}&limit=500`, headers: A(t) })).body.result.data;
    await expect.poll(async () => (await log()).filter((d: any) => d.status === 'delivered').length).toBe(ids.length);
    expect((await log()).every((d: any) => d.attempts === 1 && d.lastStatusCode === 200 && d.nextAttemptAt === null && d.lastError === null)).toBe(true);
  });

  it('an endpoint receives only the types it subscribes to; events nobody wants are not written', async () => {
    await addEndpoint(t, rx.url('/msgs'), ['message.created']);
    // With the dispatcher stopped, the outbox keeps what the changes wrote.
    await t.server.dispatcher.stop();
    const u1 = await createUser(t, 'u1');
    await createUser(t, 'u2');
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r1', members: ['u1', 'u2'] } });
    await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, u1), body: { message: 'one' } });
    await t.request({ method: 'PUT', url: '/rooms/r1', headers: A(t), body: { name: 'x' } });
    const outbox = await t.server.store.db.selectFrom('webhook_events').select('type').execute();
    expect(outbox.map((r) => r.type)).toEqual(['message.created']);
    t.server.dispatcher.start();
    await rx.waitFor((r) => r.length === 1);
    expect(rx.requests[0]!.json).toMatchObject({ type: 'message.created', data: { message: { message: 'one' } } });
    // Fanned out, the event leaves the outbox.
    await expect.poll(async () => (await t.server.store.db.selectFrom('webhook_events').select('id').execute()).length).toBe(0);
  });

  it('message.created shows the message as it was created, however late it is fanned out; the log is kept 30 days', async () => {
    const ep = await addEndpoint(t, rx.url('/snap'), ['message.created', 'message.edited']);
    const u1 = await createUser(t, 'u1');
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r1', members: ['u1'] } });
    await t.server.dispatcher.stop();
    const sent = await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, u1), body: { message: 'first words' } });
    await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, u1), body: { _id: sent.body.result._id, message: 'second thoughts' } });
    t.server.dispatcher.start();
    await rx.waitFor((r) => r.length === 2);
    const byType = Object.fromEntries(rx.requests.map((r) => [r.json.type, r.json.data.message]));
    expect(byType['message.created']).toMatchObject({ _id: sent.body.result._id, message: 'first words', sender: { _id: 'u1' } });
    expect(byType['message.edited']).toMatchObject({ _id: sent.body.result._id, message: 'second thoughts', editedAtMS: expect.any(Number) });
    const log = async () => (await t.request({ method: 'GET', url: `/admin/webhooks/deliveries?endpoint=${ep.id}`, headers: A(t) })).body.result.data;
    await expect.poll(async () => (await log()).filter((d: any) => d.status === 'delivered').length).toBe(2);
    // 31 days later the hourly clean-up has removed them.
    t.clock.advance(31 * 86_400_000);
    await t.server.dispatcher.stop();
    t.server.dispatcher.start();
    await expect.poll(log).toEqual([]);
  });

  it('room webhooks get IMKIT payloads (JOIN_ROOM, ADD_MEMBERS, DELETE_MEMBERS, MESSAGE) signed with the application secret', async () => {
    const u1 = await createUser(t, 'u1');
    const u2 = await createUser(t, 'u2');
    await createUser(t, 'u3');
    const created = await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'g', roomType: 'group', members: ['u1'], webhook: rx.url('/room'), botState: 'CONTACT' } });
    expect(created.status, created.raw).toBe(200);
    expect((await t.request({ method: 'POST', url: '/rooms/g/join', headers: userHeaders(t.clientKey, u2) })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/rooms/g/members', headers: A(t), body: { invitees: ['u3'] } })).status).toBe(200);
    const sent = await t.request({ method: 'POST', url: '/rooms/g/message', headers: userHeaders(t.clientKey, u1), body: { message: 'Bonjour' } });
    expect((await t.request({ method: 'DELETE', url: '/rooms/g/members/u3', headers: A(t), body: { systemMessage: false } })).status).toBe(200);
    await rx.waitFor((r) => r.length === 4);
    const secret = await appSecret(t);
    const events = rx.requests.map((r) => r.json.event);
    expect(events).toEqual(['JOIN_ROOM', 'ADD_MEMBERS', 'MESSAGE', 'DELETE_MEMBERS']);
    for (const r of rx.requests) {
      expect(verifySignature(secret, r)).toBe(true);
      expect(r.json).toMatchObject({ appID: t.appId, roomID: 'g', botState: 'CONTACT' });
    }
    const [join, add, msg, del] = rx.requests.map((r) => r.json);
    expect(join).toMatchObject({ clientID: 'u2', data: { room: 'g', sender: { _id: 'u2', id: 'u2' }, members: [{ _id: 'u2', nickname: 'u2', isRobot: false }] } });
    expect(add).toMatchObject({ clientID: null, data: { room: 'g', members: [{ _id: 'u3' }] } });
    expect(msg).toMatchObject({ clientID: 'u1', data: { _id: sent.body.result._id, message: 'Bonjour', room: 'g', messageType: 'text', sender: { _id: 'u1' }, appID: t.appId } });
    expect(del).toMatchObject({ data: { room: 'g', members: [{ _id: 'u3' }] } });
  });

  it("the bot reply posts a message, sets botState and fans out like any message; the bot's message is not sent back", async () => {
    const u1 = await createUser(t, 'u1');
    await createUser(t, 'robot001', t.apiKey, { isRobot: true });
    rx.answer = (r) =>
      r.json?.event === 'MESSAGE' && r.json.data.sender?._id === 'u1'
        ? { body: JSON.stringify({ senderID: 'robot001', toBotState: 'active', data: { message: 'Hi, I am a bot', messageType: 'text' } }) }
        : { body: JSON.stringify({ toBotState: null, data: null }) };
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'b', roomType: 'group', members: ['u1', 'robot001'], webhook: rx.url('/bot') } });
    const client = await TestClient.connect(await t.server.listen(), 'bundle');
    try {
      await client.login(u1, t.clientKey);
      await t.request({ method: 'POST', url: '/rooms/b/message', headers: userHeaders(t.clientKey, u1), body: { message: 'hello bot' } });
      const botMsg: any = await client.next('chat message', (m: any) => m.sender?._id === 'robot001', 10_000);
      expect(botMsg).toMatchObject({ message: 'Hi, I am a bot', messageType: 'text', room: 'b' });
    } finally {
      client.close();
    }
    const room = await t.request({ method: 'GET', url: '/rooms/b', headers: A(t) });
    expect(room.body.result.botState).toBe('active');
    const history = await t.request({ method: 'GET', url: '/rooms/b/messages/v3', headers: A(t) });
    expect(history.body.result.data.map((m: any) => m.message)).toEqual(['Hi, I am a bot', 'hello bot']);
    // Give the dispatcher time to (wrongly) send the bot's own message back: only the user's message went out.
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.requests.map((r) => r.json.data.message)).toEqual(['hello bot']);
  });

  it('a bot reply nested deeper than IMKIT_MAX_JSON_DEPTH posts nothing, and the delivery log says why', async () => {
    const u1 = await createUser(t, 'u1');
    let deep: unknown = { message: 'too deep' };
    for (let i = 0; i < 40; i++) deep = { deep };
    rx.answer = () => ({ body: JSON.stringify({ senderID: 'u1', data: { message: 'hi', messageType: 'text', deep } }) });
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'd', members: ['u1'], webhook: rx.url('/deep') } });
    await t.request({ method: 'POST', url: '/rooms/d/message', headers: userHeaders(t.clientKey, u1), body: { message: 'hello' } });
    const log = async () => (await t.request({ method: 'GET', url: '/admin/webhooks/deliveries?room=d', headers: A(t) })).body.result.data;
    await expect.poll(async () => (await log())[0]?.status).toBe('delivered');
    expect((await log())[0].lastError).toBe(`bot reply refused: nested deeper than ${t.config.maxJsonDepth} levels`);
    const history = await t.request({ method: 'GET', url: '/rooms/d/messages/v3', headers: A(t) });
    expect(history.body.result.data.map((m: any) => m.message)).toEqual(['hello']);
  });

  it('rotating a secret signs with both until the old one expires; deleting an endpoint stops its deliveries', async () => {
    const ep = await addEndpoint(t, rx.url('/rot'), ['user.created']);
    const rotated = await t.request({ method: 'POST', url: `/admin/webhooks/${ep.id}/rotate-secret`, headers: A(t), body: { expiresIn: '1h' } });
    expect(rotated.status).toBe(200);
    const fresh = rotated.body.result.secret as string;
    expect(fresh).not.toBe(ep.secret);
    expect(rotated.body.result.previousSecretExpiresAt).toBe(new Date(t.clock.now() + 3_600_000).toISOString());
    await createUser(t, 'a');
    await rx.waitFor((r) => r.length === 1);
    expect(String(rx.requests[0]!.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verifySignature(ep.secret, rx.requests[0]!)).toBe(true);
    expect(verifySignature(fresh, rx.requests[0]!)).toBe(true);
    t.clock.advance(3_600_001);
    await createUser(t, 'b');
    await rx.waitFor((r) => r.length === 2);
    expect(verifySignature(fresh, rx.requests[1]!)).toBe(true);
    expect(verifySignature(ep.secret, rx.requests[1]!)).toBe(false);

    expect((await t.request({ method: 'DELETE', url: `/admin/webhooks/${ep.id}`, headers: A(t) })).body.result).toEqual({ id: ep.id, deleted: true });
    expect((await t.request({ method: 'DELETE', url: `/admin/webhooks/${ep.id}`, headers: A(t) })).status).toBe(404);
    await createUser(t, 'c');
    await new Promise((r) => setTimeout(r, 200));
    expect(rx.requests).toHaveLength(2);
  });

  it('bad endpoint definitions are refused with a clear error and nothing stored', async () => {
    const bad = [
      [{ url: rx.url(), events: ['message.sent'] }, 400, 'INVALID_REQUEST'],
      [{ url: 'ftp://example.com/x', events: ['*'] }, 400, 'WEBHOOK_URL_NOT_ALLOWED'],
      [{ url: rx.url(), events: [] }, 400, 'INVALID_REQUEST'],
      [{ url: rx.url(), events: ['*'], key: 'https://x.example' }, 400, 'INVALID_REQUEST'],
      [{ url: rx.url(), events: ['*'], extra: 1 }, 400, 'INVALID_REQUEST'],
      [{ url: rx.url(), events: '*' }, 400, 'INVALID_REQUEST'],
    ] as const;
    for (const [body, status, code] of bad) {
      const res = await t.request({ method: 'POST', url: '/admin/webhooks', headers: A(t), body });
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.error, JSON.stringify(body)).toBe(code);
    }
    await addEndpoint(t, rx.url(), ['*'], { key: 'orders' });
    const dup = await t.request({ method: 'POST', url: '/admin/webhooks', headers: A(t), body: { url: rx.url(), events: ['*'], key: 'orders' } });
    expect(dup.status).toBe(409);
    expect((await t.request({ method: 'GET', url: '/admin/webhooks', headers: A(t) })).body.result.data).toHaveLength(1);
    const badStatus = await t.request({ method: 'GET', url: '/admin/webhooks/deliveries?status=constructor', headers: A(t) });
    expect(badStatus.status).toBe(400);
  });

  it('a room webhook naming an endpoint key goes to that endpoint; an unknown key is logged as refused', async () => {
    const ep = await addEndpoint(t, rx.url('/keyed'), ['user.deleted'], { key: 'support_bot' });
    const u1 = await createUser(t, 'u1');
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'k1', members: ['u1'], webhook: 'support_bot' } });
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'k2', members: ['u1'], webhook: 'nobody' } });
    await t.request({ method: 'POST', url: '/rooms/k1/message', headers: userHeaders(t.clientKey, u1), body: { message: 'via key' } });
    await t.request({ method: 'POST', url: '/rooms/k2/message', headers: userHeaders(t.clientKey, u1), body: { message: 'lost' } });
    await rx.waitFor((r) => r.length === 1);
    expect(rx.requests[0]!.json).toMatchObject({ event: 'MESSAGE', roomID: 'k1', data: { message: 'via key' } });
    expect(verifySignature(ep.secret, rx.requests[0]!)).toBe(true);
    const refused = async () => (await t.request({ method: 'GET', url: '/admin/webhooks/deliveries?room=k2', headers: A(t) })).body.result.data;
    await expect.poll(refused).toHaveLength(1);
    expect(await refused()).toEqual([expect.objectContaining({ status: 'refused', kind: 'room', lastError: 'No webhook endpoint has the key "nobody"' })]);
  });

  it('a slow endpoint does not hold up another one', async () => {
    const slow = await new Receiver().start();
    slow.answer = () => ({ hang: true });
    try {
      await addEndpoint(t, slow.url('/slow'), ['user.created']);
      await addEndpoint(t, rx.url('/fast'), ['user.created']);
      for (let i = 0; i < 12; i++) await createUser(t, `s${i}`);
      await rx.waitFor((r) => r.length === 12);
      // The slow one has its concurrency's worth in flight, not more.
      expect(slow.requests.length).toBe(t.config.webhookConcurrency);
    } finally {
      await t.close().catch(() => undefined);
      await slow.close();
      t = await startTestServer(dialect);
    }
  });

  it('a redirect is not followed, a receiver that does not answer in time is given up on, a huge answer is cut', async () => {
    await t.close();
    t = await startTestServer(dialect, { webhookAllowPrivateNetworks: true, webhookTimeoutMs: 300 });
    rx.answer = (r) =>
      r.path === '/moved' ? { status: 302, body: '' } : r.path === '/slow' ? { hang: true } : r.path === '/huge' ? { body: 'x'.repeat(5_000_000) } : {};
    // A 302's Location would point here: it must never be asked.
    const moved = await addEndpoint(t, rx.url('/moved'), ['user.created']);
    const slow = await addEndpoint(t, rx.url('/slow'), ['user.created']);
    const huge = await addEndpoint(t, rx.url('/huge'), ['user.created']);
    await createUser(t, 'x');
    const one = async (id: string) => (await t.request({ method: 'GET', url: `/admin/webhooks/deliveries?endpoint=${id}`, headers: A(t) })).body.result.data[0];
    await expect.poll(() => one(moved.id)).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: 302, lastError: 'answered 302' });
    await expect.poll(() => one(slow.id)).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: null, lastError: 'no answer within 300 ms' });
    await expect.poll(() => one(huge.id)).toMatchObject({ status: 'delivered', attempts: 1, lastStatusCode: 200 });
    expect(rx.requests.map((r) => r.path).sort()).toEqual(['/huge', '/moved', '/slow']);
  });

  it('/metrics counts webhook attempts and shows the backlog', async () => {
    await t.close();
    t = await startTestServer(dialect, { webhookAllowPrivateNetworks: true, metricsToken: 'metrics-token-0123456789' });
    rx.answer = (_r, n) => (n === 1 ? { status: 500 } : {});
    await addEndpoint(t, rx.url('/m'), ['user.created']);
    await createUser(t, 'x');
    await rx.waitFor((r) => r.length === 1);
    const read = async () => {
      const res = await t.request({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer metrics-token-0123456789' } });
      const families = parsePrometheusTextFormat(res.raw) as Array<{ name: string; metrics: Array<{ labels?: Record<string, string>; value: string }> }>;
      const value = (name: string, label: Record<string, string>) =>
        Number(families.find((f) => f.name === name)?.metrics.find((m) => Object.entries(label).every(([k, v]) => m.labels?.[k] === v))?.value ?? 0);
      return { retry: value('imkit_webhook_attempts_total', { outcome: 'retry' }), delivered: value('imkit_webhook_attempts_total', { outcome: 'delivered' }), pending: value('imkit_webhook_backlog', { state: 'pending' }) };
    };
    await expect.poll(read).toMatchObject({ retry: 1, delivered: 0, pending: 1 });
    t.clock.advance(5_000);
    t.server.dispatcher.wake();
    await rx.waitFor((r) => r.length === 2);
    await expect.poll(read).toMatchObject({ retry: 1, delivered: 1, pending: 0 });
  });
});

/**
 * Retries across a restart: a receiver that fails its first attempts gets each event once it answers 2xx, exactly
 * once by event id, the server stopped and started on the same store in between.
 */
describe.each(DIALECTS)('webhook retries (%s)', (dialect) => {
  const store = isolatedStore(dialect);
  const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
  let server: ImkitServer | undefined;
  let rx: Receiver;
  const config = (): Config =>
    defaultConfig({ ...store, logLevel: 'silent', port: 0, host: '127.0.0.1', webhookAllowPrivateNetworks: true, webhookRetrySchedule: [1_000, 10_000, 60_000], appId: 'app', apiKey: 'retry-test-api-key-0123456789' });
  const api = (method: string, url: string, body?: unknown) =>
    server!.http.inject({ method: method as 'GET', url, headers: { 'IM-API-KEY': 'retry-test-api-key-0123456789', ...(body ? { 'content-type': 'application/json' } : {}) }, payload: body ? JSON.stringify(body) : undefined }).then((r) => r.json() as any);

  beforeAll(async () => {
    rx = await new Receiver().start();
  });
  afterAll(async () => {
    await server?.close();
    await rx.close();
    await store.drop();
  });

  it('a receiver down for the first attempts gets every event exactly once, across a restart; after the last attempt a delivery is failed and retryable', async () => {
    const down = new Set<string>(['/flaky']);
    rx.answer = (r) => (down.has(r.path) ? { status: 503 } : {});
    server = await createServer(config(), { clock });
    const ep = (await api('POST', '/admin/webhooks', { url: rx.url('/flaky'), events: ['user.created'] })).result;
    const dead = (await api('POST', '/admin/webhooks', { url: rx.url('/dead'), events: ['user.created'] })).result;
    down.add('/dead');
    // Before the test's clock moves, the outcomes of the attempts sent must be recorded (the next attempt's time is
    // the outcome's time plus the delay): every delivery waiting, none being sent.
    const recorded = async (attempts: number[]) =>
      expect.poll(async () => (await api('GET', '/admin/webhooks/deliveries?limit=100')).result.data.map((d: any) => `${d.status}:${d.attempts}`).sort()).toEqual(attempts.map((a) => `pending:${a}`).sort());
    for (const id of ['a', 'b', 'c']) await api('POST', '/admin/clients', { _id: id });
    await rx.waitFor((r) => r.length === 6);
    await recorded([1, 1, 1, 1, 1, 1]);
    clock.advance(1_000);
    server.dispatcher.wake();
    await rx.waitFor((r) => r.length === 12);
    await recorded([2, 2, 2, 2, 2, 2]);
    await server.close();
    server = undefined;

    // Down for the first two attempts; a restart in between; the third succeeds.
    down.delete('/flaky');
    server = await createServer(config(), { clock });
    clock.advance(10_000);
    server.dispatcher.wake();
    await rx.waitFor((r) => r.length === 18);
    await expect.poll(async () => (await api('GET', '/admin/webhooks/deliveries?status=pending')).result.data.map((d: any) => d.attempts)).toEqual([3, 3, 3]);
    const flaky = rx.on('/flaky');
    const ok = flaky.slice(-3);
    expect(ok.map((r) => r.json.data.userID).sort()).toEqual(['a', 'b', 'c']);
    // Every attempt carried the same id and body: a receiver can drop duplicates by webhook-id.
    for (const id of ['a', 'b', 'c']) {
      const tries = flaky.filter((r) => r.json.data.userID === id);
      expect(tries).toHaveLength(3);
      expect(new Set(tries.map((r) => r.headers['webhook-id'])).size).toBe(1);
      expect(new Set(tries.map((r) => r.body)).size).toBe(1);
      for (const r of tries) expect(verifySignature(ep.secret, r)).toBe(true);
    }
    // The flaky endpoint's deliveries are done: nothing more arrives for it.
    clock.advance(120_000);
    server.dispatcher.wake();
    await rx.waitFor((r) => r.length === 21);
    await new Promise((r) => setTimeout(r, 200));
    expect(rx.on('/flaky')).toHaveLength(9);
    // The dead endpoint used its 4 attempts (1 + 3 retries) and is failed, visible in the log.
    expect(rx.on('/dead')).toHaveLength(12);
    const failedList = async () => (await api('GET', `/admin/webhooks/deliveries?endpoint=${dead.id}&status=failed`)).result.data;
    await expect.poll(async () => (await failedList()).length).toBe(3);
    const failed = await failedList();
    expect(failed[0]).toMatchObject({ attempts: 4, lastStatusCode: 503, lastError: 'answered 503', nextAttemptAt: null });
    // Retried by hand once it is back: delivered.
    down.delete('/dead');
    const retried = await api('POST', `/admin/webhooks/deliveries/${failed[0].id}/retry`);
    // Made due now: the dispatcher, woken, may have claimed it already.
    expect(['pending', 'sending']).toContain(retried.result.status);
    await rx.waitFor((r) => r.length === 22);
    await expect.poll(async () => (await api('GET', `/admin/webhooks/deliveries?endpoint=${dead.id}&status=delivered`)).result.data.length).toBe(1);
    const again = await api('POST', `/admin/webhooks/deliveries/${failed[0].id}/retry`);
    expect(again.error).toBe('DELIVERY_NOT_RETRYABLE');
  });
});

describe.each(DIALECTS)('webhook targets are vetted when configured and again when delivered (%s)', (dialect) => {
  it('refuses loopback, private, link-local and metadata targets by default, naming the field', async () => {
    const t = await startTestServer(dialect);
    try {
      // This machine's own name resolves to loopback through /etc/hosts, as "a name resolving to loopback" must.
      const own = os.hostname();
      const resolved = await dns.promises.lookup(own, { all: true });
      expect(resolved.every((a) => a.address.startsWith('127.') || a.address === '::1'), `${own} must resolve to loopback on this machine`).toBe(true);
      const targets = ['http://127.0.0.1:8080/hook', 'http://localhost/hook', 'http://[::1]/hook', 'http://169.254.169.254/latest/meta-data/', 'http://10.1.2.3/hook', 'http://2130706433/', 'http://[::ffff:127.0.0.1]/', `http://${own}/hook`];
      for (const url of targets) {
        const res = await t.request({ method: 'POST', url: '/admin/webhooks', headers: A(t), body: { url, events: ['*'] } });
        expect(res.status, url).toBe(400);
        expect(res.body, url).toMatchObject({ error: 'WEBHOOK_URL_NOT_ALLOWED', field: 'url' });
        expect(res.body.message).toMatch(/^Invalid field url: /);
        const room = await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'ssrf', webhook: url } });
        expect(room.status, url).toBe(400);
        expect(room.body.field).toBe('webhook');
      }
      expect((await t.request({ method: 'GET', url: '/admin/webhooks', headers: A(t) })).body.result.data).toEqual([]);
      expect((await t.request({ method: 'GET', url: '/rooms/ssrf', headers: A(t) })).status).toBe(404);
    } finally {
      await t.close();
    }
  });

  it('a target allowed when configured but not when delivered is refused and never sent', async () => {
    const store = isolatedStore(dialect);
    const rx = await new Receiver().start();
    const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
    const cfg = (allowPrivate: boolean) =>
      defaultConfig({ ...store, logLevel: 'silent', port: 0, host: '127.0.0.1', webhookAllowPrivateNetworks: allowPrivate, appId: 'app', apiKey: 'ssrf-test-api-key-0123456789' });
    const call = (s: ImkitServer, method: string, url: string, body?: unknown) =>
      s.http.inject({ method: method as 'GET', url, headers: { 'IM-API-KEY': 'ssrf-test-api-key-0123456789', ...(body ? { 'content-type': 'application/json' } : {}) }, payload: body ? JSON.stringify(body) : undefined }).then((r) => r.json() as any);
    let s = await createServer(cfg(true), { clock });
    try {
      expect((await call(s, 'POST', '/admin/webhooks', { url: rx.url('/private'), events: ['user.created'] })).RC).toBe(0);
      await s.close();
      // The same endpoint, the server now forbidding private networks: the address is checked again at delivery.
      s = await createServer(cfg(false), { clock });
      await call(s, 'POST', '/admin/clients', { _id: 'u' });
      await expect.poll(async () => (await call(s, 'GET', '/admin/webhooks/deliveries')).result.data[0]?.status).toBe('refused');
      const [d] = (await call(s, 'GET', '/admin/webhooks/deliveries')).result.data;
      expect(d).toMatchObject({ attempts: 1, lastStatusCode: null, lastError: expect.stringContaining('loopback address') });
      await new Promise((r) => setTimeout(r, 200));
      expect(rx.requests).toEqual([]);
    } finally {
      await s.close();
      await rx.close();
      await store.drop();
    }
  });
});

/**
 * A delivery pending when the server is killed with SIGKILL is sent after the restart (the built server, a real
 * process on a real store).
 */
describe.each(DIALECTS)('webhooks survive kill -9 (%s)', (dialect) => {
  const store = isolatedStore(dialect);
  const key = 'webhook-kill-test-api-key-0123456789';
  const env = { IMKIT_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl, IMKIT_DATABASE_SCHEMA: store.databaseSchema, LOG_LEVEL: 'warn', IMKIT_APP_ID: 'app', IMKIT_API_KEY: key, IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', IMKIT_WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms,200ms,200ms', IMKIT_WEBHOOK_TIMEOUT: '2s' };
  let proc: ChildProcess | undefined;
  let rx: Receiver | undefined;
  afterAll(async () => {
    proc?.kill('SIGKILL');
    await rx?.close();
    await store.drop();
  });

  it('events recorded before the crash are delivered after the restart, each once', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const start = () => startServerProcess(port, env);
    const api = async (method: string, url: string, body?: unknown) =>
      (await (await fetch(`${base}${url}`, { method, headers: { 'IM-API-KEY': key, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })).json()) as any;
    // The receiver is not listening yet: every attempt before the crash fails with a refused connection.
    const rxPort = await freePort();
    proc = await start();
    const ep = (await api('POST', '/admin/webhooks', { url: `http://127.0.0.1:${rxPort}/k`, events: ['user.created'] })).result;
    const users = Array.from({ length: 20 }, (_, i) => ({ _id: `k${i}` }));
    expect((await api('POST', '/admin/clients/list', { data: users })).result.count).toBe(20);
    await expect.poll(async () => (await api('GET', '/admin/webhooks/deliveries?limit=100')).result.data.filter((d: any) => d.attempts >= 1).length, { timeout: 10_000 }).toBe(20);
    proc.kill('SIGKILL');
    await new Promise((r) => proc!.once('exit', r));

    rx = await new Receiver().start(rxPort);
    proc = await start();
    // On PostgreSQL a delivery that was being sent at the kill is released once its claim is older than the
    // timeout (2 s here) and 5 s.
    await rx.waitFor((r) => r.length >= 20, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    const ids = rx.requests.map((r) => r.json.data.userID).sort();
    expect(ids).toEqual(users.map((u) => u._id).sort());
    expect(rx.requests.every((r) => verifySignature(ep.secret, r))).toBe(true);
    await expect.poll(async () => (await api('GET', '/admin/webhooks/deliveries?limit=100&status=delivered')).result.data.length).toBe(20);
    proc.kill('SIGTERM');
    await new Promise((r) => proc!.once('exit', r));
    proc = undefined;
  });
});


describe('the signature header', () => {
  it('verifies with the standardwebhooks package, with either secret during a rotation, and not with another', () => {
    const [a, b, other] = [newWebhookSecret(), newWebhookSecret(), newWebhookSecret()];
    const ts = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ id: 'evt_1', type: 'message.created', data: { message: 'héllo ✓' } });
    const header = signatureHeader([a, b], 'evt_1', ts, body);
    expect(header.split(' ')).toHaveLength(2);
    const headers = { 'webhook-id': 'evt_1', 'webhook-timestamp': String(ts), 'webhook-signature': header };
    for (const s of [a, b]) expect(new Webhook(s).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(other).verify(body, headers)).toThrow();
    expect(() => new Webhook(a).verify(body + ' ', headers)).toThrow();
    expect(verifySignature(a, { headers, body })).toBe(true);
  });
});
