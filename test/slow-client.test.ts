import { afterEach, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

/**
 * A client that stops reading (issue 21): what waits for it is bounded (IMKIT_SOCKET_SEND_BUFFER); past the bound
 * its socket is closed, and the other members of the room go on receiving every message.
 */
describe.each(DIALECTS)('a socket that stops reading (%s)', (dialect) => {
  let t: TestServer;
  const clients: TestClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.socket.close();
    await t.close();
  });

  it('is closed once 64 KB wait for it, while the others receive every message', async () => {
    t = await startTestServer(dialect, { socketSendBufferBytes: 64 * 1024, rateLimitPerMinute: 1_000_000, logLevel: 'info' });
    const base = await t.server.listen();
    const tokens: Record<string, string> = {};
    for (const u of ['sender', 'fast', 'slow']) tokens[u] = await createUser(t, u);
    expect((await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'busy', name: 'Busy', roomType: 'group', members: ['sender', 'fast', 'slow'] } })).status).toBe(200);
    const fast = await TestClient.connect(base, 'vue');
    const slow = await TestClient.connect(base, 'vue');
    clients.push(fast, slow);
    await fast.login(tokens.fast!, t.clientKey);
    await slow.login(tokens.slow!, t.clientKey);
    // The slow client's process stops reading its TCP socket: the kernel's buffers fill, then the server's.
    const tcp = (slow.socket.io.engine.transport as any).ws?._socket;
    expect(tcp, 'the slow client is on a WebSocket').toBeTruthy();
    tcp.pause();

    const text = 'x'.repeat(16 * 1024);
    let sent = 0;
    const slowSocketsOnServer = async () => (await t.server.realtime.io.fetchSockets()).filter((s) => JSON.stringify([...s.rooms]).includes(':slow')).length;
    // Enough to fill loopback's kernel buffers several times over; stops as soon as the server let the socket go.
    while (sent < 4000 && (sent % 50 !== 0 || (await slowSocketsOnServer()) > 0)) {
      const res = await t.request({ method: 'POST', url: '/messages', headers: { 'IM-API-KEY': t.apiKey }, body: { room: 'busy', sender: 'sender', messageType: 'text', message: `${sent} ${text}` } });
      expect(res.status).toBe(200);
      sent++;
    }
    expect(await slowSocketsOnServer()).toBe(0);
    // Well before the whole stream: what waited for it stayed bounded.
    expect(sent).toBeLessThan(4000);
    expect(t.logs.join('')).toContain('its client stopped reading');
    // The fast member received every message, in order.
    await expect.poll(() => fast.events.filter((e) => e.event === 'chat message').length, { timeout: 20_000 }).toBe(sent);
    const order = fast.events.filter((e) => e.event === 'chat message').map((e) => Number(String(e.payload.message).split(' ')[0]));
    expect(order).toEqual(Array.from({ length: sent }, (_, i) => i));
    expect(fast.disconnected).toBe(false);
  });
});
