import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../src/events/bus.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('mute, preferences, typing and badges (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  const room = async (body: Record<string, unknown>) => {
    const res = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { roomType: 'group', ...body } });
    expect(res.status).toBe(200);
  };
  const send = async (roomId: string, from: string): Promise<string> => {
    t.clock.advance(5);
    const res = await t.request({ method: 'POST', url: `/rooms/${roomId}/message`, headers: as(from), body: { messageType: 'text', message: `from ${from}` } });
    expect(res.status).toBe(200);
    return res.body.result._id as string;
  };
  const badge = async (user: string, query = '') => {
    const res = await t.request({ method: 'GET', url: `/me/badge${query}`, headers: as(user) });
    expect(res.status).toBe(200);
    return res.body.result.badge as number;
  };

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['alice', 'bob', 'carol', 'dave']) tok[u] = await createUser(t, u);
    await room({ _id: 'r1', members: ['alice', 'bob', 'carol'], roomTags: ['work', 'team-a'] });
    await room({ _id: 'r2', members: ['alice', 'bob'], roomTags: ['work'] });
    await room({ _id: 'r3', members: ['alice', 'carol'], roomTags: ['fun'] });
    await room({ _id: 'r4', members: ['alice', 'bob'] });
    await room({ _id: 'r5', members: ['alice', 'bob'], roomTags: ['work', 'archived'] });
  });
  afterAll(async () => t?.close());

  it('P1/P2 mute and unmute: the Client with its mute list, reflected in GET /me and GET /rooms', async () => {
    const muted = await t.request({ method: 'POST', url: '/me/mute/r1', headers: as('alice') });
    expect(muted.status).toBe(200);
    expect(muted.body.result).toMatchObject({ _id: 'alice', id: 'alice', appID: 'default', nickname: 'alice', mute: ['r1'] });
    await t.request({ method: 'POST', url: '/me/mute/r3', headers: as('alice') });
    const twice = await t.request({ method: 'POST', url: '/me/mute/r3', headers: as('alice') });
    expect(twice.body.result.mute).toEqual(['r1', 'r3']);

    const me = await t.request({ method: 'GET', url: '/me', headers: as('alice') });
    expect(me.body.result.mute).toEqual(['r1', 'r3']);
    const bobMe = await t.request({ method: 'GET', url: '/me', headers: as('bob') });
    expect(bobMe.body.result.mute).toEqual([]);

    const rooms = await t.request({ method: 'GET', url: '/rooms', headers: as('alice') });
    const byId = new Map<string, any>(rooms.body.result.data.map((r: any) => [r._id, r]));
    expect([byId.get('r1').muted, byId.get('r1').pref.muted]).toEqual([true, true]);
    expect([byId.get('r2').muted, byId.get('r2').pref.muted]).toEqual([false, false]);
    const bobR1 = await t.request({ method: 'GET', url: '/rooms/r1', headers: as('bob') });
    expect(bobR1.body.result.muted).toBe(false); // a mute is the caller's own

    const unmuted = await t.request({ method: 'DELETE', url: '/me/mute/r3', headers: as('alice') });
    expect(unmuted.status).toBe(200);
    expect(unmuted.body.result.mute).toEqual(['r1']);
    const back = await t.request({ method: 'GET', url: '/rooms/r3', headers: as('alice') });
    expect([back.body.result.muted, back.body.result.pref.muted]).toEqual([false, false]);
  });

  it('mute errors: unknown room 404, non-member 403, API key without IM-CLIENT-ID 400; the platform may act for any user', async () => {
    const missing = await t.request({ method: 'POST', url: '/me/mute/nope', headers: as('alice') });
    expect([missing.status, missing.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
    const outsider = await t.request({ method: 'POST', url: '/me/mute/r1', headers: as('dave') });
    expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const outsiderDelete = await t.request({ method: 'DELETE', url: '/me/mute/r1', headers: as('dave') });
    expect([outsiderDelete.status, outsiderDelete.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const noUser = await t.request({ method: 'POST', url: '/me/mute/r1', headers: admin });
    expect([noUser.status, noUser.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect(noUser.body.message).toContain('IM-CLIENT-ID');
    const noToken = await t.request({ method: 'POST', url: '/me/mute/r1', headers: { 'IM-CLIENT-KEY': t.clientKey } });
    expect([noToken.status, noToken.body.error]).toEqual([401, 'INVALID_TOKEN']);

    const byPlatform = await t.request({ method: 'POST', url: '/me/mute/r2', headers: { ...admin, 'IM-CLIENT-ID': 'dave' } });
    expect(byPlatform.body.result).toMatchObject({ _id: 'dave', mute: ['r2'] });
    const ghost = await t.request({ method: 'POST', url: '/me/mute/r2', headers: { ...admin, 'IM-CLIENT-ID': 'ghost' } });
    expect([ghost.status, ghost.body.error]).toEqual([404, 'USER_NOT_FOUND']);
    const undo = await t.request({ method: 'DELETE', url: '/me/mute/r2', headers: { ...admin, 'IM-CLIENT-ID': 'dave' } });
    expect(undo.body.result.mute).toEqual([]);
  });

  it('POST /roomPrefs/:id merges fields, returns {room, ...pref} and shows as pref on GET /rooms', async () => {
    const set = await t.request({ method: 'POST', url: '/roomPrefs/r2', headers: as('alice'), body: { tags: ['work', 'urgent'], tagColors: { work: '#ff8800' }, folder: 'f1', sticky: true } });
    expect(set.status).toBe(200);
    expect(set.body.result).toEqual({ room: 'r2', tags: ['work', 'urgent'], tagColors: { work: '#ff8800' }, folder: 'f1', hidden: false, sticky: true, muted: false });

    const merged = await t.request({ method: 'POST', url: '/roomPrefs/r2', headers: as('alice'), body: { hidden: true, muted: true, translation: { to: 'en' } } });
    expect(merged.body.result).toEqual({ room: 'r2', tags: ['work', 'urgent'], tagColors: { work: '#ff8800' }, folder: 'f1', hidden: true, sticky: true, muted: true, translation: { to: 'en' } });

    const r2 = await t.request({ method: 'GET', url: '/rooms/r2', headers: as('alice') });
    expect(r2.body.result.pref).toEqual({ tags: ['work', 'urgent'], tagColors: { work: '#ff8800' }, folder: 'f1', hidden: true, sticky: true, muted: true, translation: { to: 'en' } });
    expect(r2.body.result.muted).toBe(true);
    expect((await t.request({ method: 'GET', url: '/me', headers: as('alice') })).body.result.mute).toEqual(['r1', 'r2']);
    // muting through /me/mute keeps the other fields
    await t.request({ method: 'DELETE', url: '/me/mute/r2', headers: as('alice') });
    const after = await t.request({ method: 'GET', url: '/rooms/r2', headers: as('alice') });
    expect(after.body.result.pref).toMatchObject({ tags: ['work', 'urgent'], folder: 'f1', muted: false });

    const cleared = await t.request({ method: 'POST', url: '/roomPrefs/r2', headers: as('alice'), body: { folder: null, translation: null, hidden: false } });
    expect(cleared.body.result).toEqual({ room: 'r2', tags: ['work', 'urgent'], tagColors: { work: '#ff8800' }, hidden: false, sticky: true, muted: false });

    await t.request({ method: 'POST', url: '/roomPrefs/r3', headers: as('alice'), body: { tags: ['urgent'] } });
    const filtered = await t.request({ method: 'GET', url: '/rooms?pref=' + encodeURIComponent('{"tags":"work"}'), headers: as('alice') });
    expect(filtered.body.result.data.map((r: any) => r._id)).toEqual(['r2']);
    const urgent = await t.request({ method: 'GET', url: '/rooms?sort=_id&pref=' + encodeURIComponent('{"tags":"urgent"}'), headers: as('alice') });
    expect(urgent.body.result.data.map((r: any) => r._id)).toEqual(['r2', 'r3']);
    const bobView = await t.request({ method: 'GET', url: '/rooms?pref=' + encodeURIComponent('{"tags":"work"}'), headers: as('bob') });
    expect(bobView.body.result.totalCount).toBe(0); // personal tags are personal
  });

  it('POST /roomPrefs/:id/group/:tag keeps a separate preference per room-tag scope', async () => {
    const res = await t.request({ method: 'POST', url: '/roomPrefs/r1/group/team-a', headers: as('bob'), body: { folder: 'inbox', sticky: true } });
    expect(res.status).toBe(200);
    expect(res.body.result).toEqual({ room: 'r1', roomTag: 'team-a', tags: [], tagColors: {}, folder: 'inbox', hidden: false, sticky: true, muted: false });
    const again = await t.request({ method: 'POST', url: '/roomPrefs/r1/group/team-a', headers: as('bob'), body: { tags: ['x'] } });
    expect(again.body.result).toMatchObject({ folder: 'inbox', tags: ['x'] });
    const room = await t.request({ method: 'GET', url: '/rooms/r1', headers: as('bob') });
    expect(room.body.result.pref).toEqual({ tags: [], tagColors: {}, hidden: false, sticky: false, muted: false });
  });

  it('roomPrefs errors: bad fields 400, unknown room 404, non-member 403', async () => {
    const cases: Array<[unknown, string]> = [
      [{ tags: 'work' }, 'tags'],
      [{ tags: [''] }, 'tags'],
      [{ tags: ['x'.repeat(300)] }, 'tags'],
      [{ tagColors: { work: 'orange' } }, 'tagColors.work'],
      [{ tagColors: ['#fff'] }, 'tagColors'],
      [{ folder: 3 }, 'folder'],
      [{ hidden: 'yes' }, 'hidden'],
      [{ sticky: 1 }, 'sticky'],
      [{ muted: 'true' }, 'muted'],
      [{ translation: 'x'.repeat(5000) }, 'translation'],
    ];
    for (const [body, field] of cases) {
      const res = await t.request({ method: 'POST', url: '/roomPrefs/r1', headers: as('alice'), body });
      expect([JSON.stringify(body).slice(0, 40), res.status, res.body.error]).toEqual([JSON.stringify(body).slice(0, 40), 400, 'INVALID_REQUEST']);
      expect(res.body.message).toContain(field);
    }
    const missing = await t.request({ method: 'POST', url: '/roomPrefs/nope', headers: as('alice'), body: { sticky: true } });
    expect([missing.status, missing.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
    const outsider = await t.request({ method: 'POST', url: '/roomPrefs/r1', headers: as('dave'), body: { sticky: true } });
    expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const outsiderGroup = await t.request({ method: 'POST', url: '/roomPrefs/r1/group/work', headers: as('dave'), body: { sticky: true } });
    expect([outsiderGroup.status, outsiderGroup.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const noUser = await t.request({ method: 'POST', url: '/roomPrefs/r1', headers: admin, body: { sticky: true } });
    expect([noUser.status, noUser.body.error]).toEqual([400, 'INVALID_REQUEST']);
    // nothing was stored by the refused calls
    const r1 = await t.request({ method: 'GET', url: '/rooms/r1', headers: as('alice') });
    expect(r1.body.result.pref).toEqual({ tags: [], tagColors: {}, hidden: false, sticky: false, muted: true });
  });

  it('user preferences: GET /me/pref, POST /me/pref/:key (any JSON), DELETE /me/pref/:key', async () => {
    expect((await t.request({ method: 'GET', url: '/me/pref', headers: as('alice') })).body.result).toEqual([]);
    const meta = [{ key: 'f1', name: 'Work' }];
    const set = await t.request({ method: 'POST', url: '/me/pref/folders-meta', headers: as('alice'), body: meta });
    expect(set.status).toBe(200);
    expect(set.body.result).toEqual({ key: 'folders-meta', data: meta });
    await t.request({ method: 'POST', url: '/me/pref/blackList', headers: as('alice'), body: { children: [{ id: 'r9' }] } });
    await t.request({ method: 'POST', url: '/me/pref/counter', headers: as('alice'), body: 42 });
    await t.request({ method: 'POST', url: '/me/pref/label', headers: as('alice'), body: 'plain text' });
    const replaced = await t.request({ method: 'POST', url: '/me/pref/blackList', headers: as('alice'), body: { children: [] } });
    expect(replaced.body.result).toEqual({ key: 'blackList', data: { children: [] } });
    const list = await t.request({ method: 'GET', url: '/me/pref', headers: as('alice') });
    expect(list.body.result).toEqual([
      { key: 'blackList', data: { children: [] } },
      { key: 'counter', data: 42 },
      { key: 'folders-meta', data: meta },
      { key: 'label', data: 'plain text' },
    ]);
    expect((await t.request({ method: 'GET', url: '/me/pref', headers: as('bob') })).body.result).toEqual([]);
    const viaKey = await t.request({ method: 'GET', url: '/me/pref', headers: { ...admin, 'IM-CLIENT-ID': 'alice' } });
    expect(viaKey.body.result).toHaveLength(4);

    const del = await t.request({ method: 'DELETE', url: '/me/pref/counter', headers: as('alice') });
    expect(del.status).toBe(200);
    expect(del.body.result).toEqual({ key: 'counter', deleted: true });
    const gone = await t.request({ method: 'DELETE', url: '/me/pref/counter', headers: as('alice') });
    expect([gone.status, gone.body.error]).toEqual([404, 'PREF_NOT_FOUND']);
    const notBobs = await t.request({ method: 'DELETE', url: '/me/pref/label', headers: as('bob') });
    expect([notBobs.status, notBobs.body.error]).toEqual([404, 'PREF_NOT_FOUND']);
    expect((await t.request({ method: 'GET', url: '/me/pref', headers: as('alice') })).body.result.map((p: any) => p.key)).toEqual(['blackList', 'folders-meta', 'label']);
  });

  it('user preference errors: no body 400, over 64 KB 413, API key without IM-CLIENT-ID 400', async () => {
    const empty = await t.request({ method: 'POST', url: '/me/pref/x', headers: as('alice') });
    expect([empty.status, empty.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const big = await t.request({ method: 'POST', url: '/me/pref/x', headers: as('alice'), body: { blob: 'x'.repeat(70_000) } });
    expect([big.status, big.body.error]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    const justFits = await t.request({ method: 'POST', url: '/me/pref/x', headers: as('alice'), body: 'x'.repeat(60_000) });
    expect(justFits.status).toBe(200);
    await t.request({ method: 'DELETE', url: '/me/pref/x', headers: as('alice') });
    const longKey = await t.request({ method: 'POST', url: `/me/pref/${'k'.repeat(300)}`, headers: as('alice'), body: 1 });
    expect(longKey.status).toBe(400);
    for (const [method, url] of [['GET', '/me/pref'], ['POST', '/me/pref/x'], ['DELETE', '/me/pref/x']] as const) {
      const res = await t.request({ method, url, headers: admin, ...(method === 'POST' ? { body: 1 } : {}) });
      expect([method, res.status, res.body.error]).toEqual([method, 400, 'INVALID_REQUEST']);
    }
  });

  it('POST /rooms/:id/typing answers {message, room, sender}; members only; nothing stored', async () => {
    const res = await t.request({ method: 'POST', url: '/rooms/r1/typing', headers: as('bob'), body: { message: 'hi' } });
    expect(res.status).toBe(200);
    expect(res.body.result).toEqual({ message: 'hi', room: 'r1', sender: 'bob' });
    const bare = await t.request({ method: 'POST', url: '/rooms/r1/typing', headers: as('bob') });
    expect(bare.body.result).toEqual({ room: 'r1', sender: 'bob' });
    const outsider = await t.request({ method: 'POST', url: '/rooms/r1/typing', headers: as('dave'), body: { message: 'hi' } });
    expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const platformOutsider = await t.request({ method: 'POST', url: '/rooms/r1/typing', headers: { ...admin, 'IM-CLIENT-ID': 'dave' }, body: {} });
    expect([platformOutsider.status, platformOutsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const missing = await t.request({ method: 'POST', url: '/rooms/nope/typing', headers: as('bob'), body: {} });
    expect([missing.status, missing.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
    const badMessage = await t.request({ method: 'POST', url: '/rooms/r1/typing', headers: as('bob'), body: { message: { x: 1 } } });
    expect(badMessage.status).toBe(400);
    const count = await t.request({ method: 'GET', url: '/rooms/r1/count?timeInMS=0', headers: as('bob') });
    expect(count.body.result.count).toBe(0);
  });

  it('GET /me/badge sums unread over active rooms, exact after messages from several users and reads; roomTags is AND', async () => {
    expect(await badge('alice')).toBe(0);
    await send('r1', 'bob');
    const r1Second = await send('r1', 'bob');
    await send('r1', 'carol');
    await send('r2', 'bob');
    await send('r3', 'carol');
    await send('r3', 'carol');
    await send('r4', 'bob');
    for (let i = 0; i < 4; i++) await send('r5', 'bob');
    expect(await badge('alice', '?roomTags=archived')).toBe(4);
    const freeze = await t.request({ method: 'PUT', url: '/rooms/r5', headers: admin, body: { status: 0 } });
    expect(freeze.body.result.status).toBe(0);

    // alice: r1 3, r2 1, r3 2, r4 1 (r5's 4 are in a frozen room)
    expect(await badge('alice')).toBe(7);
    expect(await badge('alice', '?roomTags=work')).toBe(4);
    expect(await badge('alice', '?roomTags=work&roomTags=team-a')).toBe(3);
    expect(await badge('alice', '?roomTags=team-a&roomTags=work&roomTags=work')).toBe(3);
    expect(await badge('alice', '?roomTags=fun')).toBe(2);
    expect(await badge('alice', '?roomTags=work&roomTags=fun')).toBe(0);
    expect(await badge('alice', '?roomTags=archived')).toBe(0);
    expect(await badge('alice', '?roomTags=nosuch')).toBe(0);
    // bob: carol's message in r1 after his own; carol read everything by sending last (a sender's badge resets)
    expect(await badge('bob')).toBe(1);
    expect(await badge('carol')).toBe(0);
    expect(await badge('dave')).toBe(0);
    // muting does not hide unread (the spec mutes notifications only)
    expect((await t.request({ method: 'GET', url: '/rooms/r1', headers: as('alice') })).body.result.muted).toBe(true);

    const read = await t.request({ method: 'PUT', url: '/rooms/r1/lastRead', headers: as('alice'), body: { message: r1Second } });
    expect(read.body.result.badge).toBe(1);
    expect(await badge('alice')).toBe(5);
    expect(await badge('alice', '?roomTags=work')).toBe(2);
    const viaKey = await t.request({ method: 'GET', url: '/me/badge', headers: { ...admin, 'IM-CLIENT-ID': 'alice' } });
    expect(viaKey.body.result).toEqual({ badge: 5 });
  });

  it('GET /me/badge errors: empty or over-long tag 400 INVALID_ROOM_TAGS; API key without IM-CLIENT-ID 400', async () => {
    for (const q of ['?roomTags=', `?roomTags=work&roomTags=${'x'.repeat(300)}`]) {
      const res = await t.request({ method: 'GET', url: `/me/badge${q}`, headers: as('alice') });
      expect([res.status, res.body.error]).toEqual([400, 'INVALID_ROOM_TAGS']);
    }
    const noUser = await t.request({ method: 'GET', url: '/me/badge', headers: admin });
    expect([noUser.status, noUser.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('typing in a frozen room is 403 ROOM_FROZEN', async () => {
    const res = await t.request({ method: 'POST', url: '/rooms/r5/typing', headers: as('alice'), body: { message: 'x' } });
    expect([res.status, res.body.error]).toEqual([403, 'ROOM_FROZEN']);
  });

  it('POST /badges/byRoomTags: unread per tag, zeros for tags without rooms, every tag when none is asked', async () => {
    const some = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('alice'), body: { tags: ['work', 'fun', 'nosuch'] } });
    expect(some.status).toBe(200);
    expect(some.body.result).toEqual({ totalBadge: 5, data: { work: 2, fun: 2, nosuch: 0 } });
    const all = { totalBadge: 5, data: { fun: 2, 'team-a': 1, work: 2 } };
    expect((await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('alice'), body: { tags: [] } })).body.result).toEqual(all);
    expect((await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('alice'), body: {} })).body.result).toEqual(all);
    expect((await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('alice') })).body.result).toEqual(all);
    const bob = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('bob'), body: {} });
    expect(bob.body.result).toEqual({ totalBadge: 1, data: { 'team-a': 1, work: 1 } }); // r5 (archived) is frozen
    const carol = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('carol'), body: {} });
    expect(carol.body.result).toEqual({ totalBadge: 0, data: { fun: 0, 'team-a': 0, work: 0 } });
    const viaKey = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: { ...admin, 'IM-CLIENT-ID': 'bob' }, body: { tags: ['work'] } });
    expect(viaKey.body.result).toEqual({ totalBadge: 1, data: { work: 1 } });
    const dave = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('dave'), body: {} });
    expect(dave.body.result).toEqual({ totalBadge: 0, data: {} });

    for (const tags of ['work', [1], [''], ['x'.repeat(300)], { a: 1 }]) {
      const res = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: as('alice'), body: { tags } });
      expect([JSON.stringify(tags).slice(0, 20), res.status, res.body.error]).toEqual([JSON.stringify(tags).slice(0, 20), 400, 'INVALID_TAGS']);
    }
    const noUser = await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: admin, body: {} });
    expect([noUser.status, noUser.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('another application sees none of it, even for the same user id', async () => {
    const other = await t.server.services.apps.create({ id: 'other', name: 'Other' });
    const otherTok = await createUser(t, 'alice', other.apiKey);
    const h = userHeaders(other.clientKey, otherTok);
    expect((await t.request({ method: 'GET', url: '/me/badge', headers: h })).body.result).toEqual({ badge: 0 });
    expect((await t.request({ method: 'POST', url: '/badges/byRoomTags', headers: h, body: {} })).body.result).toEqual({ totalBadge: 0, data: {} });
    expect((await t.request({ method: 'GET', url: '/me/pref', headers: h })).body.result).toEqual([]);
    expect((await t.request({ method: 'GET', url: '/me', headers: h })).body.result.mute).toEqual([]);
    for (const [method, url] of [['POST', '/me/mute/r1'], ['POST', '/roomPrefs/r1'], ['POST', '/rooms/r1/typing']] as const) {
      const res = await t.request({ method, url, headers: h, body: {} });
      expect([url, res.status, res.body.error]).toEqual([url, 404, 'ROOM_NOT_FOUND']);
    }
    const del = await t.request({ method: 'DELETE', url: '/me/pref/label', headers: h });
    expect([del.status, del.body.error]).toEqual([404, 'PREF_NOT_FOUND']);
    // and the first application's alice is unchanged
    expect((await t.request({ method: 'GET', url: '/me/pref', headers: as('alice') })).body.result).toHaveLength(3);
  });

  it('each change emits exactly one domain event of its type; reads and refusals emit none', async () => {
    const events: DomainEvent[] = [];
    const off = t.server.services.bus.on((e) => events.push(e));
    const step = async (req: Parameters<TestServer['request']>[0], expected: unknown[]) => {
      events.length = 0;
      await t.request(req);
      expect(events, `${req.method} ${req.url}`).toEqual(expected);
    };
    const app = t.appId;
    try {
      await step({ method: 'POST', url: '/me/mute/r4', headers: as('bob') }, [{ type: 'roomPref.changed', appId: app, roomId: 'r4', userId: 'bob', scope: '' }]);
      await step({ method: 'DELETE', url: '/me/mute/r4', headers: as('bob') }, [{ type: 'roomPref.changed', appId: app, roomId: 'r4', userId: 'bob', scope: '' }]);
      await step({ method: 'POST', url: '/roomPrefs/r4', headers: as('bob'), body: { sticky: true } }, [{ type: 'roomPref.changed', appId: app, roomId: 'r4', userId: 'bob', scope: '' }]);
      await step({ method: 'POST', url: '/roomPrefs/r1/group/work', headers: as('carol'), body: { hidden: true } }, [{ type: 'roomPref.changed', appId: app, roomId: 'r1', userId: 'carol', scope: 'work' }]);
      await step({ method: 'POST', url: '/me/pref/k1', headers: as('bob'), body: { a: 1 } }, [{ type: 'userPref.changed', appId: app, userId: 'bob', key: 'k1', deleted: false }]);
      await step({ method: 'DELETE', url: '/me/pref/k1', headers: as('bob') }, [{ type: 'userPref.changed', appId: app, userId: 'bob', key: 'k1', deleted: true }]);
      await step({ method: 'POST', url: '/rooms/r4/typing', headers: as('bob'), body: { message: 'hey' } }, [{ type: 'typing', appId: app, roomId: 'r4', userId: 'bob', message: 'hey' }]);

      await step({ method: 'GET', url: '/me/pref', headers: as('bob') }, []);
      await step({ method: 'GET', url: '/me/badge', headers: as('bob') }, []);
      await step({ method: 'POST', url: '/badges/byRoomTags', headers: as('bob'), body: {} }, []);
      await step({ method: 'POST', url: '/me/mute/r3', headers: as('bob') }, []);
      await step({ method: 'POST', url: '/roomPrefs/r3', headers: as('bob'), body: { sticky: true } }, []);
      await step({ method: 'POST', url: '/roomPrefs/r4', headers: as('bob'), body: { sticky: 'yes' } }, []);
      await step({ method: 'DELETE', url: '/me/pref/k1', headers: as('bob') }, []);
      await step({ method: 'POST', url: '/rooms/r3/typing', headers: as('bob'), body: {} }, []);
    } finally {
      off();
    }
  });
});
