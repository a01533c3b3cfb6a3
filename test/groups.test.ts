import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

describe.each(DIALECTS)('user groups (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['cust', 'agent1', 'agent2', 'other']) tok[u] = await createUser(t, u);
  });
  afterAll(async () => t?.close());

  it('G1/G2: create and list groups; errors of the IMKIT pages', async () => {
    const res = await t.request({ method: 'POST', url: '/admin/groups', headers: admin, body: { _id: 'support', nickname: 'Support', avatarUrl: 'https://x/s.png', members: ['agent1', 'agent2'] } });
    expect(res.body.result).toMatchObject({ _id: 'support', nickname: 'Support', avatarUrl: 'https://x/s.png', members: ['agent1', 'agent2'] });
    expect(res.body.result.createdAt).toBe(new Date(t.clock.now()).toISOString());
    const dup = await t.request({ method: 'POST', url: '/admin/groups', headers: admin, body: { _id: 'support', nickname: 'Again' } });
    expect([dup.status, dup.body.error]).toEqual([409, 'GROUP_ALREADY_EXISTS']);
    const userId = await t.request({ method: 'POST', url: '/admin/groups', headers: admin, body: { _id: 'cust', nickname: 'Clash' } });
    expect(userId.status).toBe(409);
    const noName = await t.request({ method: 'POST', url: '/admin/groups', headers: admin, body: { _id: 'g2' } });
    expect([noName.status, noName.body.error, noName.body.message]).toEqual([400, 'MISSING_PARAMETER', 'nickname is required']);
    const ghost = await t.request({ method: 'POST', url: '/admin/groups', headers: admin, body: { nickname: 'G', members: ['ghost'] } });
    expect([ghost.status, ghost.body.error]).toEqual([404, 'USER_NOT_FOUND']);
    const list = await t.request({ method: 'GET', url: '/admin/groups', headers: admin });
    expect(list.body.result).toMatchObject({ totalCount: 1, data: [{ _id: 'support', members: ['agent1', 'agent2'] }] });
    expect((await t.request({ method: 'GET', url: '/admin/groups', headers: as('cust') })).status).toBe(403);
  });

  it('a group in a room gives each of its users access, deliveries and their own unread count', async () => {
    const base = await t.server.listen();
    await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'help', members: ['cust', 'support'] } });
    const room = (await t.request({ method: 'GET', url: '/rooms/help', headers: as('agent1') })).body.result;
    expect(room.members.map((m: any) => [m._id, m.clientType])).toEqual([['cust', 'user'], ['support', 'group']]);
    expect(room.members[1].members.map((m: any) => m._id)).toEqual(['agent1', 'agent2']);
    expect((await t.request({ method: 'GET', url: '/rooms/help', headers: as('other') })).status).toBe(403);

    const agent2 = await TestClient.connect(base, 'bundle');
    await agent2.login(tok.agent2!, t.clientKey);
    const m = (await t.request({ method: 'POST', url: '/rooms/help/message', headers: as('cust'), body: { messageType: 'text', message: 'my order?' } })).body.result;
    expect((await agent2.next('chat message', (x) => x._id === m._id)).message).toBe('my order?');
    const reply = await t.request({ method: 'POST', url: '/rooms/help/message', headers: as('agent1'), body: { messageType: 'text', message: 'on its way' } });
    expect(reply.status).toBe(200);
    expect((await agent2.next('chat message', (x) => x._id === reply.body.result._id)).message).toBe('on its way');
    const unread = async (u: string) => (await t.request({ method: 'GET', url: '/rooms/help', headers: as(u) })).body.result.unread;
    expect([await unread('cust'), await unread('agent1'), await unread('agent2')]).toEqual([1, 0, 2]);
    const listed = await t.request({ method: 'GET', url: '/rooms', headers: as('agent2') });
    expect(listed.body.result.data.map((r: any) => r._id)).toContain('help');

    // removing the group removes the access it gave
    await t.request({ method: 'POST', url: '/rooms/help/delete/members', headers: admin, body: { members: ['support'] } });
    expect((await t.request({ method: 'GET', url: '/rooms/help', headers: as('agent1') })).status).toBe(403);
    agent2.events.length = 0;
    await t.request({ method: 'POST', url: '/rooms/help/message', headers: as('cust'), body: { messageType: 'text', message: 'hello?' } });
    await agent2.none('chat message');
    agent2.close();
  });
});
