import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../src/events/bus.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('search, reactions and hidden messages (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  /** Message ids by label. */
  const m: Record<string, string> = {};

  const send = async (user: string, room: string, message: unknown, messageType = 'text') => {
    const res = await t.request({ method: 'POST', url: `/rooms/${room}/message`, headers: as(user), body: { message, messageType } });
    expect(res.status, res.raw).toBe(200);
    t.clock.advance(1000);
    return res.body.result._id as string;
  };
  const search = (headers: Record<string, string>, body: Record<string, unknown>) => t.request({ method: 'POST', url: '/search', headers, body });
  const query = (headers: Record<string, string>, q: unknown, extra = '') =>
    t.request({ method: 'GET', url: `/messages?q=${encodeURIComponent(typeof q === 'string' ? q : JSON.stringify(q))}${extra}`, headers });
  const ids = (res: { body: any }) => res.body.result.data.map((x: any) => x._id);
  const roomIds = (list: any[]) => list.map((r: any) => r._id);

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['alice', 'bob', 'carol']) tok[u] = await createUser(t, u);
    tok.dave = await createUser(t, 'dave', t.apiKey, { nickname: 'Dolores' });
    const rooms = [
      { _id: 'r1', name: 'Project Alpha', roomType: 'group', members: ['alice', 'bob'], roomTags: ['work', 'alpha'], cover: 'https://x/c.png', description: 'the alpha project' },
      { _id: 'r2', name: 'Random_chat 100%', roomType: 'group', members: ['alice', 'carol'], roomTags: ['fun'] },
      { _id: 'r3', name: 'Secret alpha', roomType: 'group', members: ['bob', 'carol'], roomTags: ['work'] },
      { _id: 'r4', name: 'Quiet', roomType: 'group', members: ['alice', 'dave'] },
    ];
    for (const body of rooms) expect((await t.request({ method: 'POST', url: '/rooms', headers: admin, body })).status).toBe(200);
    m.hello = await send('alice', 'r1', 'Hello World');
    m.again = await send('bob', 'r1', 'hello again');
    m.percent = await send('bob', 'r1', '100% sure');
    m.hundred = await send('alice', 'r1', '100 percent');
    m.snake = await send('alice', 'r1', 'snake_case');
    m.space = await send('alice', 'r1', 'snake case');
    m.encrypted = await send('alice', 'r1', 'hello-ciphertext', 'encrypted');
    m.object = await send('alice', 'r1', { text: 'hello object' }, 'template');
    m.recalled = await send('bob', 'r1', 'hello to be recalled');
    expect((await t.request({ method: 'POST', url: '/rooms/r1/message', headers: as('bob'), body: { _id: m.recalled, messageType: 'recall' } })).status).toBe(200);
    m.secret = await send('bob', 'r3', 'hello secret');
    m.carol = await send('carol', 'r2', 'HELLO from carol');
    m.quiet = await send('dave', 'r4', 'nothing to see');
    m.bang = await send('dave', 'r4', 'wow! C:\\temp');
  });
  afterAll(async () => t?.close());

  describe('POST /search', () => {
    it('messages: ids grouped by room (newest hit first), only the caller’s rooms, never encrypted, recalled or non-text messages', async () => {
      const res = await search(as('alice'), { type: ['messages'], keyword: 'hello' });
      expect(res.status).toBe(200);
      expect(res.body.result).toEqual({
        messages: [
          { room: { _id: 'r2', id: 'r2', name: 'Random_chat 100%', roomTags: ['fun'] }, messages: [m.carol] },
          {
            room: { _id: 'r1', id: 'r1', name: 'Project Alpha', cover: 'https://x/c.png', description: 'the alpha project', roomTags: ['work', 'alpha'] },
            messages: [m.again, m.hello],
          },
        ],
      });
      const bob = await search(as('bob'), { type: 'messages', keyword: 'hello' });
      expect(bob.body.result.messages.map((g: any) => [g.room._id, g.messages])).toEqual([
        ['r3', [m.secret]],
        ['r1', [m.again, m.hello]],
      ]);
    });

    it('keywords ignore case and match % and _ literally', async () => {
      const upper = await search(as('alice'), { type: 'messages', keyword: 'HeLLo' });
      expect(upper.body.result.messages.flatMap((g: any) => g.messages)).toEqual([m.carol, m.again, m.hello]);
      const percent = await search(as('alice'), { type: ['messages', 'roomName'], keyword: '0%' });
      expect(percent.body.result.messages.flatMap((g: any) => g.messages)).toEqual([m.percent]);
      expect(roomIds(percent.body.result.roomName)).toEqual(['r2']);
      const underscore = await search(as('alice'), { type: ['messages', 'roomName'], keyword: 'e_c' });
      expect(underscore.body.result.messages.flatMap((g: any) => g.messages)).toEqual([m.snake]);
      expect(underscore.body.result.roomName).toEqual([]);
      const hits = async (keyword: string) => (await search(as('alice'), { type: 'messages', keyword })).body.result.messages.flatMap((g: any) => g.messages);
      expect(await hits('!')).toEqual([m.bang]);
      expect(await hits('w! c:\\T')).toEqual([m.bang]);
      expect(await hits('\\')).toEqual([m.bang]);
      expect(await hits('wow!!')).toEqual([]);
      expect(await hits('%')).toEqual([m.percent]);
    });

    it('room and roomTags narrow the search; naming a room the caller is not in is refused', async () => {
      const one = await search(as('bob'), { type: 'messages', keyword: 'hello', room: 'r1' });
      expect(one.body.result.messages.map((g: any) => g.room._id)).toEqual(['r1']);
      const tagged = await search(as('bob'), { type: ['messages', 'roomName'], keyword: 'alpha', roomTags: ['work', 'alpha'] });
      expect(roomIds(tagged.body.result.roomName)).toEqual(['r1']);
      const work = await search(as('bob'), { type: 'messages', keyword: 'hello', roomTags: ['work'] });
      expect(work.body.result.messages.map((g: any) => g.room._id)).toEqual(['r3', 'r1']);
      const none = await search(as('bob'), { type: 'messages', keyword: 'hello', roomTags: ['work', 'fun'] });
      expect(none.body.result.messages).toEqual([]);
      const outsider = await search(as('alice'), { type: 'messages', keyword: 'hello', room: 'r3' });
      expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      const missing = await search(as('alice'), { type: 'messages', keyword: 'hello', room: 'nope' });
      expect([missing.status, missing.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
    });

    it('room types: roomName, roomMember (nickname or id, never the caller), roomTags; summaries only', async () => {
      const res = await search(as('alice'), { type: ['roomName', 'roomMember', 'roomTags'], keyword: 'ALPHA' });
      expect(res.body.result.roomName).toEqual([{ _id: 'r1', id: 'r1', name: 'Project Alpha', cover: 'https://x/c.png', description: 'the alpha project', roomTags: ['work', 'alpha'] }]);
      expect(res.body.result.roomMember).toEqual([]);
      expect(roomIds(res.body.result.roomTags)).toEqual(['r1']);
      expect(roomIds((await search(as('bob'), { type: 'roomName', keyword: 'alpha' })).body.result.roomName).sort()).toEqual(['r1', 'r3']);
      expect(roomIds((await search(as('alice'), { type: 'roomMember', keyword: 'dolo' })).body.result.roomMember)).toEqual(['r4']);
      expect(roomIds((await search(as('alice'), { type: 'roomMember', keyword: 'DAV' })).body.result.roomMember)).toEqual(['r4']);
      expect(roomIds((await search(as('alice'), { type: 'roomMember', keyword: 'car' })).body.result.roomMember)).toEqual(['r2']);
      expect((await search(as('alice'), { type: 'roomMember', keyword: 'alice' })).body.result.roomMember).toEqual([]);
      expect(roomIds((await search(as('bob'), { type: 'roomMember', keyword: 'ali' })).body.result.roomMember)).toEqual(['r1']);
      expect(roomIds((await search(as('bob'), { type: 'roomTags', keyword: 'WOR' })).body.result.roomTags).sort()).toEqual(['r1', 'r3']);
      expect(roomIds((await search(as('alice'), { type: 'roomTags', keyword: 'wor' })).body.result.roomTags)).toEqual(['r1']);
    });

    it('roomPrefTags and roomPrefFolder look at the caller’s own preferences', async () => {
      const pref = await t.request({ method: 'POST', url: '/roomPrefs/r2', headers: as('alice'), body: { tags: ['Favourites', 'x'], folder: 'Personal_stuff' } });
      expect(pref.status, pref.raw).toBe(200);
      const res = await search(as('alice'), { type: ['roomPrefTags', 'roomPrefFolder'], keyword: 'FAVOU' });
      expect(roomIds(res.body.result.roomPrefTags)).toEqual(['r2']);
      expect(res.body.result.roomPrefFolder).toEqual([]);
      expect(roomIds((await search(as('alice'), { type: 'roomPrefFolder', keyword: 'l_s' })).body.result.roomPrefFolder)).toEqual(['r2']);
      expect((await search(as('alice'), { type: 'roomPrefFolder', keyword: 'l s' })).body.result.roomPrefFolder).toEqual([]);
      expect((await search(as('carol'), { type: ['roomPrefTags', 'roomPrefFolder'], keyword: 'f' })).body.result).toEqual({ roomPrefTags: [], roomPrefFolder: [] });
    });

    it('every requested type gets a key; files is accepted and empty; limit caps each list', async () => {
      const all = await search(as('alice'), { type: ['messages', 'roomName', 'roomMember', 'roomTags', 'roomPrefTags', 'roomPrefFolder', 'files'], keyword: 'zzz' });
      expect(all.body.result).toEqual({ messages: [], roomName: [], roomMember: [], roomTags: [], roomPrefTags: [], roomPrefFolder: [], files: [] });
      const limited = await search(as('alice'), { type: 'messages', keyword: 'hello', limit: 2 });
      expect(limited.body.result.messages.flatMap((g: any) => g.messages)).toEqual([m.carol, m.again]);
    });

    it('INVALID_SEARCH_TYPE for unknown or missing types; keyword and limit are checked', async () => {
      for (const type of ['bogus', [], ['messages', 'bogus'], [1]]) {
        const res = await search(as('alice'), { type, keyword: 'hello' });
        expect([res.status, res.body.error], JSON.stringify(type)).toEqual([400, 'INVALID_SEARCH_TYPE']);
        expect(res.body.message).toMatch(/^Search type must include 'messages'/);
      }
      const missing = await search(as('alice'), { keyword: 'hello' });
      expect([missing.status, missing.body.error]).toEqual([400, 'INVALID_SEARCH_TYPE']);
      expect((await search(as('alice'), { type: 'messages', keyword: '' })).body.error).toBe('INVALID_REQUEST');
      expect((await search(as('alice'), { type: 'messages', keyword: 'x'.repeat(257) })).body.error).toBe('INVALID_REQUEST');
      expect((await search(as('alice'), { type: 'messages', keyword: 'x', limit: 201 })).body.error).toBe('INVALID_REQUEST');
    });

    it('the API key alone searches every room; with IM-CLIENT-ID only that user’s rooms', async () => {
      const all = await search(admin, { type: ['messages', 'roomName'], keyword: 'hello' });
      expect(all.body.result.messages.map((g: any) => g.room._id)).toEqual(['r2', 'r3', 'r1']);
      const asAlice = await search({ ...admin, 'IM-CLIENT-ID': 'alice' }, { type: 'messages', keyword: 'hello' });
      expect(asAlice.body.result.messages.map((g: any) => g.room._id)).toEqual(['r2', 'r1']);
      const prefs = await search(admin, { type: ['roomPrefTags'], keyword: 'fav' });
      expect(prefs.body.result.roomPrefTags).toEqual([]);
    });

    it('applications are isolated', async () => {
      const other = await t.server.services.apps.create({ id: 'other-search', name: 'Other' });
      const otherAdmin = { 'IM-API-KEY': other.apiKey };
      const ozzy = await createUser(t, 'alice', other.apiKey);
      await t.request({ method: 'POST', url: '/rooms', headers: otherAdmin, body: { _id: 'r1', name: 'Other alpha', members: ['alice'] } });
      const sent = await t.request({ method: 'POST', url: '/rooms/r1/message', headers: userHeaders(other.clientKey, ozzy), body: { message: 'hello elsewhere', messageType: 'text' } });
      expect(sent.status).toBe(200);
      const theirs = await search(otherAdmin, { type: ['messages', 'roomName'], keyword: 'hello' });
      expect(theirs.body.result.messages).toEqual([{ room: { _id: 'r1', id: 'r1', name: 'Other alpha', roomTags: [] }, messages: [sent.body.result._id] }]);
      const ours = await search(as('alice'), { type: ['messages', 'roomName'], keyword: 'elsewhere' });
      expect(ours.body.result).toEqual({ messages: [], roomName: [] });
      expect((await search(as('alice'), { type: 'roomName', keyword: 'other' })).body.result.roomName).toEqual([]);
      const q = await query(otherAdmin, {});
      expect(ids(q)).toEqual([sent.body.result._id]);
    });
  });

  describe('POST /messages/search and GET /messages', () => {
    it('POST /messages/search: whole messages of the caller’s rooms, newest first, with totalCount', async () => {
      const res = await t.request({ method: 'POST', url: '/messages/search', headers: as('alice'), body: { message: 'HELLO' } });
      expect(res.status).toBe(200);
      expect(res.body.result.totalCount).toBe(3);
      expect(ids(res)).toEqual([m.carol, m.again, m.hello]);
      expect(res.body.result.data[0]).toMatchObject({ _id: m.carol, room: 'r2', message: 'HELLO from carol', messageType: 'text', sender: { _id: 'carol' }, reactions: [], reactionCount: 0 });
      const one = await t.request({ method: 'POST', url: '/messages/search', headers: as('alice'), body: { message: 'hello', limit: 1 } });
      expect([one.body.result.totalCount, ids(one)]).toEqual([3, [m.carol]]);
      const underscore = await t.request({ method: 'POST', url: '/messages/search', headers: as('alice'), body: { message: '_' } });
      expect(ids(underscore)).toEqual([m.snake]);
      const bad = await t.request({ method: 'POST', url: '/messages/search', headers: as('alice'), body: {} });
      expect(bad.status).toBe(400);
    });

    it('GET /messages: room, sender, messageType and message filters, restricted to the caller’s rooms', async () => {
      const r1 = await query(as('alice'), { room: 'r1' });
      expect(r1.body.result.totalCount).toBe(9);
      expect(ids(r1)[0]).toBe(m.recalled);
      expect(ids(await query(as('alice'), { room: 'r1' }, '&limit=2'))).toEqual([m.recalled, m.object]);
      expect(ids(await query(as('alice'), { room: { $in: ['r2', 'r4'] } }))).toEqual([m.bang, m.quiet, m.carol]);
      expect(ids(await query(as('alice'), { sender: 'bob' }))).toEqual([m.recalled, m.percent, m.again]);
      expect(ids(await query(as('bob'), { sender: { $in: ['bob'] }, messageType: 'text' }))).toEqual([m.secret, m.percent, m.again]);
      expect(ids(await query(as('alice'), { messageType: { $in: ['encrypted', 'template'] } }))).toEqual([m.object, m.encrypted]);
      expect(ids(await query(as('alice'), { message: '100% sure' }))).toEqual([m.percent]);
      expect(ids(await query(as('alice'), { message: { $eq: '100 percent' } }))).toEqual([m.hundred]);
      expect(ids(await query(as('alice'), { message: { $regex: 'hello', $options: 'i' } }))).toEqual([m.carol, m.again, m.hello]);
      expect(ids(await query(as('alice'), { message: { $regex: 'Hello' } }))).toEqual([m.hello]);
      expect(ids(await query(as('alice'), { message: { $regex: '^hello' } }))).toEqual([m.again]);
      expect(ids(await query(as('alice'), { message: { $regex: 'e_c' } }))).toEqual([m.snake]);
      expect(ids(await query(as('alice'), { message: { $regex: 'ke.c' } }))).toEqual([m.space, m.snake]);
      expect(ids(await query(as('alice'), { message: { $regex: '^100\\% s.*e$' } }))).toEqual([m.percent]);
    });

    it('GET /messages: the API key alone reads every room; a user never reaches rooms they are not in', async () => {
      expect(ids(await query(as('alice'), { message: { $regex: 'secret' } }))).toEqual([]);
      const named = await query(as('alice'), { room: 'r3' });
      expect([named.status, named.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      const some = await query(as('alice'), { room: { $in: ['r1', 'r3'] } });
      expect(some.status).toBe(403);
      expect(ids(await query(admin, { message: { $regex: 'secret' } }))).toEqual([m.secret]);
      expect(ids(await query(admin, { room: 'r3' }))).toEqual([m.secret]);
      expect(ids(await query({ ...admin, 'IM-CLIENT-ID': 'alice' }, { message: { $regex: 'secret' } }))).toEqual([]);
      const noQ = await t.request({ method: 'GET', url: '/messages', headers: as('carol') });
      expect(noQ.body.result.totalCount).toBe(2);
    });

    it('GET /messages: INVALID_QUERY for anything else', async () => {
      for (const q of ['not json', '[1]', { roomTags: 'x' }, { room: 5 }, { room: { $nin: ['r1'] } }, { message: { $regex: '(a|b)' } }, { message: { $regex: 'a+' } }, { message: { $regex: '\\d' } }, { message: { $regex: 'a', $options: 'm' } }, { message: 5 }]) {
        const res = await query(as('alice'), q);
        expect([res.status, res.body.error], JSON.stringify(q)).toEqual([400, 'INVALID_QUERY']);
        expect(res.body.message).toMatch(/^Invalid query: /);
      }
    });
  });

  describe('reactions', () => {
    it('POST adds the caller’s reaction once; DELETE removes one or all of the caller’s; shapes as in history', async () => {
      const react = (u: string, reaction: string, id = m.again) => t.request({ method: 'POST', url: `/messages/${id}/reaction`, headers: as(u), body: { reaction } });
      const first = await react('alice', '👍');
      expect(first.status).toBe(200);
      expect(first.body.result).toMatchObject({ _id: m.again, room: 'r1', message: 'hello again', reactions: [{ client: 'alice', reaction: '👍' }], reactionCount: 1 });
      const again = await react('alice', '👍');
      expect(again.body.result.reactions).toEqual([{ client: 'alice', reaction: '👍' }]);
      await react('bob', '👍');
      t.clock.advance(10);
      const heart = await react('alice', '❤️');
      expect(heart.body.result.reactions).toEqual([
        { client: 'alice', reaction: '👍' },
        { client: 'bob', reaction: '👍' },
        { client: 'alice', reaction: '❤️' },
      ]);
      expect(heart.body.result.reactionCount).toBe(3);
      expect(heart.body.result.updatedAtMS).toBe(t.clock.now());

      const history = await t.request({ method: 'GET', url: '/rooms/r1/messages/v3?limit=50', headers: as('bob') });
      expect(history.body.result.data.find((x: any) => x._id === m.again).reactionCount).toBe(3);

      const one = await t.request({ method: 'DELETE', url: `/messages/${m.again}/reaction?reaction=${encodeURIComponent('👍')}`, headers: as('alice') });
      expect(one.body.result.reactions).toEqual([
        { client: 'bob', reaction: '👍' },
        { client: 'alice', reaction: '❤️' },
      ]);
      await react('alice', '😀');
      const viaBody = await t.request({ method: 'DELETE', url: `/messages/${m.again}/reaction`, headers: as('alice'), body: { reaction: '😀' } });
      expect(viaBody.body.result.reactionCount).toBe(2);
      const all = await t.request({ method: 'DELETE', url: `/messages/${m.again}/reaction`, headers: as('alice') });
      expect(all.status).toBe(200);
      expect(all.body.result.reactions).toEqual([{ client: 'bob', reaction: '👍' }]);
      expect(all.body.result.reactionCount).toBe(1);
    });

    it('only members react; unknown messages are 404; reactions are 1-64 characters; a user is required', async () => {
      const outsider = await t.request({ method: 'POST', url: `/messages/${m.again}/reaction`, headers: as('carol'), body: { reaction: '👍' } });
      expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      const asOutsider = await t.request({ method: 'POST', url: `/messages/${m.again}/reaction`, headers: { ...admin, 'IM-CLIENT-ID': 'carol' }, body: { reaction: '👍' } });
      expect([asOutsider.status, asOutsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      const asMember = await t.request({ method: 'POST', url: `/messages/${m.again}/reaction`, headers: { ...admin, 'IM-CLIENT-ID': 'alice' }, body: { reaction: '🎉' } });
      expect(asMember.body.result.reactions).toContainEqual({ client: 'alice', reaction: '🎉' });
      const missing = await t.request({ method: 'POST', url: `/messages/${'0'.repeat(24)}/reaction`, headers: as('alice'), body: { reaction: '👍' } });
      expect([missing.status, missing.body.error]).toEqual([404, 'MESSAGE_NOT_FOUND']);
      const long = await t.request({ method: 'POST', url: `/messages/${m.again}/reaction`, headers: as('alice'), body: { reaction: 'x'.repeat(65) } });
      expect([long.status, long.body.error]).toEqual([400, 'INVALID_REQUEST']);
      const empty = await t.request({ method: 'POST', url: `/messages/${m.again}/reaction`, headers: as('alice'), body: { reaction: '' } });
      expect(empty.status).toBe(400);
      const noUser = await t.request({ method: 'POST', url: `/messages/${m.again}/reaction`, headers: admin, body: { reaction: '👍' } });
      expect(noUser.status).toBe(400);
    });
  });

  describe('messages hidden for oneself', () => {
    it('POST /messages/user-delete hides for the caller only: in v3 userDeletedIDs, GET /messages/user-delete and out of search', async () => {
      const res = await t.request({ method: 'POST', url: '/messages/user-delete', headers: as('alice'), body: { room: 'r1', messages: [m.hello, m.hello] } });
      expect(res.status).toBe(200);
      expect(res.body.result).toEqual({ totalCount: 1, data: [m.hello] });
      const mine = await t.request({ method: 'GET', url: '/rooms/r1/messages/v3', headers: as('alice') });
      expect(mine.body.result.userDeletedIDs).toEqual([m.hello]);
      const bobs = await t.request({ method: 'GET', url: '/rooms/r1/messages/v3', headers: as('bob') });
      expect(bobs.body.result.userDeletedIDs).toEqual([]);
      expect((await t.request({ method: 'GET', url: '/messages/user-delete?room=r1', headers: as('alice') })).body.result).toEqual({ totalCount: 1, data: [m.hello] });
      expect((await t.request({ method: 'GET', url: '/messages/user-delete', headers: as('alice') })).body.result).toEqual({ totalCount: 1, data: [m.hello] });
      expect((await t.request({ method: 'GET', url: '/messages/user-delete', headers: as('bob') })).body.result).toEqual({ totalCount: 0, data: [] });

      const found = await search(as('alice'), { type: 'messages', keyword: 'hello', room: 'r1' });
      expect(found.body.result.messages[0].messages).toEqual([m.again]);
      const stillFound = await search(as('bob'), { type: 'messages', keyword: 'hello', room: 'r1' });
      expect(stillFound.body.result.messages[0].messages).toEqual([m.again, m.hello]);
      expect(ids(await query(as('alice'), { room: 'r1', sender: 'alice', messageType: 'text' }))).not.toContain(m.hello);
    });

    it('ids must be messages of the room (404 MESSAGE_NOT_FOUND); members only', async () => {
      const otherRoom = await t.request({ method: 'POST', url: '/messages/user-delete', headers: as('alice'), body: { room: 'r1', messages: [m.again, m.carol] } });
      expect([otherRoom.status, otherRoom.body.error]).toEqual([404, 'MESSAGE_NOT_FOUND']);
      expect(otherRoom.body.message).toContain(m.carol);
      const none = await t.request({ method: 'POST', url: '/messages/user-delete', headers: as('alice'), body: { room: 'r1', messages: ['0'.repeat(24)] } });
      expect([none.status, none.body.error]).toEqual([404, 'MESSAGE_NOT_FOUND']);
      expect((await t.request({ method: 'GET', url: '/messages/user-delete?room=r1', headers: as('alice') })).body.result.data).toEqual([m.hello]);
      const outsider = await t.request({ method: 'POST', url: '/messages/user-delete', headers: as('carol'), body: { room: 'r1', messages: [m.again] } });
      expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
      const outsiderAll = await t.request({ method: 'POST', url: '/messages/user-delete/all-in-room', headers: as('carol'), body: { room: 'r1' } });
      expect(outsiderAll.status).toBe(403);
      const outsiderList = await t.request({ method: 'GET', url: '/messages/user-delete?room=r1', headers: as('carol') });
      expect(outsiderList.status).toBe(403);
      const empty = await t.request({ method: 'POST', url: '/messages/user-delete', headers: as('alice'), body: { room: 'r1', messages: [] } });
      expect(empty.status).toBe(400);
    });

    it('POST /messages/user-delete/all-in-room hides every message of the room for the caller', async () => {
      const res = await t.request({ method: 'POST', url: '/messages/user-delete/all-in-room', headers: as('carol'), body: { room: 'r2' } });
      expect(res.body.result).toEqual({ totalCount: 1, data: [m.carol] });
      expect((await t.request({ method: 'GET', url: '/rooms/r2/messages/v3', headers: as('carol') })).body.result.userDeletedIDs).toEqual([m.carol]);
      expect((await t.request({ method: 'GET', url: '/rooms/r2/messages/v3', headers: as('alice') })).body.result.userDeletedIDs).toEqual([]);
    });
  });

  it('events: exactly one per change, none for a repeat', async () => {
    const events: DomainEvent[] = [];
    const off = t.server.services.bus.on((e) => events.push(e));
    try {
      const step = async (req: Parameters<TestServer['request']>[0]) => {
        events.length = 0;
        const res = await t.request(req);
        expect(res.status, res.raw).toBe(200);
        return [...events];
      };
      const react = { method: 'POST', url: `/messages/${m.percent}/reaction`, headers: as('bob'), body: { reaction: '🔥' } };
      expect(await step(react)).toEqual([{ type: 'message.updated', appId: t.appId, roomId: 'r1', messageId: m.percent, actorId: 'bob', change: 'reaction' }]);
      expect(await step(react)).toEqual([]);
      const unreact = { method: 'DELETE', url: `/messages/${m.percent}/reaction`, headers: as('bob') };
      expect(await step(unreact)).toEqual([{ type: 'message.updated', appId: t.appId, roomId: 'r1', messageId: m.percent, actorId: 'bob', change: 'reaction' }]);
      expect(await step(unreact)).toEqual([]);

      const hide = { method: 'POST', url: '/messages/user-delete', headers: as('bob'), body: { room: 'r1', messages: [m.percent, m.snake] } };
      expect(await step(hide)).toEqual([{ type: 'messages.userDeleted', appId: t.appId, roomId: 'r1', userId: 'bob', messageIds: [m.percent, m.snake] }]);
      expect(await step(hide)).toEqual([]);
      const hideAll = { method: 'POST', url: '/messages/user-delete/all-in-room', headers: as('bob'), body: { room: 'r1' } };
      expect(await step(hideAll)).toEqual([{ type: 'messages.userDeleted', appId: t.appId, roomId: 'r1', userId: 'bob', messageIds: 'all' }]);
      expect(await step(hideAll)).toEqual([]);
      expect(await step({ method: 'POST', url: '/search', headers: as('bob'), body: { type: 'messages', keyword: 'x' } })).toEqual([]);
    } finally {
      off();
    }
  });
});
