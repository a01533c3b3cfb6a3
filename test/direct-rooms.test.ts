import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directRoomId } from '../src/chat/rooms-service.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

/** Direct-room ids are the pair's: nobody can take one for another room or another pair. */
describe.each(DIALECTS)('direct room ids (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  const pair = () => directRoomId('alice', 'frank');
  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['alice', 'frank', 'mallory']) tok[u] = await createUser(t, u);
  });
  afterAll(async () => t?.close());

  it('a group room cannot take the id of two users\' future direct room, by a user or the platform', async () => {
    const byUser = await t.request({ method: 'POST', url: '/rooms', headers: as('mallory'), body: { _id: pair(), roomType: 'group', name: 'trap' } });
    expect([byUser.status, byUser.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const byCreateAndJoin = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('mallory'), body: { _id: pair() } });
    expect([byCreateAndJoin.status, byCreateAndJoin.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const byPlatform = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: pair(), roomType: 'group', members: ['mallory'] } });
    expect([byPlatform.status, byPlatform.body.error]).toEqual([400, 'INVALID_REQUEST']);
    // Nor a direct room of other members under that id.
    const otherPair = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('mallory'), body: { _id: pair(), roomType: 'direct', invitee: ['alice'] } });
    expect([otherPair.status, otherPair.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect((await t.request({ method: 'GET', url: `/rooms/${pair()}`, headers: admin })).status).toBe(404);
  });

  it("alice's direct room with frank is theirs alone; mallory cannot be added to it", async () => {
    const res = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('alice'), body: { roomType: 'direct', invitee: ['frank'] } });
    expect(res.status).toBe(200);
    expect(res.body.result._id).toBe(pair());
    expect(res.body.result.members.map((m: any) => m._id).sort()).toEqual(['alice', 'frank']);
    // Frank leaves; the platform cannot put mallory in his place under the pair's id.
    expect((await t.request({ method: 'DELETE', url: `/rooms/${pair()}/members/frank`, headers: as('frank') })).status).toBe(200);
    const add = await t.request({ method: 'POST', url: `/rooms/${pair()}/members`, headers: admin, body: { invitees: ['mallory'] } });
    expect([add.status, add.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const join = await t.request({ method: 'POST', url: `/rooms/${pair()}/join`, headers: { 'IM-API-KEY': t.apiKey, 'IM-CLIENT-ID': 'mallory' }, body: {} });
    expect([join.status, join.body.error]).toEqual([400, 'INVALID_REQUEST']);
    // Frank may be brought back.
    expect((await t.request({ method: 'POST', url: `/rooms/${pair()}/members`, headers: admin, body: { invitees: ['frank'] } })).status).toBe(200);
  });

  it('createAndJoin of a direct pair never answers with a room that is not that pair\'s direct room', async () => {
    // A room made before ids were reserved (or under a custom id) that is not the pair's direct room.
    await t.server.store.db
      .insertInto('rooms')
      .values({ ...(await roomRow(t, 'legacy-group')), id: directRoomId('alice', 'mallory'), room_type: 'group', owner: 'mallory' })
      .execute();
    await t.server.store.db.insertInto('room_members').values({ ...(await memberRow(t, 'legacy-group', 'mallory')), room_id: directRoomId('alice', 'mallory') }).execute();
    const res = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('alice'), body: { roomType: 'direct', invitee: ['mallory'] } });
    expect([res.status, res.body.error]).toEqual([409, 'ROOM_EXISTS']);
    expect(res.raw).not.toContain('"members"');
  });
});

/** A stored row of a freshly created room, to insert a variant of it directly (as data from before the rule). */
async function roomRow(t: TestServer, id: string) {
  await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: id, members: ['mallory'] } });
  const row = await t.server.store.db.selectFrom('rooms').selectAll().where('app_id', '=', t.appId).where('id', '=', id).executeTakeFirstOrThrow();
  return row;
}

async function memberRow(t: TestServer, roomId: string, userId: string) {
  return t.server.store.db.selectFrom('room_members').selectAll().where('app_id', '=', t.appId).where('room_id', '=', roomId).where('user_id', '=', userId).executeTakeFirstOrThrow();
}
