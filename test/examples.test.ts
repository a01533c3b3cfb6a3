import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, startTestServer, type TestServer } from './helpers.js';

/** The README's two-terminal chat: two real processes of examples/chat.mjs talk through a running server. */
describe('examples/chat.mjs', () => {
  let t: TestServer;
  let base: string;
  beforeAll(async () => {
    t = await startTestServer('sqlite');
    base = await t.server.listen();
  });
  afterAll(async () => t?.close());

  it('two terminals chat through the server', async () => {
    const alice = await createUser(t, 'alice');
    const bob = await createUser(t, 'bob');
    await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'demo', members: ['alice', 'bob'] } });
    const start = (token: string) => {
      const p = spawn(process.execPath, ['examples/chat.mjs', '--url', base, '--client-key', t.clientKey, '--token', token, '--room', 'demo']);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      return { p, out: () => out };
    };
    const a = start(alice);
    const b = start(bob);
    try {
      await until(() => a.out().includes('connected as alice') && b.out().includes('connected as bob'));
      a.p.stdin.write('hello bob\n');
      await until(() => b.out().includes('alice: hello bob'));
      b.p.stdin.write('hi alice\n');
      await until(() => a.out().includes('bob: hi alice'));
      expect(a.out()).not.toContain('alice: hello bob'); // no echo of one's own lines
      const history = await t.request({ method: 'GET', url: '/rooms/demo/messages/v3', headers: { 'IM-API-KEY': t.apiKey } });
      expect(history.body.result.data.map((m: any) => m.message)).toEqual(['hi alice', 'hello bob']);
    } finally {
      a.p.kill();
      b.p.kill();
    }
  });
});

async function until(cond: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** docs/webhooks.md's receiver: a real process verifying real signatures, and answering as a bot. */
describe('examples/webhook-receiver.mjs', () => {
  it('verifies the signatures of the server and of nobody else, and its bot reply is posted', async () => {
    const t = await startTestServer('sqlite', { webhookAllowPrivateNetworks: true });
    // The receiver checks the timestamp against its own clock: the test server's clock must be the real one.
    t.clock.set(Date.now());
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    let p: ReturnType<typeof spawn> | undefined;
    try {
      const secret = (await t.server.services.webhooks.appSecret(t.appId)).secret as string;
      p = spawn(process.execPath, ['examples/webhook-receiver.mjs', '--port', String(port)], { env: { ...process.env, WEBHOOK_SECRET: secret } });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.stderr!.on('data', (d) => (out += d));
      await until(() => out.includes('listening on'));
      const alice = await createUser(t, 'alice');
      await createUser(t, 'robot');
      await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'bot-room', members: ['alice', 'robot'], webhook: `http://127.0.0.1:${port}/hook` } });
      await t.request({ method: 'POST', url: '/rooms/bot-room/message', headers: { 'IM-CLIENT-KEY': t.clientKey, 'IM-Authorization': alice }, body: { message: 'ping' } });
      await until(() => out.includes('event MESSAGE'));
      let history: any;
      await until(async () => {
        history = await t.request({ method: 'GET', url: '/rooms/bot-room/messages/v3', headers: { 'IM-API-KEY': t.apiKey } });
        return history.body.result.data.length === 2;
      });
      expect(history.body.result.data.map((m: any) => [m.sender._id, m.message])).toEqual([['robot', 'pong'], ['alice', 'ping']]);
      // A forged request is refused.
      const forged = await fetch(`http://127.0.0.1:${port}/hook`, {
        method: 'POST',
        headers: { 'webhook-id': 'evt_x', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' },
        body: '{"event":"MESSAGE","data":{"message":"ping"}}',
      });
      expect(forged.status).toBe(401);
    } finally {
      p?.kill();
      await t.close();
    }
  });
});
