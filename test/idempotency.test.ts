import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IdempotencyRepo } from '../src/store/idempotency-repo.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

/** Idempotency-Key on POSTs (issue 21, docs/reliability.md): a retried request is not carried out twice. */
describe.each(DIALECTS)('Idempotency-Key (%s)', (dialect) => {
  let t: TestServer;
  let alice: string;
  let bob: string;
  const A = () => ({ 'IM-API-KEY': t.apiKey });

  beforeEach(async () => {
    t = await startTestServer(dialect);
    alice = await createUser(t, 'alice');
    bob = await createUser(t, 'bob');
    expect((await t.request({ method: 'POST', url: '/rooms', headers: A(), body: { _id: 'r', name: 'R', roomType: 'group', members: ['alice', 'bob'] } })).status).toBe(200);
  });
  afterEach(async () => t.close());

  const texts = async () => {
    const res = await t.request({ method: 'GET', url: '/rooms/r/messages/v3?limit=100', headers: { ...A(), 'IM-CLIENT-ID': 'alice' } });
    return (res.body as any).result.data.filter((m: any) => m.messageType === 'text').map((m: any) => m.message).sort() as string[];
  };

  it('a retry with the same key and request gets the first answer again and stores nothing more', async () => {
    const send = () => t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': 'order-42' }, body: { room: 'r', sender: 'alice', messageType: 'text', message: 'once' } });
    const first = await send();
    expect(first.status).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const again = await send();
    expect(again.status).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.raw).toBe(first.raw);
    expect(await texts()).toEqual(['once']);

    // Over a socket-less client too: a user's send through REST, with a key of its own.
    const userSend = (who: string, headers: Record<string, string>) =>
      t.request({ method: 'POST', url: '/rooms/r/message', headers: { ...headers, 'Idempotency-Key': 'same-key' }, body: { messageType: 'text', message: `from ${who}` } });
    const a1 = await userSend('alice', userHeaders(t.clientKey, alice));
    const a2 = await userSend('alice', userHeaders(t.clientKey, alice));
    expect((a2.body as any).result._id).toBe((a1.body as any).result._id);
    // Keys belong to their caller: Bob's same key is his own first request.
    const b1 = await userSend('bob', userHeaders(t.clientKey, bob));
    expect((b1.body as any).result._id).not.toBe((a1.body as any).result._id);
    expect(b1.headers['idempotent-replayed']).toBeUndefined();
    expect(await texts()).toEqual(['from alice', 'from bob', 'once']);
  });

  it('the same key with another request is 422; an error answer is replayed too', async () => {
    const headers = { ...A(), 'Idempotency-Key': 'k-1' };
    expect((await t.request({ method: 'POST', url: '/messages', headers, body: { room: 'r', sender: 'alice', messageType: 'text', message: 'first' } })).status).toBe(200);
    const other = await t.request({ method: 'POST', url: '/messages', headers, body: { room: 'r', sender: 'alice', messageType: 'text', message: 'second' } });
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({ RC: 422, error: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await texts()).toEqual(['first']);

    const missing = { room: 'nowhere', sender: 'alice', messageType: 'text', message: 'x' };
    const e1 = await t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': 'k-2' }, body: missing });
    expect(e1.status).toBe(404);
    const e2 = await t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': 'k-2' }, body: missing });
    expect([e2.status, e2.headers['idempotent-replayed'], e2.raw]).toEqual([404, 'true', e1.raw]);

    for (const bad of ['a'.repeat(256), 'has space', 'tab\there']) {
      const r = await t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': bad }, body: { room: 'r', sender: 'alice', messageType: 'text', message: 'bad key' } });
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
    expect(await texts()).toEqual(['first']);
  });

  it('two requests with one key at once: one runs, the other waits its turn (409) or gets its answer; stored once', async () => {
    const send = () => t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': 'race' }, body: { room: 'r', sender: 'bob', messageType: 'text', message: 'raced' } });
    const answers = await Promise.all([send(), send(), send()]);
    const ran = answers.filter((a) => a.status === 200 && a.headers['idempotent-replayed'] === undefined);
    expect(ran).toHaveLength(1);
    for (const a of answers) {
      if (a === ran[0]) continue;
      if (a.status === 409) expect((a.body as any).error).toBe('IDEMPOTENCY_KEY_IN_USE');
      else expect([a.status, a.headers['idempotent-replayed'], a.raw]).toEqual([200, 'true', ran[0]!.raw]);
    }
    expect(await texts()).toEqual(['raced']);
  });

  it('a key is remembered for 24 hours; a first request abandoned for a minute (its process died) runs again', async () => {
    const send = (key: string, message: string) => t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': key }, body: { room: 'r', sender: 'alice', messageType: 'text', message } });
    expect((await send('day', 'monday')).status).toBe(200);
    t.clock.advance(24 * 3_600_000 - 1000);
    expect((await send('day', 'monday')).headers['idempotent-replayed']).toBe('true');
    t.clock.advance(2000);
    const later = await send('day', 'monday');
    expect([later.status, later.headers['idempotent-replayed']]).toEqual([200, undefined]);
    expect(await texts()).toEqual(['monday', 'monday']);

    // A "running" row no answer ever finished, as a crash between the claim and the answer leaves it.
    const app = t.appId;
    const subject = `k:${(await t.server.services.apps.listApiKeys(await t.server.services.apps.resolve(app)))[0]!.id as string}`;
    const body = { room: 'r', sender: 'alice', messageType: 'text', message: 'after crash' };
    const fingerprint = createHash('sha256').update(`POST /messages\n{}\n${JSON.stringify(body)}`).digest('hex');
    await new IdempotencyRepo(t.server.store.db).claim({ app_id: app, subject, key: 'crashed', fingerprint, status: null, body: null, created_at: t.clock.now(), message_id: null });
    const busy = await send('crashed', 'after crash');
    expect([busy.status, (busy.body as any).error]).toEqual([409, 'IDEMPOTENCY_KEY_IN_USE']);
    t.clock.advance(61_000);
    expect((await send('crashed', 'after crash')).status).toBe(200);
    expect(await texts()).toEqual(['after crash', 'monday', 'monday']);
  });

  it('a send whose answer was lost after its message was stored: the retry gets that message at once, stored once', async () => {
    const send = () => t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': 'lost-answer' }, body: { room: 'r', sender: 'alice', messageType: 'text', message: 'stored, answer lost' } });
    // The message commits, then writing the answer fails: the store is left as a crash between the two leaves it.
    const lost = vi.spyOn(IdempotencyRepo.prototype, 'finish').mockRejectedValueOnce(new Error('the process died here'));
    try {
      expect((await send()).status).toBe(500);
    } finally {
      lost.mockRestore();
    }
    const stored = await t.request({ method: 'GET', url: '/rooms/r/messages/v3?limit=100', headers: { ...A(), 'IM-CLIENT-ID': 'alice' } });
    const message = (stored.body as any).result.data.find((m: any) => m.message === 'stored, answer lost');
    expect(message).toBeDefined();
    // At once (not after the minute an unanswered claim is waited for): the answer that try would have given.
    const retry = await send();
    expect([retry.status, retry.headers['idempotent-replayed']]).toEqual([200, 'true']);
    expect((retry.body as any).result).toMatchObject({ _id: message._id, message: 'stored, answer lost', sender: 'alice', room: 'r' });
    // It is kept as the key's answer now.
    const again = await send();
    expect([again.status, again.headers['idempotent-replayed'], again.raw]).toEqual([200, 'true', retry.raw]);
    expect(await texts()).toEqual(['stored, answer lost']);

    // The same through the user's route: a user's send with a key.
    const userSend = () => t.request({ method: 'POST', url: '/rooms/r/message', headers: { ...userHeaders(t.clientKey, bob), 'Idempotency-Key': 'bob-1' }, body: { messageType: 'text', message: 'from bob' } });
    const lostToo = vi.spyOn(IdempotencyRepo.prototype, 'finish').mockRejectedValueOnce(new Error('the process died here'));
    try {
      expect((await userSend()).status).toBe(500);
    } finally {
      lostToo.mockRestore();
    }
    const bobRetry = await userSend();
    expect(bobRetry.status).toBe(200);
    expect((bobRetry.body as any).result).toMatchObject({ message: 'from bob', sender: { _id: 'bob' } });
    expect(await texts()).toEqual(['from bob', 'stored, answer lost']);

    // A request that failed before storing anything is forgotten as before: its retry sends.
    const failing = vi.spyOn(t.server.services.messages, 'adminSend').mockRejectedValueOnce(new Error('failed before the store'));
    const fresh = () => t.request({ method: 'POST', url: '/messages', headers: { ...A(), 'Idempotency-Key': 'failed-early' }, body: { room: 'r', sender: 'alice', messageType: 'text', message: 'second try' } });
    try {
      expect((await fresh()).status).toBe(500);
    } finally {
      failing.mockRestore();
    }
    const second = await fresh();
    expect([second.status, second.headers['idempotent-replayed']]).toEqual([200, undefined]);
    expect(await texts()).toEqual(['from bob', 'second try', 'stored, answer lost']);
  });

  describe('clientMsgId on socket sends', () => {
    const clients: TestClient[] = [];
    let base: string | undefined;
    afterEach(() => {
      base = undefined;
      for (const c of clients.splice(0)) c.close();
    });
    const connect = async (token: string) => {
      base ??= await t.server.listen();
      const c = await TestClient.connect(base, 'bundle');
      clients.push(c);
      expect((await c.login(token, t.clientKey)).RC).toBe(0);
      return c;
    };
    const send = async (c: TestClient, message: Record<string, unknown>) => (await c.emitAck('chat message', { room: 'r', messageType: 'text', ...message }))[0] as any;

    it('a send retried after a lost ack, on a new socket, is acknowledged with the first message and stored once', async () => {
      const watcher = await connect(bob);
      // The first send's ack is lost (the client never reads it: its connection dropped); the message arrives.
      const first = await connect(alice);
      first.socket.emit('chat message', { room: 'r', messageType: 'text', message: 'lost ack', clientMsgId: 'm-1' });
      const echo = await watcher.next('chat message', (m) => m.message === 'lost ack');
      expect(echo.clientMsgId).toBe('m-1'); // stored with the message, as any field a client adds
      first.close();
      // The client reconnects and sends again: the same message is acknowledged, nothing new is stored or delivered.
      const again = await connect(alice);
      const ack = await send(again, { message: 'lost ack', clientMsgId: 'm-1' });
      expect(ack.RC).toBe(0);
      expect(ack.result._id).toBe(echo._id);
      await watcher.none('chat message');

      // Both acks the same: a send acknowledged, then retried (its ack lost on the way), then retried on this socket.
      const a1 = await send(again, { message: 'twice', clientMsgId: 'm-2' });
      const replacement = await connect(alice);
      const a2 = await send(replacement, { message: 'twice', clientMsgId: 'm-2' });
      const a3 = await send(replacement, { message: 'twice', clientMsgId: 'm-2' });
      expect(a1.RC).toBe(0);
      expect(a2).toEqual(a1);
      expect(a3).toEqual(a1);
      expect(await texts()).toEqual(['lost ack', 'twice']);
    });

    it('a send whose ack was never kept after its message was stored is acknowledged with that message on retry', async () => {
      const watcher = await connect(bob);
      const a = await connect(alice);
      const lost = vi.spyOn(IdempotencyRepo.prototype, 'finish').mockRejectedValueOnce(new Error('the process died here'));
      let first: any;
      try {
        first = await send(a, { message: 'ack lost', clientMsgId: 'c-1' });
      } finally {
        lost.mockRestore();
      }
      expect(first.RC).toBe(500);
      const echo = await watcher.next('chat message', (m) => m.message === 'ack lost');
      const retry = await send(a, { message: 'ack lost', clientMsgId: 'c-1' });
      expect(retry).toMatchObject({ RC: 0, result: { _id: echo._id, message: 'ack lost' } });
      expect(await send(a, { message: 'ack lost', clientMsgId: 'c-1' })).toEqual(retry);
      await watcher.none('chat message');
      expect(await texts()).toEqual(['ack lost']);
    });

    it('different ids are different messages; another user with the same id is independent; a reused id with another message is 422', async () => {
      const a = await connect(alice);
      const b = await connect(bob);
      const x = await send(a, { message: 'same text', clientMsgId: 'x' });
      const y = await send(a, { message: 'same text', clientMsgId: 'y' });
      expect([x.RC, y.RC]).toEqual([0, 0]);
      expect(y.result._id).not.toBe(x.result._id);
      const bx = await send(b, { message: 'same text', clientMsgId: 'x' });
      expect(bx.RC).toBe(0);
      expect(bx.result._id).not.toBe(x.result._id);
      expect(bx.result.sender._id).toBe('bob');
      // Integers are ids too (as text: 7 and "7" are one id).
      const n = await send(a, { message: 'numbered', clientMsgId: 7 });
      expect((await send(a, { message: 'numbered', clientMsgId: 7 })).result._id).toBe(n.result._id);

      const reused = await send(a, { message: 'something else', clientMsgId: 'x' });
      expect(reused).toMatchObject({ RC: 422, error: 'IDEMPOTENCY_KEY_REUSED' });
      for (const bad of ['', 'a'.repeat(256), 'has space', { an: 'object' }, 1.5]) {
        expect((await send(a, { message: 'bad id', clientMsgId: bad })).RC, JSON.stringify(bad)).toBe(400);
      }
      // An error answer is kept as well: the retry of a refused send is refused the same way.
      const refused = await send(a, { room: 'nowhere', message: 'no room', clientMsgId: 'z' });
      expect(refused.RC).toBeGreaterThanOrEqual(400);
      expect(await send(a, { room: 'nowhere', message: 'no room', clientMsgId: 'z' })).toEqual(refused);
      expect(await texts()).toEqual(['numbered', 'same text', 'same text', 'same text']);

      // Kept for 24 hours, as an Idempotency-Key: a day later the id is free again.
      t.clock.advance(24 * 3_600_000 + 1000);
      const later = await send(a, { message: 'same text', clientMsgId: 'x' });
      expect(later.RC).toBe(0);
      expect(later.result._id).not.toBe(x.result._id);
      expect(await texts()).toEqual(['numbered', 'same text', 'same text', 'same text', 'same text']);
    });
  });
});
