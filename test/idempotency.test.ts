import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdempotencyRepo } from '../src/store/idempotency-repo.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

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
    await new IdempotencyRepo(t.server.store.db).claim({ app_id: app, subject, key: 'crashed', fingerprint, status: null, body: null, created_at: t.clock.now() });
    const busy = await send('crashed', 'after crash');
    expect([busy.status, (busy.body as any).error]).toEqual([409, 'IDEMPOTENCY_KEY_IN_USE']);
    t.clock.advance(61_000);
    expect((await send('crashed', 'after crash')).status).toBe(200);
    expect(await texts()).toEqual(['after crash', 'monday', 'monday']);
  });
});
