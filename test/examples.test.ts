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

async function until(cond: () => boolean, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
