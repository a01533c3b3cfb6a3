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
  it('a banned member finds nothing of the room by searching, until the ban ends', async () => {
    await t.request({ method: 'POST', url: '/rooms/hall/message', headers: as('host'), body: { messageType: 'text', message: 'secret plans' } });
    await t.request({ method: 'POST', url: '/rooms/side/message', headers: as('host'), body: { messageType: 'text', message: 'secret snacks' } });
    await t.request({ method: 'PUT', url: '/rooms/hall', headers: admin, body: { name: 'secret hall' } });
    const found = async () => {
      const search = await t.request({ method: 'POST', url: '/search', headers: as('troll'), body: { type: ['messages', 'roomName'], keyword: 'secret' } });
      const whole = await t.request({ method: 'POST', url: '/messages/search', headers: as('troll'), body: { message: 'secret' } });
      const q = await t.request({ method: 'GET', url: `/messages?q=${encodeURIComponent(JSON.stringify({ message: { $regex: 'secret' } }))}`, headers: as('troll') });
      expect([search.status, whole.status, q.status]).toEqual([200, 200, 200]);
      return {
        groups: search.body.result.messages.map((g: any) => g.room._id).sort(),
        roomNames: search.body.result.roomName.map((r: any) => r._id),
        whole: whole.body.result.data.map((m: any) => m.message).sort(),
        query: q.body.result.data.map((m: any) => m.message).sort(),
      };
    };
    const named = async () =>
      Promise.all([
        t.request({ method: 'POST', url: '/search', headers: as('troll'), body: { type: 'messages', keyword: 'secret', room: 'hall' } }),
        t.request({ method: 'GET', url: `/messages?q=${encodeURIComponent(JSON.stringify({ room: 'hall' }))}`, headers: as('troll') }),
      ]);

    expect(await found()).toEqual({ groups: ['hall', 'side'], roomNames: ['hall'], whole: ['secret plans', 'secret snacks'], query: ['secret plans', 'secret snacks'] });
    expect((await named()).map((r) => r.status)).toEqual([200, 200]);

    expect((await t.request({ method: 'POST', url: '/blockStatus/room/hall/troll', headers: as('host') })).status).toBe(200);
    expect(await found()).toEqual({ groups: ['side'], roomNames: [], whole: ['secret snacks'], query: ['secret snacks'] });
    expect((await named()).map((r) => [r.status, r.body.error])).toEqual([
      [403, 'USER_BANNED'],
      [403, 'USER_BANNED'],
    ]);
    // Another member of the room still finds it all.
    const guest = await t.request({ method: 'POST', url: '/messages/search', headers: as('guest'), body: { message: 'secret' } });
    expect(guest.body.result.data.map((m: any) => m.message)).toEqual(['secret plans']);

    await t.request({ method: 'DELETE', url: '/blockStatus/room/hall/troll', headers: as('host') });
    expect(await found()).toEqual({ groups: ['hall', 'side'], roomNames: ['hall'], whole: ['secret plans', 'secret snacks'], query: ['secret plans', 'secret snacks'] });
  });

  it('a ban is a role below member: reactions, counts, receipts, typing, hiding and prefs of the room refuse the banned, who may still leave', async () => {
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'den', members: ['host', 'guest', 'troll'], owner: 'host' } });
    const sent = await t.request({ method: 'POST', url: '/rooms/den/message', headers: as('host'), body: { messageType: 'text', message: 'before the ban' } });
    const id = sent.body.result._id as string;
    expect((await t.request({ method: 'POST', url: '/blockStatus/room/den/troll', headers: as('host') })).status).toBe(200);
    const secret = await t.request({ method: 'POST', url: '/rooms/den/message', headers: as('host'), body: { messageType: 'text', message: 'the new plan' } });
    const secretId = secret.body.result._id as string;

    const asTroll = as('troll');
    const asTrollByKey = { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'troll' };
    const refused = [
      await t.request({ method: 'POST', url: `/messages/${secretId}/reaction`, headers: asTroll, body: { reaction: 'like' } }),
      await t.request({ method: 'DELETE', url: `/messages/${secretId}/reaction`, headers: asTroll, body: { reaction: 'like' } }),
      await t.request({ method: 'GET', url: '/rooms/den/count', headers: asTroll }),
      await t.request({ method: 'PUT', url: '/rooms/den/lastRead', headers: asTroll, body: { message: secretId } }),
      await t.request({ method: 'POST', url: '/rooms/den/typing', headers: asTroll, body: {} }),
      await t.request({ method: 'POST', url: '/messages/user-delete/all-in-room', headers: asTroll, body: { room: 'den' } }),
      await t.request({ method: 'POST', url: '/messages/user-delete', headers: asTroll, body: { room: 'den', messages: [id] } }),
      await t.request({ method: 'GET', url: `/rooms/den/messages/${id}`, headers: asTroll }),
      await t.request({ method: 'GET', url: '/rooms/den/messages/v3', headers: asTroll }),
      await t.request({ method: 'GET', url: '/rooms/den/invitations', headers: asTroll }),
      // The API key acting as the banned user is bound by the ban too.
      await t.request({ method: 'GET', url: '/rooms/den', headers: asTrollByKey }),
      await t.request({ method: 'GET', url: '/rooms/den/messages/v3', headers: asTrollByKey }),
    ];
    expect(refused.map((r) => [r.status, r.body.error])).toEqual(refused.map(() => [403, 'USER_BANNED']));
    expect(refused).toHaveLength(12);
    for (const r of refused) expect(r.raw).not.toContain('the new plan');

    // Their own preferences for the room reveal nothing of it and stay theirs.
    expect((await t.request({ method: 'POST', url: '/me/mute/den', headers: asTroll })).status).toBe(200);
    expect((await t.request({ method: 'POST', url: '/roomPrefs/den', headers: asTroll, body: { tags: ['x'] } })).status).toBe(200);
    expect((await t.request({ method: 'GET', url: '/messages/user-delete?room=den', headers: asTroll })).body.result).toEqual({ totalCount: 0, data: [] });
    // The API key alone is the platform: never banned.
    expect((await t.request({ method: 'GET', url: '/rooms/den/count', headers: admin })).body.result.count).toBe(2);
    // Leaving is allowed.
    const leave = await t.request({ method: 'DELETE', url: '/rooms/den/members/troll', headers: asTroll });
    expect(leave.status).toBe(200);
    expect(leave.raw).not.toContain('the new plan');
  });
});
