import { io as ioClient, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseTrustedProxies } from '../src/lib/client-address.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

/**
 * What a socket sends is bounded before anything walks it (payload depth), and the caller's address is the
 * proxy-aware one HTTP uses (docs/realtime.md, Addresses and Payload depth).
 */
const DEPTH_TEXT = 'JSON is nested too deeply: at most 32 levels of arrays and objects';
const DEPTH_ERROR = { RC: 400, RM: DEPTH_TEXT, error: 'INVALID_REQUEST', message: DEPTH_TEXT, maxDepth: 32 };

/** JSON text nested `levels` deep, built as text: socket.io-client's own encoder recurses and cannot send it. */
function nestedText(levels: number): string {
  return '{"v":['.repeat(levels / 2) + '"leaf"' + ']}'.repeat(levels / 2);
}

describe.each(DIALECTS)('socket input and addresses (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  let token: string;
  const sockets: Socket[] = [];

  const open = (address?: string) => {
    const socket = ioClient(base, { transports: ['websocket'], forceNew: true, reconnection: false, extraHeaders: address ? { 'X-Forwarded-For': address } : {} });
    sockets.push(socket);
    return new Promise<Socket>((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  };
  const ack = (s: Socket, event: string, ...args: unknown[]) =>
    new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), 3000);
      s.emit(event, ...args, (res: unknown) => {
        clearTimeout(timer);
        resolve(res);
      });
    });
  let rawIds = 10_000;
  /** Sends an event packet whose arguments are given as JSON texts, and resolves to its ack's first argument. */
  const rawAck = (s: Socket, event: string, ...argTexts: string[]) =>
    new Promise<any>((resolve, reject) => {
      const id = rawIds++;
      const engine = (s.io as any).engine;
      const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), 3000);
      const onMessage = (data: string) => {
        const m = /^3(\d+)([\s\S]*)$/.exec(data);
        if (!m || Number(m[1]) !== id) return;
        engine.off('message', onMessage);
        clearTimeout(timer);
        resolve(JSON.parse(m[2]!)[0]);
      };
      engine.on('message', onMessage);
      // A Socket.IO EVENT packet (type 2) on the default namespace, with an ack id.
      engine.write(`2${id}[${[JSON.stringify(event), ...argTexts].join(',')}]`);
    });
  const login = (s: Socket, tok: string) => ack(s, 'auth2', tok, { CLIENT_KEY: t.clientKey, Authorization: tok });

  beforeAll(async () => {
    t = await startTestServer(dialect, { trustProxy: parseTrustedProxies('loopback'), authFailuresPerMinute: 3 });
    base = await t.server.listen();
    token = await createUser(t, 'amy');
    await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'r', members: ['amy'] } });
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });
  afterAll(async () => t?.close());

  it('a payload nested 10,000 levels is refused with 400 naming the limit on every client event; the server stays up', async () => {
    const s = await open();
    const deep = nestedText(10_000);
    const tok = JSON.stringify(token);
    expect(await rawAck(s, 'conf', deep)).toEqual(DEPTH_ERROR);
    expect(await rawAck(s, 'auth2', tok, deep)).toEqual(DEPTH_ERROR);
    expect(await rawAck(s, 'auth', deep)).toEqual(DEPTH_ERROR);
    expect((await login(s, token)).RC).toBe(0);
    expect(await rawAck(s, 'chat message', `{"room":"r","messageType":"text","message":"deep","extra":${deep}}`)).toEqual(DEPTH_ERROR);
    expect(await rawAck(s, 'typing', '"r"', deep)).toEqual(DEPTH_ERROR);
    // Nothing was stored, and the socket and the server carry on (30 levels are within the limit).
    const sent = await rawAck(s, 'chat message', `{"room":"r","messageType":"text","message":"shallow","extra":${nestedText(30)}}`);
    expect(sent.RC).toBe(0);
    const history = await t.request({ method: 'GET', url: '/rooms/r/messages/v3', headers: userHeaders(t.clientKey, token) });
    expect(history.body.result.data.map((m: any) => m.message)).toEqual(['shallow']);
    expect((await t.request({ method: 'GET', url: '/healthz' })).status).toBe(200);
  });

  it('the address is the client behind the trusted proxy: recorded at login, and one address\'s failures lock out only that address', async () => {
    const s = await open('203.0.113.5');
    const ok = await login(s, token);
    expect(ok.RC).toBe(0);
    expect(ok.result.address).toEqual({ address: '203.0.113.5', family: 'IPv4' });
    // A stranger's bad logins through the same proxy...
    const stranger = await open('198.51.100.66');
    for (let i = 0; i < 4; i++) await login(stranger, `wrong-token-${i}-0123456789`);
    expect((await login(stranger, 'wrong-token-x-0123456789')).RC).toBe(429);
    // ...do not lock out everybody else behind it: another address's failure is still only a failure.
    const other = await open('203.0.113.6');
    expect((await login(other, 'wrong-token-y-0123456789')).RC).toBe(401);
    expect((await login(other, token)).RC).toBe(0);
  });

  it('a payload over the size limits gets an error ack; a frame over the frame limit closes the connection with 1009 (WebSocket) or 413 (polling); nothing is stored, the server stays up', async () => {
    const s = await open();
    expect((await login(s, token)).RC).toBe(0);
    // Over the message limit (IMKIT_MAX_MESSAGE_BYTES, 64 KB) and within the frame limit: an error ack.
    const big = await ack(s, 'chat message', { room: 'r', messageType: 'text', message: 'x'.repeat(200_000) });
    expect(big).toMatchObject({ RC: 413, error: 'MESSAGE_TOO_LARGE' });
    expect(s.connected).toBe(true);

    // Over the frame limit (IMKIT_BODY_LIMIT, at least 1 MB): Engine.IO stops reading before any handler and closes
    // the connection with the documented reason; the client sees a transport close and would reconnect.
    const over = 'x'.repeat(Math.max(t.config.bodyLimitBytes, 1_000_000) + 1000);
    const closed = new Promise<{ reason: string; details: any }>((resolve) => s.once('disconnect', (reason, details) => resolve({ reason, details })));
    s.emit('chat message', { room: 'r', messageType: 'text', message: over }, () => {
      throw new Error('no ack is expected for a frame over the limit');
    });
    const ws = await closed;
    expect(ws.reason).toBe('transport close');
    expect(ws.details?.context?.code).toBe(1009); // Message Too Big (RFC 6455)

    // Long-polling: the POST carrying the frame is answered 413 and the transport closes.
    const polling = ioClient(base, { transports: ['polling'], forceNew: true, reconnection: false });
    sockets.push(polling);
    await new Promise<void>((resolve, reject) => {
      polling.once('connect', () => resolve());
      polling.once('connect_error', reject);
    });
    expect((await login(polling, token)).RC).toBe(0);
    const pollClosed = new Promise<{ reason: string; details: any }>((resolve) => polling.once('disconnect', (reason, details) => resolve({ reason, details })));
    polling.emit('chat message', { room: 'r', messageType: 'text', message: over });
    const p = await pollClosed;
    expect(p.reason).toBe('transport error');
    expect(p.details?.context?.status).toBe(413);

    // Nothing was stored; a new socket logs in and sends.
    const again = await open();
    expect((await login(again, token)).RC).toBe(0);
    expect((await ack(again, 'chat message', { room: 'r', messageType: 'text', message: 'after' })).RC).toBe(0);
    const history = await t.request({ method: 'GET', url: '/rooms/r/messages/v3', headers: userHeaders(t.clientKey, token) });
    expect(history.body.result.data.map((m: any) => m.message)).not.toContain(over);
    expect(history.body.result.data.every((m: any) => String(m.message).length < 1000)).toBe(true);
  });
});
