import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { DIALECTS, startTestServer, type TestServer } from './helpers.js';

/**
 * Slow requests (issue 21, docs/operations.md, Timeouts): headers that do not arrive within IMKIT_HEADERS_TIMEOUT,
 * and a request whose body does not arrive within IMKIT_REQUEST_TIMEOUT, get 408 REQUEST_TIMEOUT and their
 * connection closed, while the server goes on answering everyone else. Raw TCP clients, one byte at a time.
 */
describe.each(DIALECTS)('slow requests (%s)', (dialect) => {
  let t: TestServer;
  let port: number;
  // Short bounds for the test; each slow client below would take a minute or more to finish on its own.
  const HEADERS_MS = 1000;
  const REQUEST_MS = 2000;

  beforeAll(async () => {
    t = await startTestServer(dialect, { headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS });
    port = Number(new URL(await t.server.listen()).port);
  });
  afterAll(async () => {
    await t?.close();
  });

  /**
   * Writes `head` at once, then `trickle` one byte every `everyMs` (never if 0: it stalls), until the server closes
   * the connection; resolves to what the server wrote and whether the client had sent everything by then.
   */
  const slowClient = (head: string, trickle: string, everyMs: number) =>
    new Promise<{ answer: string; finished: boolean }>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let answer = '';
      let sent = 0;
      let timer: NodeJS.Timeout | undefined;
      socket.on('data', (d) => (answer += String(d)));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearInterval(timer);
        resolve({ answer, finished: sent === trickle.length });
      });
      socket.on('connect', () => {
        socket.write(head);
        if (everyMs > 0) {
          timer = setInterval(() => {
            if (sent < trickle.length && socket.writable) socket.write(trickle[sent++]!);
          }, everyMs);
        }
      });
    });

  const expectTimedOut = (r: { answer: string; finished: boolean }, what: string) => {
    // Closed by the server before the client was done: the timeout did it, not the end of the request.
    expect(r.finished, what).toBe(false);
    expect(r.answer, what).toMatch(/^HTTP\/1\.1 408 /);
    const body = JSON.parse(r.answer.slice(r.answer.indexOf('\r\n\r\n') + 4));
    expect(body, what).toMatchObject({ RC: 408, error: 'REQUEST_TIMEOUT' });
  };

  it('headers sent a byte at a time, a stalled body and a trickled body get 408 and are closed; others are served meanwhile', async () => {
    const header = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ${'slow'.repeat(100)}\r\n\r\n`;
    const body = JSON.stringify({ room: 'r', sender: 'a', messageType: 'text', message: 'x'.repeat(500) });
    const post = `POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\nIM-API-KEY: ${t.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const clients = [
      // About 40 s of headers at this pace.
      slowClient('', header, 100),
      // Headers and ten bytes of the body, then nothing.
      slowClient(post + body.slice(0, 10), body.slice(10), 0),
      // The body a byte every 100 ms: the connection is never idle, the request never complete.
      slowClient(post, body, 100),
    ];
    // The server answers others while those are held.
    let served = 0;
    let done = false;
    void Promise.all(clients).then(() => (done = true));
    while (!done) {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(res.status).toBe(200);
      served++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const [headers, stalled, trickled] = await Promise.all(clients);
    expectTimedOut(headers!, 'slow headers');
    expectTimedOut(stalled!, 'stalled body');
    expectTimedOut(trickled!, 'trickled body');
    expect(served).toBeGreaterThan(5);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  it('a request that arrives in time is answered, also when its body comes slowly', async () => {
    const body = JSON.stringify({ _id: 'slow-but-fine', nickname: 'fine' });
    const post = `POST /admin/clients HTTP/1.1\r\nHost: 127.0.0.1\r\nIM-API-KEY: ${t.apiKey}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`;
    // The body over about half a second, well within the request timeout.
    const r = await slowClient(post, body, Math.floor(500 / body.length));
    expect(r.finished).toBe(true);
    expect(r.answer).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('timeout settings', () => {
  it('are durations within bounds, and headers may not outlast the whole request', () => {
    const c = loadConfig({}, {});
    expect([c.headersTimeoutMs, c.requestTimeoutMs, c.keepAliveTimeoutMs]).toEqual([20_000, 300_000, 72_000]);
    expect(loadConfig({}, { IMKIT_HEADERS_TIMEOUT: '5s', IMKIT_REQUEST_TIMEOUT: '30m', IMKIT_KEEP_ALIVE_TIMEOUT: '2m' })).toMatchObject({ headersTimeoutMs: 5000, requestTimeoutMs: 1_800_000, keepAliveTimeoutMs: 120_000 });
    expect(() => loadConfig({}, { IMKIT_HEADERS_TIMEOUT: '2m', IMKIT_REQUEST_TIMEOUT: '1m' })).toThrow('IMKIT_HEADERS_TIMEOUT must not be longer than IMKIT_REQUEST_TIMEOUT');
    expect(() => loadConfig({}, { IMKIT_REQUEST_TIMEOUT: '0' })).toThrow(/IMKIT_REQUEST_TIMEOUT: must be a duration from 1s to 24h/);
    expect(() => loadConfig({}, { IMKIT_HEADERS_TIMEOUT: 'soon' })).toThrow(/IMKIT_HEADERS_TIMEOUT: must be a duration from 1s to 10m/);
  });
});
