import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImportService, type ImportOptions, type ImportReport } from '../src/importer/import-service.js';
import { SourceClient, type ImportTimer } from '../src/importer/source-client.js';
import { ImportRepo } from '../src/store/import-repo.js';
import { createUser, DIALECTS, startTestServer, type TestServer } from './helpers.js';

/**
 * imkit-server import (docs/migrating.md): a second server is the source, filled through its API; the import
 * goes into a fresh target, and both servers' API answers are compared for every user and room.
 */

type Json = Record<string, any>;

/** Sleeping moves the source's clock instead of waiting: its rate-limit window is on that clock. */
function sourceTimer(src: TestServer): ImportTimer {
  return {
    now: () => src.clock.now(),
    sleep: async (ms) => {
      src.clock.advance(Math.ceil(ms));
      await new Promise((r) => setImmediate(r));
    },
  };
}

async function runImport(src: TestServer, url: string, dst: TestServer, extra: Partial<ImportOptions> = {}): Promise<ImportReport> {
  return new ImportService(dst.server.store.db, dst.clock).run({ from: url, apiKey: src.apiKey, appId: dst.appId, timer: sourceTimer(src), ...extra });
}

/** Requests with the API key (and IM-CLIENT-ID); a 429 (the rate-limited source) moves that server's clock a minute on. */
const api = (t: TestServer) => {
  const call = async (method: string, url: string, body?: unknown, userId?: string): Promise<any> => {
    for (;;) {
      const res = await t.request({ method, url, body, headers: { 'IM-API-KEY': t.apiKey, ...(userId ? { 'IM-CLIENT-ID': userId } : {}) } });
      if (res.status === 429) {
        t.clock.advance(61_000);
        continue;
      }
      if (res.status !== 200) throw new Error(`${method} ${url}: ${res.status} ${res.raw}`);
      return res.body.result;
    }
  };
  return { get: (url: string, userId?: string) => call('GET', url, undefined, userId), send: call };
};

/**
 * Fills a source with users (custom fields, a robot), a group, config, a webhook endpoint, rooms of both types (one
 * frozen before any import), a mix of messages sent one by one, and `bulk` more sent 16 at a time.
 */
async function fill(src: TestServer, opts: { users: number; messages: number; bulk?: number }): Promise<{ users: string[]; rooms: string[]; messages: number }> {
  const a = api(src);
  const users: string[] = [];
  for (let i = 1; i <= opts.users; i++) {
    const id = `u${i}`;
    users.push(id);
    await createUser(src, id, src.apiKey, { avatarUrl: `https://img.example/${id}.png`, description: `user ${i}`, title: `title ${i}`, dept: { name: i % 2 ? 'sales' : 'ops', floor: i }, isRobot: i === opts.users });
    src.clock.advance(7);
  }
  await a.send('POST', '/config', { censorship: { keywords: ['darn'], mode: 'mask' }, featureFlags: { reactions: true }, announcement: { text: 'welcome' } });
  await a.send('POST', '/admin/groups', { _id: 'g1', nickname: 'Support', members: [users[users.length - 1], users[users.length - 2]] });
  const direct = await a.send('POST', '/rooms/createAndJoin', { invitee: users[1] }, users[0]);
  await a.send('POST', '/rooms', { _id: 'team', name: 'Team', roomType: 'group', roomTags: ['work', 'all'], description: 'the team', cover: 'https://img.example/team.png', members: users.slice(0, 4), topic: 'custom room field' });
  await a.send('PUT', '/rooms/team', { owner: users[0], managers: [users[1]] });
  await a.send('POST', '/rooms', { _id: 'support', name: 'Support', roomType: 'group', members: [users[0], 'g1'], opening: 0 });
  await a.send('POST', '/rooms', { _id: 'quiet', name: 'Quiet', roomType: 'group', members: [users[2], users[3]] });
  // Frozen at the end of the fill, before any import: no room list shows it.
  await a.send('POST', '/rooms', { _id: 'archive', name: 'Archive', roomType: 'group', members: [users[2], users[3]], roomTags: ['old'] });
  await a.send('POST', '/admin/webhooks', { url: 'http://127.0.0.1:9/hooks/imkit?token=not-for-reports', events: ['key.alert'], description: 'alerts' });
  const rooms = [direct._id as string, 'team', 'support', 'quiet', 'archive'];
  const membersOf: Record<string, string[]> = { [direct._id]: [users[0]!, users[1]!], team: users.slice(0, 4), support: [users[0]!, users[users.length - 1]!, users[users.length - 2]!], quiet: [users[2]!, users[3]!] };
  const sent: Array<{ id: string; room: string; sender: string }> = [];
  const types = ['text', 'text', 'text', 'image', 'file', 'sticker', 'location'];
  for (let i = 0; i < opts.messages; i++) {
    const room = rooms[i % 3]!; // "quiet" stays empty
    const ms = membersOf[room]!;
    const sender = ms[i % ms.length]!;
    const messageType = types[i % types.length]!;
    const body: Json = { messageType, message: messageType === 'text' ? `message ${i} darn` : { n: i } };
    if (messageType === 'image') Object.assign(body, { media: { url: `https://img.example/${i}.png`, width: 10 }, extra: { caption: `c${i}` } });
    const earlier = sent.filter((x) => x.room === room).at(-1);
    if (i % 11 === 5 && earlier) body.reply = earlier.id;
    const m = await a.send('POST', `/rooms/${encodeURIComponent(room)}/message`, body, sender);
    sent.push({ id: m._id, room, sender });
    src.clock.advance(3 + (i % 5));
  }
  await a.send('POST', '/messages', { room: 'team', sender: 'system', messageType: 'notice', message: 'system notice' });
  // Edits, recalls, pins, reactions, read marks.
  for (let i = 0; i < sent.length; i += 17) {
    const m = sent[i]!;
    await a.send('POST', `/rooms/${encodeURIComponent(m.room)}/message`, { _id: m.id, message: `edited ${i}` }, m.sender);
    src.clock.advance(5);
  }
  for (let i = 8; i < sent.length; i += 29) {
    const m = sent[i]!;
    await a.send('POST', `/rooms/${encodeURIComponent(m.room)}/message`, { _id: m.id, messageType: 'recall' }, m.sender);
  }
  const teamMessages = sent.filter((m) => m.room === 'team');
  await a.send('POST', `/messages/${teamMessages[3]!.id}/pin`);
  for (let i = 0; i < sent.length; i += 13) {
    const m = sent[i]!;
    for (const u of membersOf[m.room]!.slice(0, 2)) await a.send('POST', `/messages/${m.id}/reaction`, { reaction: i % 2 ? '👍' : 'heart' }, u);
    src.clock.advance(2);
  }
  await a.send('PUT', `/rooms/team/lastRead`, { message: teamMessages[Math.floor(teamMessages.length / 2)]!.id }, users[2]);
  await a.send('PUT', `/rooms/${encodeURIComponent(direct._id)}/lastRead`, { message: sent.filter((m) => m.room === direct._id).at(-1)!.id }, users[1]);
  // Moderation, preferences, member properties.
  await a.send('POST', `/blockStatus/room/team/${users[3]}`, {});
  await a.send('POST', `/blockStatus/my/${users[2]}`, {}, users[0]);
  await a.send('POST', '/me/mute/team', undefined, users[1]);
  await a.send('POST', '/roomPrefs/team', { tags: ['starred'], sticky: true }, users[2]);
  await a.send('POST', '/me/pref/theme', { dark: true, size: 3 }, users[0]);
  if (users[4]) await a.send('POST', '/rooms/team/members', { invitees: [users[4]], invitationRequired: true }, users[0]);
  await a.send('POST', '/messages/user-delete', { room: 'team', messages: teamMessages.slice(0, 3).map((m) => m.id) }, users[1]);
  await a.send('PUT', `/rooms/team/member/${users[2]}`, { property: 'nickname2', value: 'custom member property' });
  // Members who joined later, one whose id sorts first (the API lists members in the order they joined) and one
  // with a join message (whose time is the join time).
  src.clock.advance(1000);
  await a.send('POST', '/rooms/quiet/members', { invitees: [users[0]] });
  if (users[4]) await a.send('POST', '/rooms/support/members', { invitees: [users[1]], systemMessage: true });
  for (let i = 0; i < 30; i++) {
    await a.send('POST', '/rooms/archive/message', { message: `archived ${i}` }, users[2 + (i % 2)]);
    src.clock.advance(11);
  }
  // Several thousand more, sent 16 at a time (faster than one by one, and than batch sends on Postgres): a few
  // senders in every room, each message a millisecond after the one before.
  let messages = opts.messages + 1 + 30 + (users[4] ? 1 : 0);
  const bulk = opts.bulk ?? 0;
  const senders: Array<[string, string]> = [[direct._id, users[0]!], [direct._id, users[1]!], ['team', users[1]!], ['team', users[2]!], ['support', users[users.length - 1]!], ['archive', users[3]!]];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < bulk; i = next++) {
        const [room, sender] = senders[i % senders.length]!;
        src.clock.advance(1);
        await a.send('POST', '/messages', { room, sender, messageType: i % 10 === 0 ? 'image' : 'text', message: `bulk ${i}`, ...(i % 10 === 0 ? { extra: { n: i } } : {}) });
      }
    }),
  );
  messages += bulk;
  await a.send('PUT', '/rooms/archive', { status: 0 });
  return { users, rooms, messages };
}

/** Every answer compared between the two servers: for each user and room, as the SDKs and the platform read them. */
async function snapshot(t: TestServer, users: string[], rooms: string[]): Promise<Json> {
  const a = api(t);
  const out: Json = {
    clients: await a.get('/admin/clients?limit=100'),
    config: await a.get('/config'),
    groups: await a.get('/admin/groups'),
    webhooks: await a.get('/admin/webhooks'),
  };
  for (const u of users) {
    out[`me:${u}`] = await a.get('/me', u);
    out[`rooms:${u}`] = await a.get('/rooms', u);
    out[`badge:${u}`] = await a.get('/me/badge', u);
    out[`blocks:${u}`] = await a.get('/blockStatus/my', u);
    out[`prefs:${u}`] = await a.get('/me/pref', u);
    out[`hidden:${u}`] = await a.get('/messages/user-delete', u);
    out[`invitations:${u}`] = await a.get('/me/invitations', u);
  }
  for (const r of rooms) {
    const id = encodeURIComponent(r);
    out[`room:${r}`] = await a.get(`/rooms/${id}`);
    out[`bans:${r}`] = await a.get(`/blockStatus/room/${id}`);
    out[`invites:${r}`] = await a.get(`/rooms/${id}/invitations`);
    out[`count:${r}`] = await a.get(`/rooms/${id}/count`);
    const history: Json[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await a.get(`/rooms/${id}/messages/v3?limit=100${before ? `&beforeMessage=${before}` : ''}`);
      const data = (page.data as Json[]).filter((m) => m._id !== before);
      if (data.length === 0) break;
      history.push(...data);
      before = data[data.length - 1]!._id;
    }
    out[`history:${r}`] = history;
    out[`sync:${r}`] = await a.get(`/rooms/${id}/messages/v3?afterTime=0&sortOrder=asc&limit=200`);
  }
  return out;
}

describe.each(DIALECTS)('import from a running server (%s)', (dialect) => {
  let src: TestServer;
  let url: string;
  let fixture: { users: string[]; rooms: string[]; messages: number };
  const targets: TestServer[] = [];
  const target = async () => {
    const t = await startTestServer(dialect, { rateLimitPerMinute: 100_000 });
    targets.push(t);
    return t;
  };

  beforeAll(async () => {
    src = await startTestServer(dialect, { rateLimitPerMinute: 100_000, webhookAllowPrivateNetworks: true });
    url = await src.server.listen();
    fixture = await fill(src, { users: 8, messages: 600, bulk: 5400 });
  }, 120_000);

  afterAll(async () => {
    for (const t of targets) await t.close();
    await src?.close();
  });

  it('copies users, rooms, members, read marks, messages, config, groups and moderation so both servers answer alike', async () => {
    const dst = await target();
    const report = await runImport(src, url, dst);
    expect(report.users).toMatchObject({ seen: 8, created: 8 });
    expect(report.rooms).toMatchObject({ seen: 5, created: 5 });
    expect(fixture.messages).toBeGreaterThan(6000);
    expect(report.messages.created).toBe(fixture.messages);
    // The frozen room is in no room list: the source's room count said one was missing, and a search found it.
    expect(report.discovery).toEqual({ lists: 4, byId: 0, bySearch: 1, sourceTotal: 5 });
    expect(report.webhooks).toMatchObject({ seen: 1, created: 1 });
    expect(report.notices).toEqual([{ entity: 'webhook', id: expect.stringMatching(/^we_/), notice: expect.stringContaining('rotate-secret') }]);
    expect(JSON.stringify(report)).not.toContain('not-for-reports');
    expect(report.groups.seen).toBe(1);
    expect(report.config).toEqual({ keys: 3, changed: 3 });
    expect(report.throttled).toBe(0);
    expect(report.requests).toBeGreaterThan(20);
    expect(report.prefs).toEqual({ users: 8, changed: 1 });
    expect(report.blocks).toEqual({ users: 8, changed: 1 });
    expect(report.hidden).toEqual({ users: 8, changed: 1 });
    const [a, b] = [await snapshot(src, fixture.users, fixture.rooms), await snapshot(dst, fixture.users, fixture.rooms)];
    for (const key of Object.keys(a)) expect({ key, value: b[key] }).toEqual({ key, value: a[key] });
    expect(b['hidden:u2'].data).toHaveLength(3);
    expect(b['invites:team'].data).toHaveLength(1);
    // Unread counts and read marks came across (not all zero).
    expect(a['rooms:u1'].data.some((r: Json) => r.unread > 0)).toBe(true);
    expect(a['history:team'].some((m: Json) => m.editedAtMS)).toBe(true);
    expect(a['history:team'].some((m: Json) => m.messageType === 'recall')).toBe(true);
    expect(a['history:team'].some((m: Json) => m.reactions.length > 0)).toBe(true);
    expect(b['history:archive']).toHaveLength(30 + 900);
    expect(b['room:archive'].status).toBe(0);
    // Members in the order they joined, not by id.
    expect(b['room:quiet'].members.map((m: Json) => m._id)).toEqual(['u3', 'u4', 'u1']);
    expect(b['room:support'].members.map((m: Json) => m._id)).toEqual(['g1', 'u1', 'u2']);

    // A second run changes nothing.
    const again = await runImport(src, url, dst);
    expect(again.users).toMatchObject({ created: 0, updated: 0, unchanged: 8 });
    expect(again.rooms).toMatchObject({ created: 0, updated: 0, unchanged: 5 });
    expect(again.webhooks).toMatchObject({ created: 0, updated: 0, unchanged: 1 });
    expect(again.notices).toEqual([]);
    expect(again.deleted).toEqual({ users: 0, rooms: 0, messages: 0, config: 0, webhooks: 0 });
    expect(again.messages.created + again.messages.updated).toBe(0);
    expect(again.config.changed).toBe(0);
    expect(again.blocks.changed).toBe(0);
    expect(again.prefs).toEqual({ users: 8, changed: 0 });
    expect(again.hidden).toEqual({ users: 8, changed: 0 });
    expect(await snapshot(dst, fixture.users, fixture.rooms)).toEqual(b);

    // A message sent on the target after the import sorts after the imported ones.
    const sent = await api(dst).send('POST', '/rooms/team/message', { message: 'after the move' }, 'u1');
    expect(sent._id > a['history:team'][0]._id).toBe(true);
  }, 60_000);

  it('--dry-run reads everything and writes nothing', async () => {
    const dst = await target();
    const report = await runImport(src, url, dst, { dryRun: true });
    expect(report.dryRun).toBe(true);
    expect(report.users.created).toBeGreaterThanOrEqual(8);
    expect(report.messages.created).toBeGreaterThanOrEqual(fixture.messages);
    const db = dst.server.store.db;
    for (const table of ['users', 'rooms', 'messages', 'import_checkpoints', 'import_ids', 'app_config', 'webhook_endpoints'] as const) {
      const n = Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
      expect({ table, n }).toEqual({ table, n: 0 });
    }
  }, 60_000);

  it('a delta with --since brings only new users, rooms and messages, and changes', async () => {
    const dst = await target();
    await runImport(src, url, dst);
    const since = src.clock.now();
    src.clock.advance(1000);
    const a = api(src);
    await createUser(src, 'late', src.apiKey, { title: 'new hire' });
    await a.send('POST', '/rooms', { _id: 'late-room', name: 'Late', roomType: 'group', members: ['late', 'u1'] });
    const m1 = await a.send('POST', '/rooms/late-room/message', { message: 'hello late' }, 'late');
    const m2 = await a.send('POST', '/rooms/team/message', { message: 'one more' }, 'u2');
    const old = (await a.get('/rooms/team/messages/v3?limit=1&afterTime=0&sortOrder=asc')).data[0];
    await a.send('POST', '/rooms/team/message', { _id: old._id, message: 'edited much later' }, old.sender._id);
    // A reaction alone changes a message, not its room's update time.
    const quietOne = (await a.get('/rooms/support/messages/v3?limit=1&afterTime=0&sortOrder=asc')).data[0];
    await a.send('POST', `/messages/${quietOne._id}/reaction`, { reaction: 'late' }, 'u1');
    await a.send('PUT', '/rooms/quiet', { status: 0 });
    const delta = await runImport(src, url, dst, { since });
    expect(delta.users).toMatchObject({ seen: 1, created: 1 });
    expect(delta.rooms.created).toBe(1);
    expect(delta.messages.created).toBe(2);
    expect(delta.messages.updated).toBe(2);
    const users = [...fixture.users, 'late'];
    const rooms = [...fixture.rooms, 'late-room'];
    const [x, y] = [await snapshot(src, users, rooms), await snapshot(dst, users, rooms)];
    for (const key of Object.keys(x)) expect({ key, value: y[key] }).toEqual({ key, value: x[key] });
    expect(y['history:late-room'].map((m: Json) => m._id)).toEqual([m1._id]);
    expect(y['history:team'][0]._id).toBe(m2._id);
    // A room frozen since the import is no longer in any room list: it was read by its id, and is frozen here too.
    expect(y['room:quiet'].status).toBe(0);
    expect(delta.rooms.updated).toBeGreaterThanOrEqual(1);
    await a.send('PUT', '/rooms/quiet', { status: 1 }); // as it was, for the next tests
  }, 60_000);

  it('a delta carries deletions over (messages, a room, a user, a member, a config key, a webhook endpoint), never of what was written here', async () => {
    const a = api(src);
    // What the source will delete after the full import.
    await createUser(src, 'temp', src.apiKey, { title: 'temporary' });
    await a.send('POST', '/rooms', { _id: 'temp-room', name: 'Temp', roomType: 'group', members: ['temp', 'u1', 'u2'] });
    await a.send('POST', '/rooms', { _id: 'temp-gone', name: 'Gone', roomType: 'group', members: ['u1', 'u2'] });
    const temp: string[] = [];
    for (let i = 0; i < 12; i++) {
      temp.push((await a.send('POST', '/rooms/temp-room/message', { message: `t${i}` }, i % 2 ? 'temp' : 'u1'))._id);
      src.clock.advance(5);
    }
    await a.send('POST', '/rooms/temp-gone/message', { message: 'soon gone' }, 'u1');
    await a.send('POST', '/config', { tempKey: { on: true } });
    const hook = await a.send('POST', '/admin/webhooks', { url: 'http://127.0.0.1:9/hooks/other', events: ['user.muted'], key: 'bot-a' });
    const dst = await target();
    const full = await runImport(src, url, dst);
    expect(full.deleted).toEqual({ users: 0, rooms: 0, messages: 0, config: 0, webhooks: 0 });
    expect(full.webhooks.created).toBe(2);

    const since = src.clock.now();
    src.clock.advance(1000);
    const teamOne = (await a.get('/rooms/team/messages/v3?limit=3')).data[2]._id;
    await a.send('DELETE', `/rooms/team/messages/${teamOne}`);
    for (const id of [temp[0], temp[5], temp[11]]) await a.send('DELETE', `/rooms/temp-room/messages/${id}`);
    await a.send('POST', '/rooms/temp-room/delete/members', { members: ['u2'] });
    await a.send('DELETE', '/rooms/temp-gone');
    await a.send('DELETE', '/admin/clients/temp');
    await a.send('DELETE', '/config/tempKey');
    await a.send('DELETE', `/admin/webhooks/${hook.id}`);
    const delta = await runImport(src, url, dst, { since });
    expect(delta.deleted).toEqual({ users: 1, rooms: 1, messages: 4, config: 1, webhooks: 1 });
    const rooms = [...fixture.rooms, 'temp-room'];
    const [x, y] = [await snapshot(src, fixture.users, rooms), await snapshot(dst, fixture.users, rooms)];
    for (const key of Object.keys(x)) expect({ key, value: y[key] }).toEqual({ key, value: x[key] });
    expect(y['history:temp-room'].map((m: Json) => m._id)).toEqual(temp.filter((_, i) => ![0, 5, 11].includes(i)).reverse());
    expect(y['history:team'].map((m: Json) => m._id)).not.toContain(teamOne);
    expect(y['room:temp-room'].members.map((m: Json) => m._id)).toEqual(['temp', 'u1']);
    expect(y.clients.data.map((u: Json) => u._id)).not.toContain('temp');
    expect(y.config.tempKey).toBeUndefined();
    expect(y.webhooks.data.map((w: Json) => w.id)).not.toContain(hook.id);
    const gone = await dst.request({ method: 'GET', url: '/rooms/temp-gone', headers: { 'IM-API-KEY': dst.apiKey } });
    expect(gone.status).toBe(404);
    expect(Number((await dst.server.store.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('room_id', '=', 'temp-gone').executeTakeFirstOrThrow()).n)).toBe(0);

    // After the move: a message written here stays when the source deletes one of its own and a delta runs again.
    const native = await api(dst).send('POST', '/rooms/temp-room/message', { message: 'written here' }, 'u1');
    const again = src.clock.now();
    src.clock.advance(1000);
    await a.send('DELETE', `/rooms/temp-room/messages/${temp[1]}`);
    const next = await runImport(src, url, dst, { since: again });
    expect(next.deleted).toEqual({ users: 0, rooms: 0, messages: 1, config: 0, webhooks: 0 });
    const here = (await api(dst).get('/rooms/temp-room/messages/v3?limit=100')).data.map((m: Json) => m._id);
    expect(here).toContain(native._id);
    expect(here).not.toContain(temp[1]);
    expect(here).toHaveLength(12 - 4 + 1);

    // A room no list shows and no search finds (it has no members): the source's room count tells, the report says
    // so, and --rooms brings it.
    await a.send('POST', '/rooms', { _id: 'nobody', name: 'Nobody', roomType: 'group' });
    const blind = await runImport(src, url, dst, { since: src.clock.now() });
    expect(blind.skipped).toContainEqual({ entity: 'rooms', id: expect.stringMatching(/^1 of \d+$/), reason: expect.stringContaining('--rooms') });
    const named = await runImport(src, url, dst, { rooms: ['nobody'] });
    expect(named.rooms).toMatchObject({ seen: 1, created: 1 });
    await a.send('DELETE', '/rooms/nobody');

    // With the key of another application the source would look emptied: the import stops before deleting anything.
    await new ImportRepo(dst.server.store.db).setCheckpoint(dst.appId, url, 'application', { appID: 'another-app' }, 0);
    await expect(runImport(src, url, dst)).rejects.toThrow(/check --api-key/);
    expect((await api(dst).get('/admin/clients?limit=100')).totalCount).toBe(y.clients.totalCount);
  }, 60_000);

  it('an interrupted import continues where it stopped and duplicates nothing', async () => {
    const dst = await target();
    await expect(runImport(src, url, dst, { maxRequests: 40, concurrency: 1 })).rejects.toThrow(/request budget/);
    const partial = Number((await dst.server.store.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('app_id', '=', dst.appId).executeTakeFirstOrThrow()).n);
    expect(partial).toBeGreaterThan(0);
    const rest = await runImport(src, url, dst);
    const all = await snapshot(src, fixture.users, fixture.rooms);
    const copy = await snapshot(dst, fixture.users, fixture.rooms);
    for (const key of Object.keys(all)) expect({ key, value: copy[key] }).toEqual({ key, value: all[key] });
    // The rest, not everything again: the first run's pages were kept.
    const stored = Number((await dst.server.store.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('app_id', '=', dst.appId).executeTakeFirstOrThrow()).n);
    expect(partial + rest.messages.created).toBe(stored);
    expect(rest.messages.created).toBeLessThan(stored);
  }, 60_000);
});

describe.each(DIALECTS)('import under the source rate limit (%s)', (dialect) => {
  let src: TestServer;
  let url: string;
  let fixture: { users: string[]; rooms: string[]; messages: number };
  const targets: TestServer[] = [];

  beforeAll(async () => {
    src = await startTestServer(dialect, { rateLimitPerMinute: 60, webhookAllowPrivateNetworks: true });
    url = await src.server.listen();
    fixture = await fill(src, { users: 4, messages: 90 });
    // Filling used the budget of the source's current minute: start from a fresh one.
    src.clock.advance(61_000);
  }, 60_000);

  afterAll(async () => {
    for (const t of targets) await t.close();
    await src?.close();
  });

  it('stays under 60 requests per minute by itself: no 429 at all', async () => {
    const dst = await startTestServer(dialect, { rateLimitPerMinute: 100_000 });
    targets.push(dst);
    const t0 = src.clock.now();
    const report = await runImport(src, url, dst, { limitPerMinute: 60, pageSize: 2 });
    expect(report.requests).toBeGreaterThan(60);
    expect(report.throttled).toBe(0);
    expect(report.messages.created).toBe(fixture.messages);
    // More than 60 requests took more than a minute of the source's time.
    expect(src.clock.now() - t0).toBeGreaterThan(60_000);
    src.clock.advance(61_000);
  }, 60_000);

  it('told a higher limit than the source allows, it honours the 429s and completes', async () => {
    const dst = await startTestServer(dialect, { rateLimitPerMinute: 100_000 });
    targets.push(dst);
    const report = await runImport(src, url, dst, { limitPerMinute: 1000, pageSize: 2 });
    expect(report.throttled).toBeGreaterThan(0);
    expect(report.messages.created).toBe(fixture.messages);
    expect(report.requests - report.throttled).toBeGreaterThan(60);
    src.clock.advance(61_000);
    // The copy equals the source (read back with the source's budget renewed between reads).
    const copy = await api(dst).get('/rooms/team/messages/v3?limit=200');
    src.clock.advance(61_000);
    const orig = await api(src).get('/rooms/team/messages/v3?limit=200');
    expect(copy).toEqual(orig);
    const [x, y] = [await snapshot(src, fixture.users, fixture.rooms), await snapshot(dst, fixture.users, fixture.rooms)];
    for (const key of Object.keys(x)) expect({ key, value: y[key] }).toEqual({ key, value: x[key] });
  }, 60_000);
});

describe.each(DIALECTS)('imported ids (%s)', (dialect) => {
  it('"changed after T" finds an imported message whose id has no milliseconds after its seconds (a MongoDB ObjectId)', async () => {
    const t = await startTestServer(dialect);
    try {
      await createUser(t, 'u1');
      await api(t).send('POST', '/rooms', { _id: 'm', roomType: 'group', members: ['u1'] });
      const second = Math.floor(t.clock.now() / 1000) + 5;
      const created = second * 1000 + 900;
      // ObjectId(second) followed by a counter: characters 9-11 read as 0 ms, but the message is from .900.
      const id = second.toString(16).padStart(8, '0') + '0000000000000abc';
      const row = { app_id: t.appId, id, room_id: 'm', sender_id: 'u1', message_type: 'text', message: '"from mongo"', fields: '{}', reply_id: null, pinned: 0, edited_at: null, message_time: created, created_at: created, updated_at: created };
      await new ImportRepo(t.server.store.db).putMessages(t.appId, [row], []);
      for (const field of ['updatedAt', 'createdAt']) {
        const found = await api(t).get(`/rooms/m/messages/v3?afterTime=${second * 1000 + 500}&timeRangeField=${field}&sortOrder=asc`);
        expect({ field, ids: found.data.map((m: Json) => m._id) }).toEqual({ field, ids: [id] });
        const none = await api(t).get(`/rooms/m/messages/v3?afterTime=${created}&timeRangeField=${field}&sortOrder=asc`);
        expect({ field, ids: none.data.map((m: Json) => m._id) }).toEqual({ field, ids: [] });
      }
    } finally {
      await t.close();
    }
  });
});

describe('the source client', () => {
  const timer = () => {
    let now = 1_000_000;
    const slept: number[] = [];
    return { slept, t: { now: () => now, sleep: async (ms: number) => void (slept.push(ms), (now += ms)) } };
  };
  const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => new Response(JSON.stringify(body), { status, headers });

  it('retries 5xx answers and network errors with growing waits, and honours Retry-After on a 429', async () => {
    const { slept, t } = timer();
    const answers: Array<() => Response> = [
      () => answer(503, { RC: 503 }),
      () => {
        throw new TypeError('fetch failed');
      },
      () => answer(429, { RC: 429 }, { 'Retry-After': '7' }),
      () => answer(200, { RC: 0, result: { ok: 1 } }),
    ];
    const client = new SourceClient({ baseUrl: 'http://source.test/', apiKey: 'k', timer: t, fetch: (async () => answers.shift()!()) as unknown as typeof fetch });
    expect(await client.get('/config')).toEqual({ ok: 1 });
    expect(client.requests).toBe(4);
    expect(client.retries).toBe(2);
    expect(client.throttled).toBe(1);
    expect(slept[1]!).toBeGreaterThan(slept[0]!);
    expect(slept[2]).toBe(7000);
  });

  it('gives up after its attempts, and never sends more than its budget within a minute', async () => {
    const { slept, t } = timer();
    const failing = new SourceClient({ baseUrl: 'http://s', apiKey: 'k', timer: t, maxAttempts: 3, fetch: (async () => answer(500, { message: 'boom' })) as unknown as typeof fetch });
    await expect(failing.get('/x')).rejects.toThrow(/500 boom/);
    expect(failing.requests).toBe(3);
    const sentAt: number[] = [];
    const budgeted = new SourceClient({
      baseUrl: 'http://s',
      apiKey: 'k',
      timer: t,
      limitPerMinute: 5,
      fetch: (async () => (sentAt.push(t.now()), answer(200, { result: 1 }))) as unknown as typeof fetch,
    });
    for (let i = 0; i < 12; i++) await budgeted.get('/y');
    for (const at of sentAt) expect(sentAt.filter((x) => x > at - 60_000 && x <= at).length).toBeLessThanOrEqual(5);
    expect(sentAt.at(-1)! - sentAt[0]!).toBeGreaterThan(120_000);
    expect(slept.length).toBeGreaterThan(0);
  });
});
