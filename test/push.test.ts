import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../src/config.js';
import { ManualClock } from '../src/lib/clock.js';
import { createServer, type ImkitServer } from '../src/server.js';
import { createUser, DIALECTS, isolatedStore, startTestServer, tempDir, type TestServer, userHeaders } from './helpers.js';
import { ApnsStub, apnsKey, FcmStub, selfSignedCert, serviceAccount, WebPushStub } from './push-stubs.js';
import { TestClient } from './realtime-helpers.js';
import { Receiver, verifySignature } from './webhook-receiver.js';

const A = (t: { apiKey: string }) => ({ 'IM-API-KEY': t.apiKey });
const APNS = { keyId: 'ABC123DEFG', teamId: 'TEAM123456', bundleId: 'io.imkit.demo' };
const iosToken = (n: number) => n.toString(16).padStart(64, 'a');
const fcmToken = (name: string) => `fcm-token-${name}-0123456789abcdef`;

interface Stubs {
  fcm: FcmStub;
  apns: ApnsStub;
  web: WebPushStub;
  sa: ReturnType<typeof serviceAccount>;
  p8: ReturnType<typeof apnsKey>;
  certFile: string;
  close(): Promise<void>;
}

async function startStubs(now: () => number): Promise<Stubs> {
  const sa = serviceAccount();
  const p8 = apnsKey();
  const tls = selfSignedCert(tempDir('imkit-push-tls-'));
  const fcm = await new FcmStub(sa, now).start();
  const apns = await new ApnsStub(tls, { ...APNS, publicKey: p8.publicKey }, now).start();
  const web = await new WebPushStub().start();
  return { fcm, apns, web, sa, p8, certFile: tls.certFile, close: async () => void (await Promise.all([fcm.close(), apns.close(), web.close()])) };
}

function pushSettings(s: Stubs): Partial<Config> {
  return {
    webhookAllowPrivateNetworks: true,
    pushFcmBaseUrl: s.fcm.baseUrl,
    pushFcmTokenUrl: s.fcm.tokenUrl,
    pushApnsBaseUrl: s.apns.url,
    pushApnsCaFile: s.certFile,
    webhookRetrySchedule: [0, 0, 0],
    webhookTimeoutMs: 2_000,
  };
}

async function configure(t: { request: TestServer['request']; apiKey: string }, s: Stubs): Promise<Record<string, any>> {
  const out: Record<string, any> = {};
  const fcm = await t.request({ method: 'PUT', url: '/admin/push/credentials/fcm', headers: A(t), body: s.sa.json });
  expect(fcm.status, fcm.raw).toBe(200);
  out.fcm = fcm;
  const apns = await t.request({ method: 'PUT', url: '/admin/push/credentials/apns', headers: A(t), body: { ...APNS, key: s.p8.p8 } });
  expect(apns.status, apns.raw).toBe(200);
  out.apns = apns;
  const web = await t.request({ method: 'PUT', url: '/admin/push/credentials/web', headers: A(t), body: { subject: 'mailto:ops@example.com' } });
  expect(web.status, web.raw).toBe(200);
  s.web.vapid = { publicKey: web.body.result.publicKey, subject: 'mailto:ops@example.com' };
  out.web = web;
  return out;
}

async function subscribe(t: TestServer, token: string, body: Record<string, unknown>) {
  const res = await t.request({ method: 'POST', url: '/me/subscribe', headers: userHeaders(t.clientKey, token), body });
  expect(res.status, res.raw).toBe(200);
  expect(res.body.result).toEqual({});
}

function pushRows(server: ImkitServer) {
  return server.store.db.selectFrom('webhook_deliveries').selectAll().where('kind', '=', 'push').orderBy('id').execute();
}

async function settled(server: ImkitServer, count: number) {
  await expect.poll(async () => (await pushRows(server)).filter((r) => r.status !== 'pending' && r.status !== 'sending').length, { timeout: 15_000 }).toBe(count);
  return pushRows(server);
}

function devices(server: ImkitServer, appId: string) {
  return server.store.db.selectFrom('push_devices').selectAll().where('app_id', '=', appId).orderBy('user_id').execute();
}

describe.each(DIALECTS)('push notifications (%s)', (dialect) => {
  let t: TestServer;
  let s: Stubs;
  let clock: ManualClock;

  beforeEach(async () => {
    clock = new ManualClock(0);
    s = await startStubs(() => t.clock.now());
    t = await startTestServer(dialect, pushSettings(s));
    clock = t.clock;
  });
  afterEach(async () => {
    await t.close();
    await s.close();
  });

  it('a new message reaches only offline, unmuted, unblocking members, once per device, correctly formed and authenticated', async () => {
    await configure(t, s);
    const tok: Record<string, string> = {};
    for (const u of ['s', 'ufcm', 'uios', 'uweb', 'uonline', 'umuted', 'ublocker', 'ubanned', 'unodevice']) tok[u] = await createUser(t, u, t.apiKey, { nickname: u === 's' ? 'Sender' : u });
    const created = await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r1', name: 'Team', roomType: 'group', members: Object.keys(tok), owner: 's' } });
    expect(created.status, created.raw).toBe(200);
    await subscribe(t, tok.ufcm!, { type: 'fcm', token: fcmToken('ufcm'), deviceId: 'phone' });
    await subscribe(t, tok.uios!, { type: 'ios', token: iosToken(1) });
    const sub = s.web.subscribe('uweb');
    await subscribe(t, tok.uweb!, { type: 'web', token: sub });
    for (const u of ['uonline', 'umuted', 'ublocker', 'ubanned']) await subscribe(t, tok[u]!, { type: 'android', token: fcmToken(u) });
    expect((await t.request({ method: 'POST', url: '/me/mute/r1', headers: userHeaders(t.clientKey, tok.umuted!) })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/blockStatus/my/s', headers: userHeaders(t.clientKey, tok.ublocker!) })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/blockStatus/room/r1/ubanned', headers: A(t) })).status).toBe(200);
    // uios has an unread message elsewhere: the badge counts every active room.
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r2', roomType: 'group', members: ['s', 'uios'] } });
    await t.request({ method: 'POST', url: '/messages', headers: A(t), body: { room: 'r2', sender: 's', message: 'earlier', messageType: 'text', push: false } });

    const client = await TestClient.connect(await t.server.listen(), 'bundle');
    try {
      await client.login(tok.uonline!, t.clientKey);
      const sent = await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, tok.s!), body: { message: 'hello team', messageType: 'text' } });
      expect(sent.status, sent.raw).toBe(200);
      const mid = sent.body.result._id as string;
      const rows = await settled(t.server, 3);
      expect(rows.map((r) => r.status)).toEqual(['delivered', 'delivered', 'delivered']);
      expect(rows.every((r) => r.message_id === mid)).toBe(true);

      expect(s.fcm.problems).toEqual([]);
      expect(s.apns.problems).toEqual([]);
      expect(s.web.problems).toEqual([]);
      // FCM: only ufcm (uonline has a socket, umuted muted the room, ublocker blocks the sender, ubanned is banned).
      expect(s.fcm.accepted.map((a) => a.token)).toEqual([fcmToken('ufcm')]);
      const m = s.fcm.accepted[0]!.body.message;
      expect(m.notification).toEqual({ title: 'Sender @ Team', body: 'hello team' });
      expect(m.android).toMatchObject({ priority: 'high', ttl: '3600s', notification: { click_action: 'push_chatroom', body_loc_key: 'im_loc_text', body_loc_args: ['Sender', 'hello team'], notification_count: 1 } });
      expect(m.data).toMatchObject({ type: 'chatroom_chat:r1', 'loc-key': 'im_loc_text', 'loc-args': JSON.stringify(['Sender', 'hello team']), roomID: 'r1', messageID: mid });
      expect(JSON.parse(m.data.payload)).toMatchObject({ _id: mid, message: 'hello team', room: 'r1', sender: { _id: 's', nickname: 'Sender' } });
      expect(s.fcm.tokenRequests).toBe(1);
      // APNs over HTTP/2: the bundle id as topic, the badge over both rooms.
      expect(s.apns.accepted.map((a) => a.token)).toEqual([iosToken(1)]);
      const ios = s.apns.accepted[0]!;
      expect(ios.headers['apns-topic']).toBe(APNS.bundleId);
      expect(Number(ios.headers['apns-expiration'])).toBe(Math.floor(clock.now() / 1000) + 3600);
      expect(ios.body.aps).toEqual({ alert: { title: 'Sender @ Team', body: 'hello team', 'loc-key': 'im_loc_text', 'loc-args': ['Sender', 'hello team'] }, badge: 2, sound: 'default', category: 'chatroom_chat:r1' });
      // Web Push: decrypted with the subscription's key.
      expect(s.web.accepted.map((a) => a.token)).toEqual(['uweb']);
      expect(s.web.accepted[0]!.plain).toMatchObject({ title: 'Sender @ Team', body: 'hello team', badge: 1, data: { roomID: 'r1', messageID: mid } });

      // push: false sends nothing; a push text replaces the message's; skipTotalBadge leaves the badge out.
      await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, tok.s!), body: { message: 'quiet', push: false } });
      await t.request({ method: 'POST', url: '/messages', headers: A(t), body: { room: 'r1', sender: 's', message: 'secret', messageType: 'text', push: 'You have a new message', skipTotalBadge: true } });
      await settled(t.server, 6);
      expect(s.fcm.accepted.map((a) => a.body.message.notification.body)).toEqual(['hello team', 'You have a new message']);
      expect(s.fcm.accepted[1]!.body.message.android.notification.notification_count).toBeUndefined();
      expect(s.apns.accepted[1]!.body.aps.badge).toBeUndefined();
      expect(s.fcm.tokenRequests).toBe(1);
    } finally {
      client.close();
    }
    // A batch send pushes only when asked to (push defaults to false there).
    expect((await t.request({ method: 'POST', url: '/messages/batch', headers: A(t), body: { message: 'batch $n$', messageType: 'text', sender: 's', paras: [{ room: 'r1', $n$: '1' }] } })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/messages/batch', headers: A(t), body: { message: 'batch $n$', messageType: 'text', sender: 's', push: true, paras: [{ room: 'r1', $n$: '2' }] } })).status).toBe(200);
    await settled(t.server, 10);
    // uonline's socket is closed by now: it is offline, and gets this one.
    expect(s.fcm.accepted.map((a) => `${a.token}:${a.body.message.notification.body}`).slice(2).sort()).toEqual([`${fcmToken('ufcm')}:batch 2`, `${fcmToken('uonline')}:batch 2`]);
    const history = await t.request({ method: 'GET', url: '/rooms/r1/messages/v3', headers: A(t) });
    expect(history.body.result.data.map((x: any) => Object.keys(x).filter((k) => k.includes('push')))).toEqual([[], [], [], [], []]);
  });

  it('a token the provider reports invalid is removed; other devices stay', async () => {
    await configure(t, s);
    const tok: Record<string, string> = {};
    for (const u of ['s', 'a', 'b', 'c']) tok[u] = await createUser(t, u);
    await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r1', roomType: 'group', members: ['s', 'a', 'b', 'c'] } });
    await subscribe(t, tok.a!, { type: 'fcm', token: fcmToken('dead'), deviceId: 'old-phone' });
    await subscribe(t, tok.a!, { type: 'fcm', token: fcmToken('alive'), deviceId: 'new-phone' });
    await subscribe(t, tok.b!, { type: 'ios', token: iosToken(2) });
    await subscribe(t, tok.b!, { type: 'ios', token: iosToken(3) });
    await subscribe(t, tok.c!, { type: 'web', token: JSON.stringify(s.web.subscribe('gone')) });
    s.fcm.verdict = (token) => (token === fcmToken('dead') ? FcmStub.unregistered() : {});
    s.apns.verdict = (token) => (token === iosToken(2) ? { status: 410, body: 'Unregistered' } : token === iosToken(3) ? { status: 400, body: 'BadDeviceToken' } : {});
    s.web.verdict = (id) => (id === 'gone' ? { status: 410 } : {});
    expect((await devices(t.server, t.appId)).length).toBe(5);
    await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, tok.s!), body: { message: 'ping' } });
    const rows = await settled(t.server, 5);
    expect(rows.filter((r) => r.status === 'delivered').length).toBe(1);
    expect(rows.filter((r) => r.status === 'failed').every((r) => /device was removed/.test(r.last_error ?? ''))).toBe(true);
    expect((await devices(t.server, t.appId)).map((d) => d.token)).toEqual([fcmToken('alive')]);
    expect(s.fcm.accepted.map((a) => a.token)).toEqual([fcmToken('alive')]);
    // A server error is retried (three retries here), then the delivery fails; the device stays.
    let calls = 0;
    s.fcm.verdict = () => (++calls === 1 ? { status: 503, body: {} } : {});
    await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, tok.s!), body: { message: 'pong' } });
    await settled(t.server, 6);
    expect(s.fcm.accepted.map((a) => a.body.message.notification.body)).toEqual(['ping', 'pong']);
    expect((await pushRows(t.server)).at(-1)).toMatchObject({ status: 'delivered', attempts: 2 });
  });

  it('push2clients and push2tokens send the documented payload fields; bad input gets 400, never 500', async () => {
    await configure(t, s);
    const u1 = await createUser(t, 'user001');
    await subscribe(t, u1, { type: 'fcm', token: fcmToken('u1') });
    await subscribe(t, u1, { type: 'ios', token: iosToken(7) });
    const payload = { type: 'marketing', alert: { 'loc-key': 'NEW_OFFER', 'loc-args': ['A', 'B'] }, badge: '3', sound: 'default', topic: 'io.imkit.other', title: 'Offer', body: 'A new offer', icon: 'https://example.com/i.png', collapseKey: 'promo', expiry: Math.floor(clock.now() / 1000) + 600 };
    const r = await t.request({ method: 'POST', url: '/push/push2clients', headers: A(t), body: { clients: ['user001', 'nobody'], payload } });
    expect(r.status, r.raw).toBe(200);
    expect(r.body).toEqual({ RC: 0, RM: 'OK', result: {} });
    await settled(t.server, 2);
    const m = s.fcm.accepted[0]!.body.message;
    expect(m).toMatchObject({ token: fcmToken('u1'), notification: { title: 'Offer', body: 'A new offer' }, android: { collapse_key: 'promo', ttl: '600s', notification: { icon: 'https://example.com/i.png', sound: 'default', body_loc_key: 'NEW_OFFER', body_loc_args: ['A', 'B'], notification_count: 3 } }, data: { type: 'marketing' } });
    const ios = s.apns.accepted[0]!;
    expect(ios.headers['apns-topic']).toBe('io.imkit.other');
    expect(ios.headers['apns-collapse-id']).toBe('promo');
    expect(ios.body.aps).toEqual({ alert: { title: 'Offer', body: 'A new offer', 'loc-key': 'NEW_OFFER', 'loc-args': ['A', 'B'] }, badge: 3, sound: 'default', category: 'marketing' });

    const r2 = await t.request({ method: 'POST', url: '/push/push2tokens', headers: A(t), body: { type: 'ios', tokens: [iosToken(8), iosToken(9)], payload: { alert: 'Hi', badge: 1 } } });
    expect(r2.status, r2.raw).toBe(200);
    await settled(t.server, 4);
    // Two devices' pushes travel concurrently: in either order.
    expect(s.apns.accepted.slice(1).map((a) => [a.token, a.body.aps.alert, a.headers['apns-topic']]).sort((x, y) => String(x[0]).localeCompare(String(y[0])))).toEqual([
      [iosToken(8), 'Hi', APNS.bundleId],
      [iosToken(9), 'Hi', APNS.bundleId],
    ]);

    const bad: Array<[string, unknown, number, string]> = [
      ['/push/push2clients', {}, 400, 'MISSING_PARAMETER'],
      ['/push/push2clients', { clients: ['a'] }, 400, 'MISSING_PARAMETER'],
      ['/push/push2clients', { clients: 'a', payload: {} }, 400, 'MISSING_PARAMETER'],
      ['/push/push2clients', { clients: [1], payload: {} }, 400, 'INVALID_REQUEST'],
      ['/push/push2clients', { clients: ['a'], payload: { badge: -1 } }, 400, 'INVALID_REQUEST'],
      ['/push/push2clients', { clients: ['a'], payload: { alert: { 'loc-args': 'x' } } }, 400, 'INVALID_REQUEST'],
      ['/push/push2clients', { clients: ['a'], payload: { title: { nested: true } } }, 400, 'INVALID_REQUEST'],
      ['/push/push2tokens', { type: 'ios', tokens: ['not-hex'], payload: {} }, 400, 'INVALID_DEVICE_TOKEN'],
      ['/push/push2tokens', { type: 'pager', tokens: ['x'], payload: {} }, 400, 'INVALID_REQUEST'],
      ['/push/push2tokens', { tokens: ['x'], payload: {} }, 400, 'MISSING_PARAMETER'],
    ];
    for (const [url, body, status, code] of bad) {
      const res = await t.request({ method: 'POST', url, headers: A(t), body });
      expect([url, JSON.stringify(body), res.status, res.body?.error]).toEqual([url, JSON.stringify(body), status, code]);
    }
    const deep = await t.request({ method: 'POST', url: '/push/push2clients', headers: { ...A(t), 'content-type': 'application/json' }, payload: `{"clients":["a"],"payload":${'{"a":'.repeat(200)}1${'}'.repeat(200)}}` });
    expect([deep.status, deep.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const forged = await t.request({ method: 'POST', url: '/push/push2clients', headers: { 'IM-API-KEY': 'forged' }, body: { clients: ['a'], payload: {} } });
    expect([forged.status, forged.body.error]).toEqual([401, 'INVALID_API_KEY']);
    const userKey = await t.request({ method: 'POST', url: '/push/push2clients', headers: userHeaders(t.clientKey, u1), body: { clients: ['a'], payload: {} } });
    expect(userKey.status).toBe(403);
  });

  it('device registration: types, deviceId replacing its token, unsubscribe by deviceId or token, bad tokens refused', async () => {
    const u = await createUser(t, 'u');
    const h = userHeaders(t.clientKey, u);
    await subscribe(t, u, { type: 'fcm', token: fcmToken('one'), deviceId: 'd1' });
    await subscribe(t, u, { type: 'fcm', token: fcmToken('two'), deviceId: 'd1' });
    await subscribe(t, u, { type: 'ios', token: iosToken(5).toUpperCase() });
    expect((await devices(t.server, t.appId)).map((d) => [d.type, d.provider, d.token, d.device_id])).toEqual(
      expect.arrayContaining([
        ['fcm', 'fcm', fcmToken('two'), 'd1'],
        ['ios', 'apns', iosToken(5), null],
      ]),
    );
    expect((await devices(t.server, t.appId)).length).toBe(2);
    const bad: Array<[unknown, string]> = [
      [{ type: 'fcm' }, 'MISSING_PARAMETER'],
      [{ token: 'x' }, 'MISSING_PARAMETER'],
      [{ type: 'pager', token: fcmToken('x') }, 'INVALID_REQUEST'],
      [{ type: 'ios', token: 'zz' }, 'INVALID_DEVICE_TOKEN'],
      [{ type: 'fcm', token: 'short' }, 'INVALID_DEVICE_TOKEN'],
      [{ type: 'fcm', token: { a: 1 } }, 'INVALID_DEVICE_TOKEN'],
      [{ type: 'web', token: { endpoint: 'http://127.0.0.1/x', keys: { p256dh: 'AAAA', auth: 'AAAA' } } }, 'INVALID_DEVICE_TOKEN'],
      [{ type: 'web', token: '{not json' }, 'INVALID_DEVICE_TOKEN'],
      [{ type: 'fcm', token: fcmToken('x'), deviceId: 'x'.repeat(300) }, 'INVALID_REQUEST'],
      [{ type: 'constructor', token: fcmToken('x') }, 'INVALID_REQUEST'],
    ];
    for (const [body, code] of bad) {
      const res = await t.request({ method: 'POST', url: '/me/subscribe', headers: h, body });
      expect([JSON.stringify(body), res.status, res.body?.error]).toEqual([JSON.stringify(body), 400, code]);
    }
    const metadata = await t.request({ method: 'POST', url: '/me/subscribe', headers: h, body: { type: 'web', token: { endpoint: 'http://169.254.169.254/push', keys: s.web.subscribe('x').keys } } });
    expect([metadata.status, metadata.body.error]).toEqual([400, 'WEBHOOK_URL_NOT_ALLOWED']);
    const un = await t.request({ method: 'POST', url: '/me/unsubscribe', headers: h, body: { type: 'fcm', deviceId: 'd1' } });
    expect(un.body.result).toEqual({ n: 1, ok: 1 });
    const un2 = await t.request({ method: 'POST', url: '/me/unsubscribe', headers: h, body: { type: 'ios', token: iosToken(5) } });
    expect(un2.body.result).toEqual({ n: 1, ok: 1 });
    expect((await t.request({ method: 'POST', url: '/me/unsubscribe', headers: h, body: { type: 'ios' } })).body.error).toBe('MISSING_PARAMETER');
    expect(await devices(t.server, t.appId)).toEqual([]);
    expect((await t.request({ method: 'POST', url: '/me/subscribe', body: { type: 'fcm', token: fcmToken('x') } })).status).toBe(401);
  });

  it('credentials are checked, never echoed nor logged; another tenant is untouched', async () => {
    const set = await configure(t, s);
    const secrets = [s.sa.json.private_key!.split('\n')[1]!, s.p8.p8.split('\n')[1]!];
    for (const r of Object.values(set)) for (const secret of secrets) expect(r.raw).not.toContain(secret);
    expect(set.fcm.body.result).toMatchObject({ provider: 'fcm', projectId: 'demo-project', clientEmail: s.sa.json.client_email });
    expect(set.apns.body.result).toMatchObject({ provider: 'apns', ...APNS });
    expect(set.web.body.result.privateKey).toBeUndefined();
    const listed = await t.request({ method: 'GET', url: '/admin/push/credentials', headers: A(t) });
    expect(listed.body.result.data.map((c: any) => c.provider)).toEqual(['apns', 'fcm', 'web']);
    const webPrivate = (await t.server.store.db.selectFrom('push_credentials').select('data').where('provider', '=', 'web').executeTakeFirstOrThrow()).data;
    for (const secret of [...secrets, JSON.parse(webPrivate).privateKey]) {
      expect(listed.raw).not.toContain(secret);
      expect(t.logs.join('')).not.toContain(secret);
    }
    const refused: Array<[string, unknown, number, string]> = [
      ['fcm', { project_id: 'p', client_email: 'a@b', private_key: 'not a key' }, 400, 'INVALID_PUSH_CREDENTIALS'],
      ['fcm', { project_id: 'p/../x', client_email: 'a@b', private_key: s.sa.json.private_key }, 400, 'INVALID_PUSH_CREDENTIALS'],
      ['apns', { ...APNS, key: s.sa.json.private_key }, 400, 'INVALID_PUSH_CREDENTIALS'],
      ['web', { subject: 'nobody' }, 400, 'INVALID_PUSH_CREDENTIALS'],
      ['web', { subject: 'mailto:a@b', publicKey: 'AAAA', privateKey: 'AAAA' }, 400, 'INVALID_PUSH_CREDENTIALS'],
      ['hook', { url: 'http://169.254.169.254/' }, 400, 'WEBHOOK_URL_NOT_ALLOWED'],
      ['pager', {}, 400, 'INVALID_REQUEST'],
    ];
    for (const [provider, body, status, code] of refused) {
      const res = await t.request({ method: 'PUT', url: `/admin/push/credentials/${provider}`, headers: A(t), body });
      expect([provider, res.status, res.body?.error]).toEqual([provider, status, code]);
      expect(res.raw).not.toContain(s.sa.json.private_key!.split('\n')[1]!);
    }
    expect((await t.request({ method: 'DELETE', url: '/admin/push/credentials/hook', headers: A(t) })).body.error).toBe('PUSH_CREDENTIALS_NOT_FOUND');

    // Another application: same user id, same token; its devices and pushes are its own.
    const other = await t.server.services.apps.create({ name: 'Other' });
    const o = { apiKey: other.apiKey, clientKey: other.clientKey, request: t.request };
    await configure(o, s);
    const oTok = await createUser(t, 'u1', other.apiKey);
    const aTok = await createUser(t, 'u1');
    for (const [tok, ck] of [[oTok, other.clientKey], [aTok, t.clientKey]] as const) {
      expect((await t.request({ method: 'POST', url: '/me/subscribe', headers: userHeaders(ck, tok), body: { type: 'fcm', token: fcmToken('shared') } })).status).toBe(200);
    }
    expect((await t.request({ method: 'POST', url: '/me/unsubscribe', headers: userHeaders(t.clientKey, aTok), body: { type: 'fcm', token: fcmToken('shared') } })).body.result).toEqual({ n: 1, ok: 1 });
    expect((await devices(t.server, other.id)).map((d) => d.token)).toEqual([fcmToken('shared')]);
    expect(await devices(t.server, t.appId)).toEqual([]);
    await t.request({ method: 'POST', url: '/push/push2clients', headers: A(t), body: { clients: ['u1'], payload: { body: 'for A' } } });
    await t.request({ method: 'POST', url: '/push/push2clients', headers: A(o), body: { clients: ['u1'], payload: { body: 'for Other' } } });
    await settled(t.server, 1);
    expect(s.fcm.accepted.map((a) => a.body.message.notification.body)).toEqual(['for Other']);
    expect((await t.request({ method: 'DELETE', url: '/admin/push/credentials/fcm', headers: A(t) })).status).toBe(200);
    expect((await t.request({ method: 'GET', url: '/admin/push/credentials', headers: A(o) })).body.result.data.map((c: any) => c.provider)).toEqual(['apns', 'fcm', 'web']);
  });

  it('the custom hook receives signed pushes for devices whose provider has no credentials', async () => {
    const rx = await new Receiver().start();
    try {
      const put = await t.request({ method: 'PUT', url: '/admin/push/credentials/hook', headers: A(t), body: { url: rx.url('/push') } });
      expect(put.status, put.raw).toBe(200);
      const tok: Record<string, string> = {};
      for (const u of ['s', 'a']) tok[u] = await createUser(t, u);
      await t.request({ method: 'POST', url: '/rooms', headers: A(t), body: { _id: 'r1', roomType: 'group', members: ['s', 'a'] } });
      await subscribe(t, tok.a!, { type: 'android', token: fcmToken('hooked'), deviceId: 'tablet' });
      rx.answer = (_r, n) => (n === 1 ? { status: 410 } : {});
      await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(t.clientKey, tok.s!), body: { message: 'via hook' } });
      await settled(t.server, 1);
      const got = rx.requests[0]!;
      expect(verifySignature((await t.server.services.webhooks.appSecret(t.appId)).secret as string, got)).toBe(true);
      expect(got.json).toMatchObject({ appID: t.appId, type: 'android', token: fcmToken('hooked'), deviceId: 'tablet', userId: 'a', payload: { body: 'via hook', type: 'chatroom_chat:r1' } });
      // 410 from the hook: the device is gone.
      expect(await devices(t.server, t.appId)).toEqual([]);
    } finally {
      await rx.close();
    }
  });
});

/** A push being sent when the server stops is sent by the next server on the same store, once; one delivered is not sent again. */
describe.each(DIALECTS)('push across a restart (%s)', (dialect) => {
  it('a claimed, unanswered push is resumed after a restart; each device gets the message exactly once', { timeout: 60_000 }, async () => {
    const store = isolatedStore(dialect);
    const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
    const s = await startStubs(() => clock.now());
    const config = () => defaultConfig({ ...store, ...pushSettings(s), logLevel: 'silent', port: 0, host: '127.0.0.1', webhookTimeoutMs: 30_000 });
    let server = await createServer(config(), { clock });
    try {
      const app = server.bootstrap.createdDefault!;
      const req = async (o: { method: string; url: string; headers?: Record<string, string>; body?: unknown }) => {
        const res = await server.http.inject({ method: o.method as 'GET', url: o.url, headers: { 'content-type': 'application/json', ...o.headers }, payload: o.body === undefined ? undefined : JSON.stringify(o.body) });
        return { status: res.statusCode, raw: res.body, body: JSON.parse(res.body) };
      };
      await configure({ apiKey: app.apiKey, request: req as TestServer['request'] }, s);
      const tok: Record<string, string> = {};
      for (const u of ['s', 'a', 'b']) tok[u] = (await req({ method: 'POST', url: '/admin/clients', headers: A(app), body: { _id: u, issueAccessToken: true } })).body.result.token;
      await req({ method: 'POST', url: '/rooms', headers: A(app), body: { _id: 'r1', roomType: 'group', members: ['s', 'a', 'b'] } });
      for (const u of ['a', 'b']) expect((await req({ method: 'POST', url: '/me/subscribe', headers: userHeaders(app.clientKey, tok[u]!), body: { type: 'fcm', token: fcmToken(u) } })).status).toBe(200);
      // b's push service takes the request and never answers while the first server runs.
      let hung = 0;
      s.fcm.verdict = (token) => (token === fcmToken('b') && hung++ === 0 ? { hang: true } : {});
      expect((await req({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(app.clientKey, tok.s!), body: { message: 'survives' } })).status).toBe(200);
      await expect.poll(() => s.fcm.sends, { timeout: 15_000 }).toBe(2);
      expect(s.fcm.accepted.map((a) => a.token)).toEqual([fcmToken('a')]);
      await server.close();
      const left = await (async () => {
        const probe = await createServer(config(), { clock });
        server = probe;
        return pushRows(probe);
      })();
      // The first server gave its claim back: b's delivery is waiting (or already resumed by the new server).
      expect(left.map((r) => [r.device_id !== null, r.status === 'delivered'])).toHaveLength(2);
      await expect.poll(() => s.fcm.accepted.map((a) => a.token).sort(), { timeout: 15_000 }).toEqual([fcmToken('a'), fcmToken('b')]);
      await expect.poll(async () => (await pushRows(server)).map((r) => r.status), { timeout: 15_000 }).toEqual(['delivered', 'delivered']);
      // A message sent after the restart reaches both devices once more, and nothing else was sent twice.
      expect((await req({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(app.clientKey, tok.s!), body: { message: 'after' } })).status).toBe(200);
      await expect.poll(async () => (await pushRows(server)).filter((r) => r.status === 'delivered').length, { timeout: 15_000 }).toBe(4);
      const bodies = s.fcm.accepted.map((a) => `${a.token}:${a.body.message.notification.body}`).sort();
      expect(bodies).toEqual([`${fcmToken('a')}:after`, `${fcmToken('a')}:survives`, `${fcmToken('b')}:after`, `${fcmToken('b')}:survives`]);
      expect(s.fcm.problems).toEqual([]);
    } finally {
      await server.close();
      await s.close();
      await store.drop();
    }
  });
});
