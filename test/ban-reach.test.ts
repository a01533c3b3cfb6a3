import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

/** How far a room ban reaches beyond sending: reading, listing, unread counts, batch sends. */
describe.each(DIALECTS)('room ban reach (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['host', 'guest', 'troll']) tok[u] = await createUser(t, u);
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'hall', members: ['host', 'guest', 'troll'], owner: 'host' } });
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'side', members: ['host', 'troll'] } });
  });
  afterAll(async () => t?.close());

  it('a banned member gets no unread, no room in the list, no room detail, and batch sends as them fail', async () => {
    const ban = await t.request({ method: 'POST', url: '/blockStatus/room/hall/troll', headers: as('host') });
    expect(ban.status).toBe(200);
    await t.request({ method: 'POST', url: '/rooms/hall/message', headers: as('host'), body: { messageType: 'text', message: 'rules' } });
    const badge = (await t.request({ method: 'GET', url: '/me/badge', headers: as('troll') })).body.result.badge;
    expect(badge).toBe(0);
    expect((await t.request({ method: 'GET', url: '/rooms/hall', headers: as('guest') })).body.result.unread).toBe(1);
    const list = await t.request({ method: 'GET', url: '/rooms', headers: as('troll') });
    expect(list.body.result.data.map((r: any) => r._id)).toEqual(['side']);
    const detail = await t.request({ method: 'GET', url: '/rooms/hall', headers: as('troll') });
    expect([detail.status, detail.body.error]).toEqual([403, 'USER_BANNED']);

    const batch = await t.request({ method: 'POST', url: '/messages/batch', headers: admin, body: { messageType: 'text', message: 'spam', sender: 'troll', paras: [{ room: 'hall' }, { room: 'side' }] } });
    let p: any;
    for (let i = 0; i < 100; i++) {
      p = (await t.request({ method: 'GET', url: `/messages/batch/${batch.body.result.batchID}`, headers: admin })).body.result;
      if (p.status === 'done') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(p).toMatchObject({ status: 'done', sent: 1, failed: 1, errors: [{ index: 0, error: expect.stringContaining('USER_BANNED') }] });

    await t.request({ method: 'DELETE', url: '/blockStatus/room/hall/troll', headers: as('host') });
    expect((await t.request({ method: 'GET', url: '/rooms/hall', headers: as('troll') })).status).toBe(200);
  });
});
