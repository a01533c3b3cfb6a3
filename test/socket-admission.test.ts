import http from 'node:http';
import { io as ioClient, type Socket } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { parseTrustedProxies } from '../src/lib/client-address.js';
import { readFileLimits } from '../src/lib/file-limits.js';
import { limitsFromFileLimit, REFUSED_PER_ADDRESS, REFUSED_TOTAL } from '../src/realtime/admission.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

/**
 * Socket admission (docs/realtime.md, Admission): a login deadline, a cap per client address, a cap in all, and
 * nothing per socket left behind once the sockets closed. Addresses are simulated with X-Forwarded-For through a
 * trusted loopback proxy.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(10);
  return cond();
}

describe.each(DIALECTS)('socket admission (%s)', (dialect) => {
  const servers: TestServer[] = [];
  const sockets: Socket[] = [];

  const start = async (overrides: Partial<Config>) => {
    const t = await startTestServer(dialect, overrides);
    servers.push(t);
    return { t, base: await t.server.listen() };
  };
  /** A Socket.IO client from `address` (as the proxy says); resolves once connected, rejects on a refusal. */
  const open = (base: string, address?: string) => {
    const socket = ioClient(base, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      extraHeaders: address ? { 'X-Forwarded-For': address } : {},
    });
    sockets.push(socket);
    return new Promise<Socket>((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  };
  /** A raw handshake as the polling transport makes it: status and body of the answer. */
  const pollingHandshake = async (base: string, address: string) => {
    const res = await fetch(`${base}/socket.io/?EIO=4&transport=polling`, { headers: { 'X-Forwarded-For': address } });
    return { status: res.status, body: await res.text() };
  };
  /** A raw WebSocket upgrade: the status and body the server answers when it refuses. */
  const upgrade = (base: string, address: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${base}/socket.io/?EIO=4&transport=websocket`, {
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'X-Forwarded-For': address },
      });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, body: '' });
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    for (const t of servers.splice(0)) await t.close();
  });

  it('a socket that does not log in within the deadline is closed; one that logged in stays', async () => {
    const { t, base } = await start({ socketLoginTimeoutMs: 300 });
    const token = await createUser(t, 'amy');
    await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'r', members: ['amy'] } });
    const member = await TestClient.connect(base, 'bundle');
    expect((await member.login(token, t.clientKey)).RC).toBe(0);
    const silent = await TestClient.connect(base, 'bundle');
    try {
      expect(await silent.waitDisconnect(5000)).toBe(true);
      // The member's own deadline passed before the silent socket's: logging in cancelled it.
      expect(member.disconnected).toBe(false);
      await t.request({ method: 'POST', url: '/rooms/r/message', headers: userHeaders(t.clientKey, token), body: { messageType: 'text', message: 'still here' } });
      await member.next('chat message', (m) => m.message === 'still here');
    } finally {
      member.close();
      silent.close();
    }
  });

  it('sockets per address are capped with a clear refusal, while other addresses still connect', async () => {
    const { t, base } = await start({ maxSocketsPerIp: 2, trustProxy: parseTrustedProxies('loopback') });
    const first = await open(base, '203.0.113.7');
    await open(base, '203.0.113.7');
    await expect(open(base, '203.0.113.7')).rejects.toThrow();
    expect(await pollingHandshake(base, '203.0.113.7')).toEqual({ status: 403, body: JSON.stringify({ code: 4, message: REFUSED_PER_ADDRESS }) });
    expect(await upgrade(base, '203.0.113.7')).toEqual({ status: 400, body: REFUSED_PER_ADDRESS });
    // Another client behind the same proxy is not affected.
    await open(base, '198.51.100.20');
    await open(base, '198.51.100.20');
    // A closed socket gives its slot back.
    first.close();
    expect(await until(() => t.server.realtime.admissionStats().sockets === 3)).toBe(true);
    await open(base, '203.0.113.7');
  });

  it('sockets in all are capped: past the cap new ones are refused with a clear error, and HTTP still answers', async () => {
    const { t, base } = await start({ maxSockets: 3 });
    for (let i = 0; i < 3; i++) await open(base);
    await expect(open(base)).rejects.toThrow();
    expect(await pollingHandshake(base, '192.0.2.1')).toEqual({ status: 403, body: JSON.stringify({ code: 4, message: REFUSED_TOTAL }) });
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(t.server.realtime.admissionStats().sockets).toBe(3);
  });

  it('nothing per socket is left once the sockets closed: the per-address table and the socket counts drop to zero', async () => {
    // Short pings: the abandoned polling connection below is closed by its ping timeout.
    const { t, base } = await start({ trustProxy: parseTrustedProxies('loopback'), socketEventsPer10s: 1000, pingIntervalMs: 200, pingTimeoutMs: 200 });
    const token = await createUser(t, 'amy');
    await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'r', members: ['amy'] } });
    const opened: Socket[] = [];
    for (let i = 0; i < 12; i++) opened.push(await open(base, `203.0.113.${i % 4}`));
    // Some log in and spend events (each socket has its event budget).
    for (const s of opened.slice(0, 4)) {
      await new Promise<void>((resolve) => s.emit('auth2', token, { CLIENT_KEY: t.clientKey, Authorization: token }, () => resolve()));
      await new Promise<void>((resolve) => s.emit('typing', 'r', 'x', () => resolve()));
    }
    // A polling handshake that is never followed up holds a slot too, until its connection closes.
    expect((await pollingHandshake(base, '203.0.113.9')).status).toBe(200);
    expect(t.server.realtime.admissionStats()).toMatchObject({ sockets: 13, addresses: 5 });
    for (const s of opened) s.close();
    expect(await until(() => t.server.realtime.admissionStats().ioSockets === 0)).toBe(true);
    expect(await until(() => t.server.realtime.admissionStats().sockets === 0)).toBe(true);
    expect(t.server.realtime.admissionStats()).toEqual({ sockets: 0, addresses: 0, ioSockets: 0 });
  });

  it('the default total cap follows the open-file limit, leaving room for HTTP and the database', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n';
    expect(readFileLimits(text)).toEqual({ soft: 1024, hard: 524288 });
    expect(readFileLimits('Max open files            unlimited            unlimited            files\n')).toEqual({ soft: undefined, hard: undefined });
    const limits = limitsFromFileLimit(1024);
    expect(limits.sockets).toBe(819);
    expect(limits.maxConnections).toBeLessThan(1024);
    expect(limits.maxConnections).toBeGreaterThan(limits.sockets!);
    const tiny = limitsFromFileLimit(128);
    expect(tiny.sockets).toBeLessThan(tiny.maxConnections!);
    expect(tiny.sockets).toBeGreaterThan(0);
    expect(limitsFromFileLimit(undefined)).toEqual({ sockets: undefined, maxConnections: undefined });
  });
});
