import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../src/events/bus.js';
import { DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { type Generation, TestClient } from './realtime-helpers.js';
import { statementLog, type StatementLog } from './sql-count.js';

/**
 * The socket `room` event and the reads behind it: rendered once per change for the members online, each with
 * their own fields, at a number of statements that does not grow with the room; invitations and GET /me.
 */
describe.each(DIALECTS)('room events and their cost (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  let sql: StatementLog;
  const admin = () => ({ 'IM-API-KEY': t.apiKey });
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  const clients: TestClient[] = [];
  const connect = async (user: string, gen: Generation = 'bundle') => {
    const c = await TestClient.connect(base, gen);
    clients.push(c);
    const ack = await c.login(tok[user]!, t.clientKey);
    if (ack) expect(ack.RC).toBe(0);
    return c;
  };
  const ok = async (req: Parameters<TestServer['request']>[0]) => {
    const res = await t.request(req);
    expect(res.status, `${req.method} ${req.url}: ${res.raw}`).toBe(200);
    return res.body.result;
  };
  // 80 users; only the first few ever connect.
  const users = Array.from({ length: 80 }, (_, i) => `u${String(i).padStart(2, '0')}`);

  beforeAll(async () => {
    t = await startTestServer(dialect, { rateLimitPerMinute: 1_000_000 });
    base = await t.server.listen();
    sql = statementLog(t.server.store.db);
    const res = await t.request({
      method: 'POST',
      url: '/admin/clients/list',
      headers: admin(),
      body: { data: users.map((id) => ({ _id: id, nickname: `N ${id}` })) },
    });
    expect(res.status).toBe(200);
    for (const u of users.slice(0, 8)) {
      tok[u] = (await ok({ method: 'POST', url: '/admin/clients', headers: admin(), body: { _id: u, issueAccessToken: true } })).token;
    }
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => t?.close());

  /** A room whose owner is u00 and manager u01, with `size` members in all (u00..). */
  const makeRoom = async (id: string, size: number) => {
    await ok({ method: 'POST', url: '/rooms', headers: admin(), body: { _id: id, name: id, members: users.slice(0, size), owner: 'u00', managers: ['u01'] } });
  };

  /**
   * Waits until the room's events so far are delivered: events of one room are delivered in order, so once a
   * typing event sent now reaches `watcher`, every event before it has been delivered.
   */
  const drained = async (roomId: string, typist: string, watcher: TestClient) => {
    const marker = `drain ${Math.random()}`;
    await ok({ method: 'POST', url: `/rooms/${roomId}/typing`, headers: as(typist), body: { message: marker } });
    await watcher.next('typing', (p) => p.room === roomId && p.message === marker);
  };

  it('each online member receives the room as GET /rooms/:id shows it to them: owner, manager, unread, muted', async () => {
    await makeRoom('same', 30);
    // u02 has unread messages; u03 muted the room and has a room preference; u04 is a plain member.
    for (let i = 0; i < 3; i++) await ok({ method: 'POST', url: '/rooms/same/message', headers: as('u00'), body: { message: `m${i}` } });
    await ok({ method: 'POST', url: '/me/mute/same', headers: as('u03') });
    await ok({ method: 'POST', url: '/roomPrefs/same', headers: as('u03'), body: { tags: ['work'], sticky: true } });
    await ok({ method: 'PUT', url: '/rooms/same/member/u04', headers: as('u04'), body: { property: 'title', value: 'dr' } });
    const viewers = ['u00', 'u01', 'u02', 'u03', 'u04'];
    const socks = new Map<string, TestClient>();
    for (const [i, u] of viewers.entries()) socks.set(u, await connect(u, i === 4 ? 'vue' : 'bundle'));

    await ok({ method: 'PUT', url: '/rooms/same', headers: as('u01'), body: { name: 'Renamed' } });
    for (const u of viewers) {
      const got = await socks.get(u)!.next('room', (r) => r._id === 'same' && r.name === 'Renamed');
      const rest = await ok({ method: 'GET', url: '/rooms/same', headers: as(u) });
      const perMember = await t.server.services.rooms.viewAs(t.appId, 'same', u);
      expect(got, u).toEqual(rest);
      expect(got, u).toEqual(perMember);
      // The key order is the one clients have always received.
      expect(Object.keys(got), u).toEqual(Object.keys(rest));
    }
    const rest = async (u: string) => ok({ method: 'GET', url: '/rooms/same', headers: as(u) });
    expect(await rest('u00')).toMatchObject({ isSuperuser: true, unread: 0 });
    expect(await rest('u01')).toMatchObject({ isSuperuser: true });
    expect(await rest('u02')).toMatchObject({ isSuperuser: false, unread: 3 });
    expect(await rest('u03')).toMatchObject({ muted: true, pref: { muted: true, tags: ['work'], sticky: true } });
    expect((await rest('u04')).memberProperties.find((p: any) => p.client === 'u04')).toMatchObject({ title: 'dr' });
  });

  it('a member banned from the room gets no room events; a removed member gets none after leaving', async () => {
    await makeRoom('bans', 10);
    const owner = await connect('u00');
    const troll = await connect('u05');
    const leaver = await connect('u06');
    expect((await t.request({ method: 'POST', url: '/blockStatus/room/bans/u05', headers: as('u00') })).status).toBe(200);
    await ok({ method: 'PUT', url: '/rooms/bans', headers: as('u00'), body: { name: 'Bans 2' } });
    await owner.next('room', (r) => r._id === 'bans' && r.name === 'Bans 2');
    await leaver.next('room', (r) => r._id === 'bans' && r.name === 'Bans 2');
    await ok({ method: 'POST', url: '/rooms/bans/delete/members', headers: as('u00'), body: { members: ['u06'] } });
    await owner.next('room', (r) => r._id === 'bans' && !r.members.some((m: any) => m._id === 'u06'));
    await drained('bans', 'u01', owner);
    expect(troll.events.filter((e) => e.event === 'room')).toEqual([]);
    expect(leaver.events.filter((e) => e.event === 'room')).toEqual([]);
  });

  it('a rename, a join and a leave cost the same statements in a room of 20 as in a room of 80', async () => {
    const cost = async (roomId: string, size: number) => {
      await makeRoom(roomId, size);
      // Three members online; the typist warms the caches the drain marker uses.
      const watcher = await connect('u01');
      await connect('u02', 'vue');
      await connect('u00');
      await drained(roomId, 'u07', watcher);
      // Every caller's credentials are in the guard's cache before counting (its misses are not what is measured).
      for (const u of ['u00', 'u03', 'u07']) await ok({ method: 'GET', url: `/rooms/${roomId}`, headers: as(u) });
      await drained(roomId, 'u07', watcher);
      const measure = async (change: () => Promise<unknown>, check: (r: any) => boolean) => {
        sql.reset();
        await change();
        await watcher.next('room', (r) => r._id === roomId && check(r));
        await drained(roomId, 'u07', watcher);
        // The statements themselves (a list of ids written as one), sorted, so a failure shows which one differs.
        return sql.caused().map((q) => q.replace(/in \((\?|\$\d+)(, (\?|\$\d+))*\)/g, 'in (…)')).sort();
      };
      const out = {
        rename: await measure(() => ok({ method: 'PUT', url: `/rooms/${roomId}`, headers: as('u00'), body: { name: `${roomId} renamed` } }), (r) => r.name === `${roomId} renamed`),
        leave: await measure(() => ok({ method: 'POST', url: `/rooms/${roomId}/delete/members`, headers: as('u03'), body: { members: ['u03'] } }), (r) => !r.members.some((m: any) => m._id === 'u03')),
        join: await measure(() => ok({ method: 'POST', url: `/rooms/${roomId}/members`, headers: as('u00'), body: { invitees: ['u03'] } }), (r) => r.members.some((m: any) => m._id === 'u03')),
      };
      for (const c of clients.splice(0)) c.close();
      return out;
    };
    const small = await cost('small', 20);
    const big = await cost('big', 80);
    expect(big).toEqual(small);
    // The change itself, its answer and the room events to the three members online: a fixed count.
    for (const n of Object.values(big)) expect(n.length).toBeLessThan(40);
  });

  it('GET /me/invitations reads a fixed number of statements however many invitations there are', async () => {
    const invitationsCost = async (user: string, rooms: number) => {
      for (let i = 0; i < rooms; i++) {
        const id = `inv-${user}-${i}`;
        await makeRoom(id, 5);
        await ok({ method: 'POST', url: `/rooms/${id}/members`, headers: as('u00'), body: { invitees: [user], invitationRequired: true } });
      }
      await ok({ method: 'GET', url: '/me/invitations', headers: as(user) });
      sql.reset();
      const res = await ok({ method: 'GET', url: '/me/invitations', headers: as(user) });
      const count = sql.caused().length;
      expect(res.totalCount).toBe(rooms);
      expect(res.data.map((i: any) => i.room._id).sort()).toEqual(Array.from({ length: rooms }, (_, i) => `inv-${user}-${i}`).sort());
      expect(res.data[0]).toMatchObject({ room: { unread: 0, isSuperuser: false }, inviter: { _id: 'u00', nickname: 'N u00' } });
      return count;
    };
    const one = await invitationsCost('u06', 1);
    const five = await invitationsCost('u07', 5);
    expect(five).toBe(one);
  });

  it('GET /me writes the login time only when it is a minute old or the address or user agent changed', async () => {
    const changed: DomainEvent[] = [];
    const off = t.server.services.bus.on((e) => {
      if (e.type === 'user.changed') changed.push(e);
    });
    try {
      const me = (agent: string) => t.request({ method: 'GET', url: '/me', headers: { ...as('u05'), 'user-agent': agent } });
      const writes = () => sql.matching('update').filter((q) => q.includes('users'));
      const first = await me('A/1');
      const loginAt = t.clock.now();
      expect(first.body.result).toMatchObject({ lastLoginTimeMS: loginAt, userAgent: 'A/1' });

      t.clock.advance(30_000);
      sql.reset();
      changed.length = 0;
      const again = await me('A/1');
      expect(again.body.result).toMatchObject({ lastLoginTimeMS: loginAt, userAgent: 'A/1' });
      expect(writes()).toEqual([]);
      expect(changed).toEqual([]);

      sql.reset();
      const otherAgent = await me('B/2');
      expect(otherAgent.body.result).toMatchObject({ lastLoginTimeMS: t.clock.now(), userAgent: 'B/2' });
      expect(writes()).toHaveLength(1);
      expect(changed).toHaveLength(1);

      t.clock.advance(60_000);
      sql.reset();
      changed.length = 0;
      const later = await me('B/2');
      expect(later.body.result).toMatchObject({ lastLoginTimeMS: t.clock.now() });
      expect(writes()).toHaveLength(1);
      expect(changed).toHaveLength(1);
    } finally {
      off();
    }
  });
});
