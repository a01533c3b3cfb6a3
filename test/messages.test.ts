import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../src/events/bus.js';
import { sql } from 'kysely';
import { createUser, DIALECTS, type Res, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('messages (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  const send = (u: string, room: string, body: Record<string, unknown>) => t.request({ method: 'POST', url: `/rooms/${room}/message`, headers: as(u), body });
  const v3 = (u: string, room: string, qs = '') => t.request({ method: 'GET', url: `/rooms/${room}/messages/v3${qs}`, headers: as(u) });

  beforeAll(async () => {
    t = await startTestServer(dialect, { maxMessageBytes: 4096 });
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['ann', 'ben', 'cat', 'dan', 'out']) tok[u] = await createUser(t, u);
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'chat', members: ['ann', 'ben', 'cat', 'dan'], owner: 'ann' } });
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'empty', members: ['ann'] } });
  });
  afterAll(async () => t?.close());

  it('send: any JSON message and unknown fields are stored and returned as sent; the sender is populated', async () => {
    const res = await send('ann', 'chat', { messageType: 'location', message: { lat: 25.03, lng: 121.56 }, latitude: 25.03, extra: { a: [1, 2] }, customThing: 'kept', mentions: ['ben'] });
    expect(res.status).toBe(200);
    const m = res.body.result;
    expect(m).toMatchObject({ room: 'chat', messageType: 'location', message: { lat: 25.03, lng: 121.56 }, latitude: 25.03, extra: { a: [1, 2] }, customThing: 'kept', mentions: ['ben'], appID: 'default', pinned: false, reactions: [], reactionCount: 0 });
    expect(m._id).toMatch(/^[0-9a-f]{24}$/);
    expect(m.id).toBe(m._id);
    expect(m.sender).toMatchObject({ _id: 'ann', id: 'ann', nickname: 'ann', isRobot: false });
    for (const k of ['messageTimeMS', 'createdAtMS', 'updatedAtMS']) expect(m[k]).toBe(t.clock.now());
    expect(m.createdAt).toBe(new Date(t.clock.now()).toISOString());
    const back = await v3('ben', 'chat', '?limit=1');
    expect(back.body.result.data[0]).toEqual(m);
  });

  it('message ids are strictly increasing in send order, even within one millisecond', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await send('ben', 'chat', { messageType: 'text', message: `n${i}` })).body.result._id);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('edit keeps the stored type and sets editedAt (Vue sends only {_id, message}); only the sender or a manager may edit', async () => {
    const sent = (await send('cat', 'chat', { messageType: 'text', message: 'typo', extra: { x: 1 } })).body.result;
    t.clock.advance(5000);
    const edited = await send('cat', 'chat', { _id: sent._id, message: 'fixed' });
    expect(edited.body.result).toMatchObject({ _id: sent._id, messageType: 'text', message: 'fixed', extra: { x: 1 }, createdAtMS: sent.createdAtMS, updatedAtMS: t.clock.now() });
    expect(edited.body.result.editedAtMS).toBe(t.clock.now());
    const byOther = await send('dan', 'chat', { _id: sent._id, message: 'mine now' });
    expect([byOther.status, byOther.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    const byOwner = await send('ann', 'chat', { _id: sent._id, message: 'moderated' });
    expect(byOwner.status).toBe(200);
    const unknown = await send('cat', 'chat', { _id: 'aaaaaaaaaaaaaaaaaaaaaaaa', message: 'x' });
    expect([unknown.status, unknown.body.error]).toEqual([404, 'MESSAGE_NOT_FOUND']);
  });

  it('recall empties the message for everyone; recalled messages cannot be edited', async () => {
    const sent = (await send('dan', 'chat', { messageType: 'image', message: 'pic', originalUrl: 'http://x/y.png' })).body.result;
    const denied = await send('ben', 'chat', { _id: sent._id, messageType: 'recall' });
    expect(denied.status).toBe(403);
    const rec = await send('dan', 'chat', { _id: sent._id, messageType: 'recall' });
    expect(rec.body.result).toMatchObject({ _id: sent._id, messageType: 'recall', message: '', sender: { _id: 'dan' } });
    expect(rec.body.result.originalUrl).toBeUndefined();
    const edit = await send('dan', 'chat', { _id: sent._id, message: 'back' });
    expect(edit.status).toBe(400);
    const missingId = await send('dan', 'chat', { messageType: 'recall' });
    expect(missingId.status).toBe(400);
  });

  it('reply ids come back as the populated message', async () => {
    const first = (await send('ann', 'chat', { messageType: 'text', message: 'question?' })).body.result;
    const reply = await send('ben', 'chat', { messageType: 'text', message: 'answer', reply: first._id });
    expect(reply.body.result.reply).toMatchObject({ _id: first._id, message: 'question?', sender: { _id: 'ann' } });
    const bad = await send('ben', 'chat', { messageType: 'text', message: 'x', reply: 'bbbbbbbbbbbbbbbbbbbbbbbb' });
    expect([bad.status, bad.body.error]).toEqual([404, 'MESSAGE_NOT_FOUND']);
  });

  it('non-members cannot send or read; the admin sends as anyone with POST /messages', async () => {
    expect((await send('out', 'chat', { messageType: 'text', message: 'hi' })).body.error).toBe('NOT_ROOM_MEMBER');
    expect((await v3('out', 'chat')).status).toBe(403);
    const byUserKey = await t.request({ method: 'POST', url: '/messages', headers: as('ann'), body: { room: 'chat', sender: 'ann', messageType: 'text', message: 'x' } });
    expect(byUserKey.status).toBe(403);
    const sys = await t.request({ method: 'POST', url: '/messages', headers: admin, body: { room: 'chat', sender: 'system', messageType: 'announcement', message: 'Welcome' } });
    expect(sys.status).toBe(200);
    expect(sys.body.result).toMatchObject({ room: 'chat', sender: 'system', messageType: 'announcement', message: 'Welcome', appID: 'default' });
    const shown = await v3('ann', 'chat', '?limit=1');
    expect(shown.body.result.data[0].sender).toMatchObject({ _id: 'system' });
    const noRoom = await t.request({ method: 'POST', url: '/messages', headers: admin, body: { room: 'nope', sender: 'ann', messageType: 'text', message: 'x' } });
    expect([noRoom.status, noRoom.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
  });

  it('limits: message size 413 MESSAGE_TOO_LARGE, page size 400; nothing is stored', async () => {
    const before = (await v3('ann', 'chat', '?limit=1')).body.result.totalCount;
    const big = await send('ann', 'chat', { messageType: 'text', message: 'x'.repeat(5000) });
    expect([big.status, big.body.error]).toEqual([413, 'MESSAGE_TOO_LARGE']);
    const bigFields = await send('ann', 'chat', { messageType: 'text', message: 'x', extra: 'y'.repeat(5000) });
    expect(bigFields.status).toBe(413);
    const page = await v3('ann', 'chat', '?limit=500');
    expect(page.status).toBe(400);
    expect(page.body.message).toContain('limit');
    expect((await v3('ann', 'chat', '?limit=1')).body.result.totalCount).toBe(before);
    const wrongType = await send('ann', 'chat', { messageType: 7, message: 'x' });
    expect(wrongType.status).toBe(400);
  });

  it('history v3: empty room, first and last page, beforeMessage/afterMessage anchors, sortOrder, afterTime', async () => {
    const empty = await v3('ann', 'empty');
    expect(empty.body.result).toEqual({ totalCount: 0, data: [], userDeletedIDs: [] });

    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'hist', members: ['ann', 'ben'] } });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      t.clock.advance(1);
      ids.push((await send(i % 2 ? 'ben' : 'ann', 'hist', { messageType: 'text', message: `m${i}` })).body.result._id);
    }
    const first = await v3('ann', 'hist', '?limit=3');
    expect(first.body.result.totalCount).toBe(7);
    expect(first.body.result.data.map((m: any) => m.message)).toEqual(['m6', 'm5', 'm4']);
    // anchored pages include the anchor as element 0 (realtime spec §7: Vue drops it, Flutter de-duplicates)
    const second = await v3('ann', 'hist', `?limit=3&beforeMessage=${ids[4]}`);
    expect(second.body.result.data.map((m: any) => m.message)).toEqual(['m4', 'm3', 'm2']);
    const last = await v3('ann', 'hist', `?limit=3&beforeMessage=${ids[1]}`);
    expect(last.body.result.data.map((m: any) => m.message)).toEqual(['m1', 'm0']);
    const oldest = await v3('ann', 'hist', `?limit=3&beforeMessage=${ids[0]}`);
    expect(oldest.body.result.data.map((m: any) => m.message)).toEqual(['m0']);

    const after = await v3('ann', 'hist', `?limit=3&afterMessage=${ids[2]}&sortOrder=asc`);
    expect(after.body.result.data.map((m: any) => m.message)).toEqual(['m2', 'm3', 'm4']);
    const afterDesc = await v3('ann', 'hist', `?limit=3&afterMessage=${ids[2]}`);
    expect(afterDesc.body.result.data.map((m: any) => m.message)).toEqual(['m4', 'm3', 'm2']);
    const tail = await v3('ann', 'hist', `?afterMessage=${ids[6]}`);
    expect(tail.body.result.data.map((m: any) => m.message)).toEqual(['m6']);
    const asc = await v3('ann', 'hist', '?limit=2&sortOrder=asc');
    expect(asc.body.result.data.map((m: any) => m.message)).toEqual(['m6', 'm5'].reverse());

    const m3 = (await v3('ann', 'hist', `?limit=1&afterMessage=${ids[3]}`)).body.result.data[0];
    expect(m3.message).toBe('m3');
    const sinceTime = await v3('ann', 'hist', `?afterTime=${m3.updatedAtMS}&sortOrder=asc`);
    expect(sinceTime.body.result.data.map((m: any) => m.message)).toEqual(['m4', 'm5', 'm6']);
    const sinceIso = await v3('ann', 'hist', `?afterTime=${encodeURIComponent(new Date(m3.updatedAtMS).toISOString())}&sortOrder=asc`);
    expect(sinceIso.body.result.data).toHaveLength(3);
    expect((await v3('ann', 'hist', '?beforeMessage=nope')).status).toBe(400);
    expect((await v3('ann', 'hist', '?afterTime=soon')).status).toBe(400);

    const legacy = await t.request({ method: 'GET', url: `/rooms/hist/messages?limit=2&beforeMessage=${ids[6]}`, headers: as('ben') });
    expect(legacy.body.result).toMatchObject({ totalCount: 7 });
    expect(legacy.body.result.data.map((m: any) => m.message)).toEqual(['m5', 'm4']);

    const around = await t.request({ method: 'GET', url: `/rooms/hist/messages/${ids[3]}?before=2&after=1`, headers: as('ben') });
    expect(around.body.result.data.map((m: any) => m.message)).toEqual(['m1', 'm2', 'm3', 'm4']);
    const edge = await t.request({ method: 'GET', url: `/rooms/hist/messages/${ids[0]}?before=5&after=0`, headers: as('ben') });
    expect(edge.body.result.data.map((m: any) => m.message)).toEqual(['m0']);
    const wrongRoom = await t.request({ method: 'GET', url: `/rooms/chat/messages/${ids[0]}`, headers: as('ann') });
    expect(wrongRoom.status).toBe(404);
  });

  it('afterTime on updatedAt finds the messages changed since as well as those sent since, in id order, limit and anchors kept', async () => {
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'sync', members: ['ann', 'ben'] } });
    const ids: string[] = [];
    const sendNext = async (i: number) => {
      t.clock.advance(700); // crosses second boundaries: the id range is taken from seconds and milliseconds
      ids.push((await send(i % 2 ? 'ben' : 'ann', 'sync', { messageType: 'text', message: `s${i}` })).body.result._id);
    };
    for (let i = 0; i < 4; i++) await sendNext(i);
    const since = t.clock.now();
    t.clock.advance(1);
    expect((await send('ann', 'sync', { _id: ids[0], message: 's0 edited' })).status).toBe(200);
    t.clock.advance(1);
    expect((await t.request({ method: 'POST', url: `/messages/${ids[2]}/pin`, headers: admin })).status).toBe(200);
    for (let i = 4; i < 6; i++) await sendNext(i);
    const names = (r: Res) => r.body.result.data.map((m: any) => m.message);

    expect(names(await v3('ann', 'sync', `?afterTime=${since}&sortOrder=asc`))).toEqual(['s0 edited', 's2', 's4', 's5']);
    expect(names(await v3('ann', 'sync', `?afterTime=${since}&sortOrder=asc&limit=3`))).toEqual(['s0 edited', 's2', 's4']);
    // (a forward query takes the first ones after T; sortOrder only orders the page)
    expect(names(await v3('ann', 'sync', `?afterTime=${since}&sortOrder=desc&limit=3`))).toEqual(['s4', 's2', 's0 edited']);
    expect(names(await v3('ann', 'sync', `?afterTime=${since}&afterMessage=${ids[1]}&sortOrder=asc&limit=2`))).toEqual(['s2', 's4']);
    expect(names(await v3('ann', 'sync', `?afterTime=${since}&beforeMessage=${ids[4]}&sortOrder=asc`))).toEqual(['s0 edited', 's2', 's4']);
    // Strictly after: the time of the last send leaves nothing; one millisecond before it, that message.
    expect(names(await v3('ann', 'sync', `?afterTime=${t.clock.now()}`))).toEqual([]);
    expect(names(await v3('ann', 'sync', `?afterTime=${t.clock.now() - 1}`))).toEqual(['s5']);
    // createdAt and messageTime ignore changes.
    expect(names(await v3('ann', 'sync', `?afterTime=${since}&timeRangeField=createdAt&sortOrder=asc`))).toEqual(['s4', 's5']);
    expect(names(await v3('ann', 'sync', `?afterTime=${since}&timeRangeField=messageTime&sortOrder=asc`))).toEqual(['s4', 's5']);

    // Each range is an index search, not a scan of the room: the id range, and the partial index of changed messages.
    if (dialect === 'sqlite') {
      const plan = async (where: string) =>
        (await sql.raw<{ detail: string }>(`explain query plan select * from messages where app_id = 'a' and room_id = 'r' and updated_at > 5 and ${where} order by id limit 20`).execute(t.server.store.db)).rows.map((r) => r.detail).join('; ');
      expect(await plan(`id >= '0'`)).toMatch(/SEARCH messages USING INDEX messages_room_id \(app_id=\? AND room_id=\? AND id>\?\)/);
      expect(await plan('updated_at <> created_at')).toMatch(/SEARCH messages USING INDEX messages_room_edited \(app_id=\? AND room_id=\? AND updated_at>\?\)/);
    }
  });

  it('unread badges: exact under concurrent sends from several users; lastRead resets; GET /rooms shows unread', async () => {
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'busy', members: ['ann', 'ben', 'cat', 'dan'] } });
    const senders = ['ben', 'cat', 'dan'];
    const perSender = 15;
    await Promise.all(senders.flatMap((u) => Array.from({ length: perSender }, (_, i) => send(u, 'busy', { messageType: 'text', message: `${u}${i}` }))));
    const room = (u: string) => t.request({ method: 'GET', url: '/rooms/busy', headers: as(u) });
    expect((await room('ann')).body.result.unread).toBe(45);
    // each sender read their own messages when sending; what is left is what others sent after their last send
    const props = (await room('ann')).body.result.memberProperties;
    expect(props.find((p: any) => p.client === 'ann').badge).toBe(45);
    const total = await v3('ann', 'busy', '?limit=200');
    expect(total.body.result.totalCount).toBe(45);

    const newest = total.body.result.data[0]._id;
    const middle = total.body.result.data[20]._id;
    const read = await t.request({ method: 'PUT', url: '/rooms/busy/lastRead', headers: as('ann'), body: { message: middle } });
    expect(read.body.result).toEqual({ client: 'ann', lastRead: middle, badge: 20 });
    const older = await t.request({ method: 'PUT', url: '/rooms/busy/lastRead', headers: as('ann'), body: { message: total.body.result.data[30]._id } });
    expect(older.body.result).toEqual({ client: 'ann', lastRead: middle, badge: 20 }); // never moves backwards
    const all = await t.request({ method: 'PUT', url: '/rooms/busy/lastRead', headers: as('ann'), body: { message: newest } });
    expect(all.body.result.badge).toBe(0);
    const list = await t.request({ method: 'GET', url: '/rooms', headers: as('ann') });
    expect(list.body.result.data.find((r: any) => r._id === 'busy').unread).toBe(0);
    const foreign = await t.request({ method: 'PUT', url: '/rooms/busy/lastRead', headers: as('ann'), body: { message: (await v3('ann', 'chat', '?limit=1')).body.result.data[0]._id } });
    expect(foreign.status).toBe(404);
    expect((await t.request({ method: 'PUT', url: '/rooms/busy/lastRead', headers: as('out'), body: { message: newest } })).status).toBe(403);
  });

  it('pin: one per room, owner/managers/platform only; delete one and _all', async () => {
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'pins', members: ['ann', 'ben'], owner: 'ann' } });
    const a = (await send('ben', 'pins', { messageType: 'text', message: 'a' })).body.result;
    const b = (await send('ben', 'pins', { messageType: 'text', message: 'b' })).body.result;
    expect((await t.request({ method: 'POST', url: `/messages/${a._id}/pin`, headers: as('ben') })).status).toBe(403);
    expect((await t.request({ method: 'POST', url: `/messages/${a._id}/pin`, headers: as('ann') })).body.result.pinned).toBe(true);
    expect((await t.request({ method: 'POST', url: `/messages/${b._id}/pin`, headers: admin })).body.result.pinned).toBe(true);
    const page = (await v3('ann', 'pins')).body.result.data;
    expect(page.map((m: any) => [m.message, m.pinned])).toEqual([['b', true], ['a', false]]);
    expect((await t.request({ method: 'DELETE', url: `/messages/${b._id}/pin`, headers: as('ann') })).body.result.pinned).toBe(false);
    expect((await t.request({ method: 'POST', url: '/messages/cccccccccccccccccccccccc/pin', headers: as('ann') })).status).toBe(404);

    const denied = await t.request({ method: 'DELETE', url: `/rooms/pins/messages/${a._id}`, headers: as('ben') });
    expect(denied.status).toBe(403);
    const one = await t.request({ method: 'DELETE', url: `/rooms/pins/messages/${a._id}`, headers: as('ann') });
    expect(one.body.result).toMatchObject({ deletedCount: 1, roomID: 'pins', messageID: a._id, deletedBy: 'ann' });
    expect(one.body).toMatchObject({ RC: 0, RM: 'Message deleted successfully' });
    expect((await t.request({ method: 'DELETE', url: `/rooms/pins/messages/${a._id}`, headers: as('ann') })).status).toBe(404);
    await send('ben', 'pins', { messageType: 'text', message: 'c' });
    const all = await t.request({ method: 'DELETE', url: '/rooms/pins/messages/_all', headers: admin });
    expect(all.body.result).toMatchObject({ deletedCount: 2, messageID: '_all' });
    expect(all.body.RM).toBe('All messages deleted successfully');
    expect((await v3('ann', 'pins')).body.result.totalCount).toBe(0);
    expect((await t.request({ method: 'GET', url: '/rooms/pins', headers: as('ann') })).body.result.lastMessage).toBeUndefined();
  });

  it('every change emits exactly one domain event after commit', async () => {
    const events: DomainEvent[] = [];
    const off = t.server.services.bus.on((e) => events.push(e));
    try {
      const m = (await send('ann', 'chat', { messageType: 'text', message: 'evt' })).body.result;
      await send('ann', 'chat', { _id: m._id, message: 'evt2' });
      await t.request({ method: 'PUT', url: '/rooms/chat/lastRead', headers: as('ben'), body: { message: m._id } });
      await send('ann', 'chat', { _id: m._id, messageType: 'recall' });
      await send('out', 'chat', { messageType: 'text', message: 'refused' });
      await send('ann', 'chat', { messageType: 'text', message: 'x'.repeat(5000) });
      expect(events.map((e) => e.type)).toEqual(['message.created', 'message.updated', 'read', 'message.updated']);
      expect(events[0]).toMatchObject({ roomId: 'chat', messageId: m._id, senderId: 'ann', system: false });
      expect(events[3]).toMatchObject({ change: 'recall' });
    } finally {
      off();
    }
  });
});
