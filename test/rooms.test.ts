import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directRoomId } from '../src/chat/rooms-service.js';
import type { DomainEvent } from '../src/events/bus.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('rooms and members (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['alice', 'bob', 'carol', 'dave', 'erin']) tok[u] = await createUser(t, u);
  });
  afterAll(async () => t?.close());

  it('admin POST /rooms/ creates a room without joining; members populated', async () => {
    const res = await t.request({ method: 'POST', url: '/rooms/', headers: admin, body: { _id: 'project', name: 'Project', roomType: 'group', members: ['alice', 'bob'], roomTags: ['work', 'team-a'], owner: 'alice' } });
    expect(res.status).toBe(200);
    const r = res.body.result;
    expect(r).toMatchObject({ _id: 'project', id: 'project', appID: 'default', name: 'Project', roomType: 'group', roomTags: ['work', 'team-a'], status: 1, owner: 'alice', unread: 0, isSuperuser: true });
    expect(r.members.map((m: any) => m._id)).toEqual(['alice', 'bob']);
    expect(r.members[0]).toMatchObject({ _id: 'alice', id: 'alice', nickname: 'alice', clientType: 'user', isRobot: false });
    expect(r.memberProperties).toEqual([
      { client: 'alice', badge: 0, role: 'member', isSuperuser: true },
      { client: 'bob', badge: 0, role: 'member' },
    ]);
    expect(r.createdTimeMS).toBe(t.clock.now());
    const dup = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'project' } });
    expect([dup.status, dup.body.error]).toEqual([409, 'ROOM_EXISTS']);
  });

  it('create errors: bad roomType, unknown member, direct with three members', async () => {
    const bad = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { roomType: 'channel' } });
    expect([bad.status, bad.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect(bad.body.message).toContain('roomType');
    const ghost = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { members: ['alice', 'ghost'] } });
    expect([ghost.status, ghost.body.error]).toEqual([404, 'USER_NOT_FOUND']);
    expect(ghost.body.message).toContain('ghost');
    const three = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { roomType: 'direct', members: ['alice', 'bob', 'carol'] } });
    expect(three.status).toBe(400);
  });

  it('user POST /rooms and createAndJoin: creator joins and owns; direct rooms get the md5 id and are reused', async () => {
    const own = await t.request({ method: 'POST', url: '/rooms', headers: as('carol'), body: { name: 'Carol room' } });
    expect(own.body.result.owner).toBe('carol');
    expect(own.body.result.members.map((m: any) => m._id)).toEqual(['carol']);
    expect(own.body.result._id).toMatch(/^[0-9a-f]{24}$/);

    const dm = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('alice'), body: { roomType: 'direct', invitee: 'Bob'.toLowerCase() } });
    expect(dm.status).toBe(200);
    expect(dm.body.result._id).toBe(directRoomId('alice', 'bob'));
    expect(dm.body.result.roomType).toBe('direct');
    expect(dm.body.result.owner).toBeUndefined();
    const again = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('bob'), body: { roomType: 'direct', invitee: ['alice'] } });
    expect(again.body.result._id).toBe(dm.body.result._id);
    expect(again.body.result.members).toHaveLength(2);
  });

  it('GET /rooms/:id: members only; other application gets 404', async () => {
    expect((await t.request({ method: 'GET', url: '/rooms/project', headers: as('bob') })).body.result.isSuperuser).toBe(false);
    const outsider = await t.request({ method: 'GET', url: '/rooms/project', headers: as('carol') });
    expect([outsider.status, outsider.body.error]).toEqual([403, 'NOT_ROOM_MEMBER']);
    const missing = await t.request({ method: 'GET', url: '/rooms/nope', headers: as('bob') });
    expect([missing.status, missing.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
    const other = await t.server.services.apps.create({ id: 'other', name: 'Other' });
    const res = await t.request({ method: 'GET', url: '/rooms/project', headers: { 'IM-API-KEY': other.apiKey } });
    expect([res.status, res.body.error]).toEqual([404, 'ROOM_NOT_FOUND']);
  });

  it('PUT /rooms/:id: owner/managers/platform may update; members may not; freezing stops messages', async () => {
    const denied = await t.request({ method: 'PUT', url: '/rooms/project', headers: as('bob'), body: { name: 'Hacked' } });
    expect([denied.status, denied.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    const ok = await t.request({ method: 'PUT', url: '/rooms/project', headers: as('alice'), body: { name: 'Renamed', roomTags: ['work'] } });
    expect(ok.body.result).toMatchObject({ name: 'Renamed', roomTags: ['work'] });
    const promote = await t.request({ method: 'PUT', url: '/rooms/project', headers: as('alice'), body: { managers: ['bob'] } });
    expect(promote.body.result.managers).toEqual(['bob']);
    const byManager = await t.request({ method: 'PUT', url: '/rooms/project', headers: as('bob'), body: { description: 'by bob' } });
    expect(byManager.status).toBe(200);
    const managerOwner = await t.request({ method: 'PUT', url: '/rooms/project', headers: as('bob'), body: { owner: 'bob' } });
    expect(managerOwner.status).toBe(403);

    const freeze = await t.request({ method: 'PUT', url: '/rooms/project', headers: admin, body: { status: 0 } });
    expect(freeze.body.result.status).toBe(0);
    const send = await t.request({ method: 'POST', url: '/rooms/project/message', headers: as('alice'), body: { message: 'hi', messageType: 'text' } });
    expect([send.status, send.body.error]).toEqual([403, 'ROOM_FROZEN']);
    const list = await t.request({ method: 'GET', url: '/rooms', headers: as('alice') });
    expect(list.body.result.data.map((r: any) => r._id)).not.toContain('project');
    await t.request({ method: 'PUT', url: '/rooms/project', headers: admin, body: { status: 1 } });
    expect((await t.request({ method: 'POST', url: '/rooms/project/message', headers: as('alice'), body: { message: 'hi', messageType: 'text' } })).status).toBe(200);
  });

  it('members: add with system message, remove others only as manager, leave, roles', async () => {
    const added = await t.request({ method: 'POST', url: '/rooms/project/members', headers: as('bob'), body: { invitees: ['carol', 'dave'], systemMessage: true } });
    expect(added.body.result.members.map((m: any) => m._id)).toEqual(['alice', 'bob', 'carol', 'dave']);
    const last = added.body.result.lastMessage;
    expect(last).toMatchObject({ messageType: 'addMembers', sender: { _id: 'bob' } });
    expect(JSON.parse(last.message).map((c: any) => c._id)).toEqual(['carol', 'dave']);
    expect(last.extra.invitees.map((c: any) => c._id)).toEqual(['carol', 'dave']);

    const kickByMember = await t.request({ method: 'POST', url: '/rooms/project/delete/members', headers: as('carol'), body: { members: ['dave'] } });
    expect([kickByMember.status, kickByMember.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    const kickOwner = await t.request({ method: 'POST', url: '/rooms/project/delete/members', headers: as('bob'), body: { members: ['alice'] } });
    expect(kickOwner.status).toBe(403);
    const kick = await t.request({ method: 'POST', url: '/rooms/project/delete/members', headers: as('bob'), body: { members: ['dave'], systemMessage: true } });
    expect(kick.body.result.members.map((m: any) => m._id)).toEqual(['alice', 'bob', 'carol']);
    expect(kick.body.result.lastMessage).toMatchObject({ messageType: 'deleteMember', member: { _id: 'dave' }, extra: { members: [{ _id: 'dave' }] } });
    expect((await t.request({ method: 'GET', url: '/rooms/project/messages/v3', headers: as('dave') })).status).toBe(403);

    const leave = await t.request({ method: 'DELETE', url: '/rooms/project/members/carol', headers: as('carol') });
    expect(leave.status).toBe(200);
    expect(leave.body.result.lastMessage).toMatchObject({ messageType: 'leaveRoom', member: { _id: 'carol' } });
    const notMember = await t.request({ method: 'POST', url: '/rooms/project/delete/members', headers: admin, body: { members: ['erin'] } });
    expect(notMember.status).toBe(400);

    const roleByManager = await t.request({ method: 'PUT', url: '/rooms/project/member/bob', headers: as('bob'), body: { property: 'role', value: 'member' } });
    expect(roleByManager.status).toBe(403);
    const role = await t.request({ method: 'PUT', url: '/rooms/project/member/bob', headers: as('alice'), body: { property: 'role', value: 'admin', systemMessage: true } });
    expect(role.body.result.lastMessage).toMatchObject({ messageType: 'assignAdmin', member: { _id: 'bob' } });
    const badRole = await t.request({ method: 'PUT', url: '/rooms/project/member/bob', headers: as('alice'), body: { property: 'role', value: 'god' } });
    expect(badRole.status).toBe(400);
    const custom = await t.request({ method: 'PUT', url: '/rooms/project/member/bob', headers: as('bob'), body: { property: 'score', value: 42 } });
    expect(custom.body.result.memberProperties.find((p: any) => p.client === 'bob')).toMatchObject({ score: 42, role: 'admin' });
    const reserved = await t.request({ method: 'PUT', url: '/rooms/project/member/bob', headers: as('bob'), body: { property: 'badge', value: 0 } });
    expect(reserved.status).toBe(400);
  });

  it('join: open rooms yes, closed or direct rooms no; invitations can be accepted, declined, cancelled', async () => {
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'open', members: ['alice'], owner: 'alice' } });
    const join = await t.request({ method: 'POST', url: '/rooms/open/join', headers: as('erin'), body: { systemMessage: true } });
    expect(join.body.result.lastMessage).toMatchObject({ messageType: 'joinRoom', member: { _id: 'erin' } });
    await t.request({ method: 'PUT', url: '/rooms/open', headers: as('alice'), body: { opening: 0 } });
    const closed = await t.request({ method: 'POST', url: '/rooms/open/join', headers: as('dave') });
    expect([closed.status, closed.body.error]).toEqual([403, 'ROOM_CLOSED']);
    const dm = directRoomId('alice', 'bob');
    expect((await t.request({ method: 'POST', url: `/rooms/${dm}/join`, headers: as('erin') })).status).toBe(403);

    const invite = await t.request({ method: 'POST', url: '/rooms/open/members', headers: as('alice'), body: { invitees: ['dave', 'carol', 'bob'], invitationRequired: true } });
    expect(invite.body.result.members.map((m: any) => m._id)).toEqual(['alice', 'erin']);
    const mine = await t.request({ method: 'GET', url: '/me/invitations', headers: as('dave') });
    expect(mine.body.result.data.map((i: any) => [i.room._id, i.inviter._id])).toEqual([['open', 'alice']]);
    const pending = await t.request({ method: 'GET', url: '/rooms/open/invitations', headers: as('alice') });
    expect(pending.body.result.data.map((i: any) => i.invitee._id).sort()).toEqual(['bob', 'carol', 'dave']);
    const accept = await t.request({ method: 'POST', url: '/rooms/open/invitations/accept', headers: as('dave') });
    expect(accept.body.result.members.map((m: any) => m._id)).toContain('dave');
    const decline = await t.request({ method: 'POST', url: '/rooms/open/invitations/decline', headers: as('carol') });
    expect(decline.body.result).toEqual({ room: 'open', declined: true });
    expect((await t.request({ method: 'POST', url: '/rooms/open/invitations/decline', headers: as('carol') })).body.error).toBe('INVITATION_NOT_FOUND');
    const cancel = await t.request({ method: 'DELETE', url: '/rooms/open/invitations/bob', headers: as('alice'), body: { systemMessage: true } });
    expect(cancel.body.result).toEqual({ room: 'open', cancelled: ['bob'] });
    expect((await t.request({ method: 'GET', url: '/me/invitations', headers: as('bob') })).body.result.totalCount).toBe(0);
  });

  it('GET /rooms: per-caller unread, sorting, paging, updatedAfter, q filters; GET /rooms/ids', async () => {
    for (const id of ['s1', 's2', 's3']) {
      t.clock.advance(1000);
      await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: id, members: ['erin', 'bob'], roomTags: id === 's2' ? ['vip'] : [] } });
    }
    t.clock.advance(1000);
    await t.request({ method: 'POST', url: '/rooms/s1/message', headers: as('bob'), body: { message: 'newest', messageType: 'text' } });
    const list = await t.request({ method: 'GET', url: '/rooms?sort=-lastMessage%20-createdTime', headers: as('erin') });
    const ids = list.body.result.data.map((r: any) => r._id);
    expect(ids[0]).toBe('s1');
    expect(list.body.result.data[0]).toMatchObject({ unread: 1, muted: false, lastMessage: { message: 'newest' } });
    expect(list.body.result.totalCount).toBe(ids.length);
    const page = await t.request({ method: 'GET', url: '/rooms?sort=createdTime&limit=2&skip=1', headers: as('erin') });
    expect(page.body.result.data).toHaveLength(2);
    expect(page.body.result.totalCount).toBe(ids.length);
    const since = await t.request({ method: 'GET', url: `/rooms?updatedAfter=${t.clock.now() - 1500}`, headers: as('erin') });
    expect(since.body.result.data.map((r: any) => r._id).sort()).toEqual(['s1', 's3']);
    const iso = await t.request({ method: 'GET', url: `/rooms?updatedAfter=${new Date(t.clock.now() - 1500).toISOString()}`, headers: as('erin') });
    expect(iso.body.result.totalCount).toBe(2);
    const tag = await t.request({ method: 'GET', url: '/rooms?q=' + encodeURIComponent('{"roomTags":"vip"}'), headers: as('erin') });
    expect(tag.body.result.data.map((r: any) => r._id)).toEqual(['s2']);
    const withMember = await t.request({ method: 'GET', url: '/rooms?q=' + encodeURIComponent('{"members":"alice"}'), headers: as('erin') });
    expect(withMember.body.result.data.map((r: any) => r._id)).toEqual(['open']);
    const unreadFirst = await t.request({ method: 'GET', url: '/rooms?sort=createdTime&sortUnreadFirst=1', headers: as('erin') });
    const flags = unreadFirst.body.result.data.map((r: any) => r.unread > 0);
    expect(flags).toEqual([...flags].sort((a: boolean, b: boolean) => Number(b) - Number(a)));
    expect(flags.filter(Boolean).length).toBeGreaterThanOrEqual(1);
    expect(unreadFirst.body.result.data.filter((r: any) => r.unread === 0)[0]._id).toBe('s2'); // then by createdTime
    const idList = await t.request({ method: 'GET', url: '/rooms/ids?limit=2', headers: as('erin') });
    expect(idList.body.result).toEqual({ totalCount: ids.length, data: ids.slice(0, 2) });
    for (const bad of ['sort=bogus', 'updatedAfter=yesterday', 'q=%7Bx', 'q=' + encodeURIComponent('{"name":"x"}')]) {
      const res = await t.request({ method: 'GET', url: `/rooms?${bad}`, headers: as('erin') });
      expect([bad, res.status]).toEqual([bad, 400]);
    }
    const noUser = await t.request({ method: 'GET', url: '/rooms', headers: admin });
    expect(noUser.status).toBe(400);
    const asUser = await t.request({ method: 'GET', url: '/rooms', headers: { ...admin, 'IM-CLIENT-ID': 'erin' } });
    expect(asUser.body.result.totalCount).toBe(ids.length);
  });

  it('count, bot state, delete (owner or platform only) and the domain events fire once each', async () => {
    const events: DomainEvent[] = [];
    const off = t.server.services.bus.on((e) => events.push(e));
    try {
      const before = t.clock.now();
      t.clock.advance(10);
      await t.request({ method: 'POST', url: '/rooms/s2/message', headers: as('bob'), body: { message: 'one', messageType: 'text' } });
      const count = await t.request({ method: 'GET', url: `/rooms/s2/count?timeInMS=${before}`, headers: as('erin') });
      expect(count.body.result).toEqual({ count: 1 });
      const bot = await t.request({ method: 'PUT', url: '/rooms/s2/bot', headers: as('erin'), body: { botState: 'CONTACT' } });
      expect(bot.body.result.botState).toBe('CONTACT');
      const denied = await t.request({ method: 'DELETE', url: '/rooms/s2', headers: as('erin') });
      expect(denied.status).toBe(403);
      const del = await t.request({ method: 'DELETE', url: '/rooms/s2', headers: admin });
      expect(del.body.result).toEqual({ n: 1, nModified: 1, ok: 1 });
      expect((await t.request({ method: 'GET', url: '/rooms/s2', headers: admin })).status).toBe(404);
      expect(events.map((e) => e.type)).toEqual(['message.created', 'room.updated', 'room.deleted']);
      expect(events[2]).toMatchObject({ roomId: 's2', members: ['bob', 'erin'] });
    } finally {
      off();
    }
  });
});
