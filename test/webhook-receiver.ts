import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: any;
  at: number;
}

export interface Answer {
  status?: number;
  body?: string;
  /** Wait this long before answering (ms). */
  delayMs?: number;
  /** Never answer (the request hangs until the sender gives up). */
  hang?: boolean;
}

/**
 * A webhook receiver on 127.0.0.1, as a customer's backend would run one: it records every request (path, headers,
 * raw body) and answers as `answer` says (default 200 with an empty body).
 */
export class Receiver {
  readonly requests: Received[] = [];
  answer: (r: Received, n: number) => Answer = () => ({});
  private server: http.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        const r: Received = { path: req.url ?? '', headers: req.headers, body, json, at: Date.now() };
        this.requests.push(r);
        const a = this.answer(r, this.requests.length);
        if (a.hang) return;
        const send = () => {
          res.writeHead(a.status ?? 200, { 'content-type': 'application/json' });
          res.end(a.body ?? '');
        };
        if (a.delayMs) setTimeout(send, a.delayMs);
        else send();
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  on(path: string): Received[] {
    return this.requests.filter((r) => r.path === path);
  }

  async waitFor(pred: (reqs: Received[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!pred(this.requests)) {
      if (Date.now() > until) throw new Error(`receiver: condition not met in ${timeoutMs} ms (${this.requests.length} requests: ${this.requests.map((r) => `${r.path} ${r.json?.type ?? r.json?.event}`).join(', ')})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * The Standard Webhooks check, written from the scheme's definition and nothing of the server's: HMAC-SHA256,
 * keyed with the base64-decoded part of the `whsec_` secret, over `<webhook-id>.<webhook-timestamp>.<body>`,
 * base64, prefixed "v1,"; the header may list several space-separated signatures, any one may match.
 */
export function verifySignature(secret: string, r: Pick<Received, 'headers' | 'body'>): boolean {
  const id = r.headers['webhook-id'];
  const ts = r.headers['webhook-timestamp'];
  const header = r.headers['webhook-signature'];
  if (typeof id !== 'string' || typeof ts !== 'string' || typeof header !== 'string' || !secret.startsWith('whsec_')) return false;
  const expected = Buffer.from(`v1,${createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${ts}.${r.body}`).digest('base64')}`);
  return header.split(' ').some((sig) => {
    const got = Buffer.from(sig);
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}
