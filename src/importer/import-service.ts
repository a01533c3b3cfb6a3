import type { Kysely } from 'kysely';
import type { Clock } from '../lib/clock.js';
import { isObjectId } from '../lib/ids.js';
import { ImportRepo, type ReactionInput } from '../store/import-repo.js';
import { newWebhookSecret } from '../webhooks/signing.js';
import type { MessageRow } from '../store/messages-repo.js';
import type { MemberRow, RoomRow } from '../store/rooms-repo.js';
import type { Database } from '../store/schema.js';
import type { UserRow } from '../store/users-repo.js';
import { SourceClient, SourceError, type ImportTimer, realTimer } from './source-client.js';

type Json = Record<string, any>;

export interface ImportOptions {
  /** The source server's base URL and the application's API key there. */
  from: string;
  apiKey: string;
  /** The target application (it must exist; the CLI creates it). */
  appId: string;
  /** Only what changed after this time (epoch ms): users updated, rooms updated, messages changed. */
  since?: number;
  /** Import these rooms (by id) only, also frozen ones no room list shows. */
  rooms?: string[];
  dryRun?: boolean;
  /** Rooms imported at the same time (default 4). */
  concurrency?: number;
  /** Requests per minute the importer allows itself (default 1000, the source's documented limit). */
  limitPerMinute?: number;
  /** Messages per history page (default 200, the API's maximum). */
  pageSize?: number;
  signal?: AbortSignal;
  /** Stop after this many requests (tests interrupt an import with it). */
  maxRequests?: number;
  timer?: ImportTimer;
  onProgress?: (p: ImportProgress) => void;
}

export interface EntityCounts {
  seen: number;
  created: number;
  updated: number;
  unchanged: number;
}

export interface ImportReport {
  source: string;
  appId: string;
  dryRun: boolean;
  since: string | null;
  users: EntityCounts;
  rooms: EntityCounts;
  messages: EntityCounts;
  blocks: { users: number; changed: number };
  /** Users' own preferences (GET /me/pref): users read, users whose preferences changed here. */
  prefs: { users: number; changed: number };
  /** Messages users hid for themselves (GET /messages/user-delete): users read, users whose list changed here. */
  hidden: { users: number; changed: number };
  groups: EntityCounts;
  config: { keys: number; changed: number };
  /** Application-level webhook endpoints (GET /admin/webhooks, where the source has it). */
  webhooks: EntityCounts;
  /** How the rooms were found: users' room lists, by id (imported before; --rooms), by POST /search; the source's count when it tells. */
  discovery: { lists: number; byId: number; bySearch: number; sourceTotal: number | null };
  /** Deleted here because the source no longer has them (only what an import wrote). */
  deleted: { users: number; rooms: number; messages: number; config: number; webhooks: number };
  skipped: Array<{ entity: string; id: string; reason: string }>;
  /** What the operator has to do after the import (an imported webhook endpoint's new secret, ...). */
  notices: Array<{ entity: string; id: string; notice: string }>;
  requests: number;
  throttled: number;
  retries: number;
  limitPerMinute: number;
  durationMs: number;
  messagesPerSecond: number;
}

export interface ImportProgress {
  phase: 'config' | 'users' | 'rooms' | 'done';
  usersDone: number;
  usersTotal: number;
  roomsDone: number;
  roomsTotal: number;
  messagesDone: number;
  /** Messages the source holds in the rooms started so far, plus an estimate for the rest. */
  messagesEstimate: number;
  messagesPerSecond: number;
  requests: number;
  requestsInLastMinute: number;
  limitPerMinute: number;
  throttled: number;
  etaSeconds: number | null;
  /** Set when the importer has just started waiting this long for its request budget (or a 429's retryAfter). */
  waitingMs?: number;
}

interface RoomState {
  /** The oldest message imported while paging back; the history is complete when `complete`. */
  oldest?: string;
  complete?: boolean;
  /** The newest updatedAtMS seen among the room's messages: later changes are read from there on. */
  watermark?: number;
}

const emptyCounts = (): EntityCounts => ({ seen: 0, created: 0, updated: 0, unchanged: 0 });

/** Fields of the API's objects that are columns (or derived): whatever else an object carries is its custom fields. */
const USER_FIELDS = new Set(['_id', 'id', 'appID', '__v', 'nickname', 'avatarUrl', 'description', 'isRobot', 'mute', 'address', 'userAgent', 'lastLoginTime', 'lastLoginTimeMS', 'createdAt', 'createdAtMS', 'updatedAt', 'updatedAtMS', 'notificationEnabled']);
const ROOM_FIELDS = new Set([
  '_id', 'id', 'appID', 'roomType', 'roomTags', 'status', 'opening', 'botMode', 'encrypted', 'serviceStatus', 'name', 'cover', 'description', 'webhook', 'botState', 'extParams', 'owner',
  'managers', 'members', 'memberProperties', 'lastMessage', 'createdTime', 'createdTimeMS', 'updatedAt', 'updatedAtMS', 'unread', 'muted', 'isMentioned', 'pref', 'isSuperuser',
]);
const MESSAGE_FIELDS = new Set([
  '_id', 'id', 'appID', 'room', 'messageType', 'message', 'sender', 'messageTime', 'messageTimeMS', 'createdAt', 'createdAtMS', 'updatedAt', 'updatedAtMS', 'pinned', 'reactions',
  'reactionCount', 'isDeleted', 'reply', 'editedAt', 'editedAtMS',
]);
const MEMBER_PROPERTY_FIELDS = new Set(['client', 'badge', 'role', 'lastRead', 'isSuperuser']);
const PREF_DEFAULTS = JSON.stringify({ tags: [], tagColors: {}, hidden: false, sticky: false });

/**
 * Copies an application from a running IMKIT-compatible server through its API into this server's store
 * (docs/migrating.md). Reads with the API key only; writes through `ImportRepo`, one transaction per page, with a
 * checkpoint per entity in the same transaction, so a run that is killed continues where it stopped and a run
 * over unchanged data writes nothing.
 */
export class ImportService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async run(opts: ImportOptions): Promise<ImportReport> {
    const timer = opts.timer ?? realTimer;
    const started = timer.now();
    const client = new SourceClient({
      baseUrl: opts.from,
      apiKey: opts.apiKey,
      limitPerMinute: opts.limitPerMinute,
      timer,
      signal: opts.signal,
      maxRequests: opts.maxRequests,
      onWait: (ms) => {
        progress.waitingMs = ms;
        tell();
        progress.waitingMs = undefined;
      },
    });
    const source = opts.from.replace(/\/+$/, '');
    const app = opts.appId;
    const dry = opts.dryRun === true;
    const pageSize = Math.min(200, Math.max(1, opts.pageSize ?? 200));
    const report: ImportReport = {
      source,
      appId: app,
      dryRun: dry,
      since: opts.since === undefined ? null : new Date(opts.since).toISOString(),
      users: emptyCounts(),
      rooms: emptyCounts(),
      messages: emptyCounts(),
      blocks: { users: 0, changed: 0 },
      prefs: { users: 0, changed: 0 },
      hidden: { users: 0, changed: 0 },
      groups: emptyCounts(),
      config: { keys: 0, changed: 0 },
      webhooks: emptyCounts(),
      discovery: { lists: 0, byId: 0, bySearch: 0, sourceTotal: null },
      deleted: { users: 0, rooms: 0, messages: 0, config: 0, webhooks: 0 },
      skipped: [],
      notices: [],
      requests: 0,
      throttled: 0,
      retries: 0,
      limitPerMinute: client.limitPerMinute,
      durationMs: 0,
      messagesPerSecond: 0,
    };
    const progress: ImportProgress = {
      phase: 'config',
      usersDone: 0,
      usersTotal: 0,
      roomsDone: 0,
      roomsTotal: 0,
      messagesDone: 0,
      messagesEstimate: 0,
      messagesPerSecond: 0,
      requests: 0,
      requestsInLastMinute: 0,
      limitPerMinute: client.limitPerMinute,
      throttled: 0,
      etaSeconds: null,
    };
    let knownTotals = 0;
    let roomsStarted = 0;
    const tell = () => {
      const secs = Math.max(0.001, (timer.now() - started) / 1000);
      progress.requests = client.requests;
      progress.requestsInLastMinute = client.usedInWindow();
      progress.throttled = client.throttled;
      progress.messagesPerSecond = Math.round(progress.messagesDone / secs);
      const perRoom = roomsStarted ? knownTotals / roomsStarted : 0;
      progress.messagesEstimate = Math.round(knownTotals + perRoom * Math.max(0, progress.roomsTotal - roomsStarted));
      const left = Math.max(0, progress.messagesEstimate - progress.messagesDone);
      progress.etaSeconds = progress.messagesPerSecond > 0 ? Math.round(left / progress.messagesPerSecond) : null;
      opts.onProgress?.({ ...progress });
    };
    const repo = new ImportRepo(this.db);
    const tx = async <T>(fn: (r: ImportRepo) => Promise<T>): Promise<T> => {
      if (dry) return fn(new DryRepo() as unknown as ImportRepo);
      return this.db.transaction().execute((trx) => fn(new ImportRepo(trx)));
    };
    const finish = () => {
      report.requests = client.requests;
      report.throttled = client.throttled;
      report.retries = client.retries;
      report.durationMs = timer.now() - started;
      report.messagesPerSecond = Math.round((report.messages.created + report.messages.updated) / Math.max(0.001, report.durationMs / 1000));
    };

    try {
      // --- application config (written after the first page of users, which says which application the key reads)
      const config = (await client.get<Json>('/config')) ?? {};
      const values: Record<string, string> = {};
      for (const [k, v] of Object.entries(config)) values[k] = JSON.stringify(v);
      report.config.keys = Object.keys(values).length;

      // --- users, a page at a time (each page one transaction)
      progress.phase = 'users';
      const userIds: string[] = [];
      const q = opts.since !== undefined ? JSON.stringify({ updatedAtMS: { $gt: opts.since } }) : undefined;
      for (let skip = 0; ; ) {
        const page = await client.get<{ totalCount: number; data: Json[] }>('/admin/clients', { limit: 100, skip, q });
        progress.usersTotal = page.totalCount;
        if (page.data.length === 0) break;
        if (skip === 0) await this.sameApplication(tx, repo, dry, app, source, page.data[0]!.appID);
        const rows = page.data.map((u) => userRow(app, u));
        const res = await tx(async (r) => {
          const out = await r.upsertUsers(app, rows);
          await r.track(app, source, 'user', '', rows.map((row) => row.id));
          return out;
        });
        report.users.seen += rows.length;
        report.users.created += res.created;
        report.users.updated += res.updated;
        report.users.unchanged += rows.length - res.created - res.updated;
        for (const row of rows) userIds.push(row.id);
        skip += page.data.length;
        progress.usersDone = skip;
        tell();
        if (skip >= page.totalCount) break;
      }

      report.config.changed = await tx(async (r) => {
        const n = await r.setConfig(app, values, this.clock.now());
        await r.track(app, source, 'config', '', Object.keys(values));
        return n;
      });

      // Groups after users: their members must exist.
      const groups = await client.get<{ data: Json[] }>('/admin/groups', { limit: 1000 });
      for (const g of groups?.data ?? []) {
        report.groups.seen++;
        const row = { app_id: app, id: String(g._id), nickname: String(g.nickname ?? g._id), avatar_url: (g.avatarUrl as string | undefined) ?? null, created_at: ms(g.createdAtMS, g.createdAt), updated_at: ms(g.updatedAtMS, g.updatedAt) };
        const changed = await tx((r) => r.replaceGroup(app, row, (g.members as string[]) ?? []));
        if (changed) report.groups.updated++;
        else report.groups.unchanged++;
      }

      // --- application-level webhook endpoints, where the source lists them (an imkit-server; not the hosted service)
      const endpoints = await optional(client.get<{ data: Json[] }>('/admin/webhooks', {}, { allow404: true }));
      if (endpoints) await this.importWebhooks(tx, app, source, endpoints.data ?? [], report);

      // --- every user's blocks and room list: rooms are discovered through their members, as the SDKs see them.
      // With --since, every user is still asked: a room can change without its users changing.
      const everyone: string[] = opts.since === undefined ? userIds : await this.allUserIds(client);
      const rooms = new Map<string, { room: Json; views: Map<string, { unread: number; pref: Json | undefined; muted: boolean }> }>();
      const wanted = opts.rooms ? new Set(opts.rooms) : undefined;
      progress.phase = 'rooms';
      const discover = async (userId: string) => {
        const blocks = await client.get<{ data: Json[] }>('/blockStatus/my', {}, { userId, allow404: true });
        if (blocks) {
          const rows = (blocks.data ?? []).map((b) => ({ app_id: app, blocker: userId, blockee: idOf(b.blockee)!, created_at: ms(b.createdAtMS, b.createdAt), updated_at: ms(b.updatedAtMS, b.updatedAt) }));
          report.blocks.users++;
          if (await tx((r) => r.replaceBlocks(app, userId, rows))) report.blocks.changed++;
        }
        const userPrefs = await client.get<Array<{ key: string; data: unknown }>>('/me/pref', {}, { userId, allow404: true });
        if (userPrefs) {
          report.prefs.users++;
          const rows = userPrefs.map((p) => ({ key: String(p.key), data: JSON.stringify(p.data ?? null) }));
          if (await tx((r) => r.replaceUserPrefs(app, userId, rows, this.clock.now()))) report.prefs.changed++;
        }
        for (let skip = 0; ; ) {
          const page = await client.get<{ totalCount: number; data: Json[] }>(
            '/rooms',
            // Not `updatedAfter` with --since: an edit or a reaction does not change a room's update time, and the
            // whole list costs one request as well.
            { limit: 1000, skip },
            { userId, allow404: true },
          );
          if (!page) {
            report.skipped.push({ entity: 'user', id: userId, reason: 'the source no longer has this user' });
            break;
          }
          for (const room of page.data) {
            if (wanted && !wanted.has(room._id)) continue;
            let entry = rooms.get(room._id);
            if (!entry) rooms.set(room._id, (entry = { room, views: new Map() }));
            entry.views.set(userId, { unread: Number(room.unread ?? 0), pref: room.pref, muted: room.muted === true });
          }
          skip += page.data.length;
          if (page.data.length === 0 || skip >= page.totalCount) break;
        }
      };
      // A few users at a time, as rooms are: the requests wait on the source, not on this process.
      const pending = [...everyone];
      const discoverer = async () => {
        for (let userId = pending.shift(); userId !== undefined; userId = pending.shift()) await discover(userId);
      };
      await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, discoverer));
      report.discovery.lists = rooms.size;
      if (rooms.size > 0) await this.sameApplication(tx, repo, dry, app, source, [...rooms.values()][0]!.room.appID);

      // Rooms imported before that no room list shows now (frozen since, or left by everyone), and rooms named with
      // --rooms that no list showed: read directly. One the source no longer has is deleted here too.
      const checkpoints = dry ? new Map<string, unknown>() : await repo.checkpoints(app, source, 'room:');
      const known = [...checkpoints.keys()].map((k) => k.slice('room:'.length)).filter((id) => !wanted || wanted.has(id));
      const readById = async (id: string): Promise<Json | undefined> => {
        try {
          return await client.get<Json>(`/rooms/${encodeURIComponent(id)}`);
        } catch (err) {
          if (err instanceof SourceError && err.status === 404) return undefined;
          throw err;
        }
      };
      for (const id of new Set([...(opts.rooms ?? []), ...known])) {
        if (rooms.has(id)) continue;
        let room: Json | undefined;
        try {
          room = await client.get<Json>(`/rooms/${encodeURIComponent(id)}`);
        } catch (err) {
          if (!(err instanceof SourceError && err.status === 404)) throw err;
          if (!checkpoints.has(`room:${id}`)) report.skipped.push({ entity: 'room', id, reason: 'not found on the source' });
          else if (err.code !== 'ROOM_NOT_FOUND') report.skipped.push({ entity: 'room', id, reason: `the source answered 404${err.code ? ` ${err.code}` : ''} (kept here)` });
          else if (await tx((r) => r.deleteRoom(app, source, id))) report.deleted.rooms++;
          continue;
        }
        rooms.set(id, { room, views: new Map() });
        report.discovery.byId++;
      }

      // Rooms no list shows and no import has seen (frozen before the first import; rooms whose members are all
      // banned): the source's room count says whether any are left, and POST /search (roomMember, with the API key
      // alone: every room of any status) finds the rooms of each user until none are.
      if (!wanted) await this.searchRooms(client, everyone, rooms, readById, report);
      progress.roomsTotal = rooms.size;
      tell();

      // --- rooms: row, tags, members, preferences, bans, then the history; a few rooms at a time
      const queue = [...rooms.values()];
      const worker = async () => {
        for (let entry = queue.shift(); entry; entry = queue.shift()) {
          const { room, views } = entry;
          const roomId = String(room._id);
          roomsStarted++;
          const bans = await client.get<{ data: Json[] }>(`/blockStatus/room/${encodeURIComponent(roomId)}`, {}, { allow404: true });
          const banRows = bans?.data.map((b) => ({
            app_id: app,
            room_id: roomId,
            user_id: idOf(b.blockee)!,
            banned_by: idOf(b.blocker),
            unblock_at: b.unblockAtMS ?? (b.unblockAt ? Date.parse(b.unblockAt) : null),
            created_at: ms(b.createdAtMS, b.createdAt),
            updated_at: ms(b.updatedAtMS, b.updatedAt),
          }));
          const invites = await client.get<{ data: Json[] }>(`/rooms/${encodeURIComponent(roomId)}/invitations`, {}, { allow404: true });
          const inviteRows = invites?.data.map((i) => ({ app_id: app, room_id: roomId, invitee: idOf(i.invitee)!, inviter: idOf(i.inviter), created_at: ms(i.createdTimeMS, i.createdTime) }));
          const joins = dry ? new Map<string, number>() : await repo.joinTimes(app, roomId);
          const { row, tags, members, prefs } = roomRows(app, room, views, joins);
          // A room read by its id (no room list showed it) comes without its members' own views: their preferences are left as they are.
          const outcome = await tx((r) => r.putRoom(app, row, tags, members, views.size ? prefs : undefined, banRows, inviteRows));
          report.rooms.seen++;
          report.rooms[outcome]++;
          const state = (checkpoints.get(`room:${roomId}`) as RoomState | undefined) ?? {};
          const sourceTotal = await this.importHistory(client, tx, app, source, roomId, state, pageSize, opts.since, report, (n, total) => {
            progress.messagesDone += n;
            if (total !== undefined) knownTotals += total;
            tell();
          });
          if (!dry) {
            // Messages deleted on the source: the room holds fewer than were imported. Its ids are read again to find which.
            if (sourceTotal !== undefined && (await repo.importedMessageCount(app, source, roomId)) > sourceTotal) {
              // (Awaited first: `x += await` would read x before the other rooms' workers add to it.)
              const n = await this.deleteGone(client, tx, app, source, roomId);
              report.deleted.messages += n;
            }
            // Join times from the system messages now imported (members keep the source's order).
            const settled = roomRows(app, room, views, await repo.joinTimes(app, roomId)).members;
            await tx(async (r) => {
              await r.settleRoom(app, roomId, row.last_message_id);
              await r.setJoinTimes(app, roomId, settled);
            });
          }
          progress.roomsDone++;
          tell();
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));

      // --- what each user hid for themself: after the messages, whose rooms it needs
      const hiders = [...everyone];
      const hideWorker = async () => {
        for (let userId = hiders.shift(); userId !== undefined; userId = hiders.shift()) {
          const hidden = await client.get<{ data: string[] }>('/messages/user-delete', {}, { userId, allow404: true });
          if (!hidden) continue;
          report.hidden.users++;
          const ids = hidden.data ?? [];
          const res = await tx((r) => r.replaceHidden(app, userId, ids, this.clock.now()));
          if (res.changed) report.hidden.changed++;
          if (res.unknown > 0) report.skipped.push({ entity: 'hidden messages', id: userId, reason: `${res.unknown} hidden message ids are not among the imported messages` });
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, hideWorker));

      // --- users and config keys imported before that the source no longer has (never what was written here since)
      if (!dry && (everyone.length > 0 || rooms.size > 0)) {
        const present = new Set(everyone);
        for (const id of await repo.tracked(app, source, 'user')) {
          if (!present.has(id) && (await tx((r) => r.deleteUser(app, source, id)))) report.deleted.users++;
        }
        const gone = (await repo.tracked(app, source, 'config')).filter((k) => !(k in values));
        if (gone.length) {
          const n = await tx((r) => r.deleteConfig(app, source, gone));
          report.deleted.config += n;
        }
      }
      progress.phase = 'done';
      tell();
    } finally {
      finish();
    }
    return report;
  }

  /**
   * A room's history. The first time it pages back from the newest message (checkpointing the oldest imported
   * one with each page); once complete, it reads the messages changed since the newest update seen (new ones,
   * edits, recalls, pins, reactions), paging forward.
   */
  private async importHistory(
    client: SourceClient,
    tx: <T>(fn: (r: ImportRepo) => Promise<T>) => Promise<T>,
    app: string,
    source: string,
    roomId: string,
    state: RoomState,
    pageSize: number,
    since: number | undefined,
    report: ImportReport,
    onPage: (n: number, total?: number) => void,
  ): Promise<number | undefined> {
    const path = `/rooms/${encodeURIComponent(roomId)}/messages/v3`;
    const st: RoomState = { ...state };
    /** The room's message count on the source, as the last page read gave it. */
    let sourceTotal: number | undefined;
    const read = async (query: Record<string, string | number | undefined>) => {
      const page = await client.get<{ totalCount: number; data: Json[] }>(path, query);
      if (typeof page.totalCount === 'number') sourceTotal = page.totalCount;
      return page;
    };
    const write = async (data: Json[], next: RoomState) => {
      const rows: MessageRow[] = [];
      const reactions: ReactionInput[] = [];
      // A source that marks deleted messages (isDeleted) instead of leaving them out: they are deleted here too.
      const gone: string[] = [];
      for (const m of data) {
        if (m.isDeleted === true) {
          gone.push(String(m._id));
          next.watermark = Math.max(next.watermark ?? 0, ms(m.updatedAtMS, m.updatedAt));
          continue;
        }
        const row = messageRow(app, roomId, m);
        if (!row) {
          report.skipped.push({ entity: 'message', id: String(m._id), reason: 'not an ObjectId-shaped id' });
          continue;
        }
        rows.push(row);
        (m.reactions as Json[] | undefined)?.forEach((r, i) => reactions.push({ message_id: row.id, user_id: idOf(r.client)!, reaction: String(r.reaction), created_at: row.created_at + i }));
        next.watermark = Math.max(next.watermark ?? 0, row.updated_at);
      }
      const res = await tx(async (r) => {
        const out = await r.putMessages(app, rows, reactions);
        await r.track(app, source, 'message', roomId, rows.map((row) => row.id));
        if (gone.length) {
          const n = await r.deleteMessages(app, source, roomId, gone);
          report.deleted.messages += n;
        }
        await r.setCheckpoint(app, source, `room:${roomId}`, next, this.clock.now());
        return out;
      });
      report.messages.seen += rows.length;
      report.messages.created += res.created;
      report.messages.updated += res.updated;
      report.messages.unchanged += rows.length - res.created - res.updated;
      return res.created + res.updated;
    };

    const wasComplete = st.complete === true;
    if (!st.complete) {
      // Paging back; `beforeMessage` is inclusive on /messages/v3, so the anchor comes back and is dropped.
      let first = true;
      for (;;) {
        const limit = Math.min(200, pageSize + (st.oldest ? 1 : 0));
        const page = await read({ limit, beforeMessage: st.oldest, sortOrder: 'desc' });
        const data = page.data.filter((m) => m._id !== st.oldest);
        // A short page is the last one: no request for an empty page after it.
        const last = page.data.length < limit;
        if (data.length > 0) {
          st.oldest = String(data[data.length - 1]!._id);
          if (last) {
            st.complete = true;
            st.watermark ??= 0;
          }
          const n = await write(data, st);
          onPage(n, first ? page.totalCount : undefined);
          first = false;
        }
        if (data.length === 0 || last) {
          if (data.length === 0) {
            st.complete = true;
            st.watermark ??= 0;
            await tx((r) => r.setCheckpoint(app, source, `room:${roomId}`, st, this.clock.now()));
            onPage(0, first ? page.totalCount : undefined);
          }
          break;
        }
      }
    }
    // Forward: what changed after the watermark (or after --since), in id order with the time fixed. The
    // watermark's own millisecond is read again: a change in that millisecond may have come after the read.
    const from = Math.max(0, wasComplete && since !== undefined ? since : (st.watermark ?? 0) - 1);
    let after: string | undefined;
    for (;;) {
      const page = await read({
        limit: Math.min(200, pageSize + (after ? 1 : 0)),
        afterTime: from,
        timeRangeField: 'updatedAt',
        afterMessage: after,
        sortOrder: 'asc',
      });
      const data = page.data.filter((m) => m._id !== after);
      if (data.length === 0) break;
      after = String(data[data.length - 1]!._id);
      onPage(await write(data, st));
    }
    return sourceTotal;
  }

  /**
   * Deletes here the messages of a room imported before that the source no longer has. The source's ids are read
   * newest first, a page at a time; the imported ids in the span of each page that it does not hold are deleted
   * (a message sent meanwhile is newer than the first page's span and was not imported yet).
   */
  private async deleteGone(client: SourceClient, tx: <T>(fn: (r: ImportRepo) => Promise<T>) => Promise<T>, app: string, source: string, roomId: string): Promise<number> {
    const path = `/rooms/${encodeURIComponent(roomId)}/messages/v3`;
    const repo = new ImportRepo(this.db);
    let high: string | null = null;
    let deleted = 0;
    for (;;) {
      const page: { data: Json[] } = await client.get<{ data: Json[] }>(path, { limit: 200, beforeMessage: high ?? undefined, sortOrder: 'desc' });
      const ids = page.data.map((m) => String(m._id)).filter((id) => id !== high);
      // The last page (shorter than asked) spans everything below the previous one.
      const last: boolean = page.data.length < 200;
      const low: string | null = last || ids.length === 0 ? null : ids[ids.length - 1]!;
      const held = new Set(ids);
      const gone = (await repo.importedMessagesBetween(app, source, roomId, low, high)).filter((id) => !held.has(id));
      if (gone.length) {
        const n = await tx((r) => r.deleteMessages(app, source, roomId, gone));
        deleted += n;
      }
      if (low === null) return deleted;
      high = low;
    }
  }

  /**
   * Stops when the source answers for another application than the earlier imports from it into this one did:
   * a wrong API key would otherwise make everything imported look deleted on the source.
   */
  private async sameApplication(tx: <T>(fn: (r: ImportRepo) => Promise<T>) => Promise<T>, repo: ImportRepo, dry: boolean, app: string, source: string, sourceApp: unknown): Promise<void> {
    if (dry || typeof sourceApp !== 'string' || sourceApp === '') return;
    const stored = (await repo.checkpoints(app, source, 'application')).get('application') as { appID?: string } | undefined;
    if (stored?.appID === sourceApp) return;
    if (stored?.appID !== undefined) {
      throw new SourceError(`the source answers for application "${sourceApp}", but the earlier imports into "${app}" from ${source} came from "${stored.appID}": check --api-key`, 0, 'OTHER_APPLICATION');
    }
    await tx((r) => r.setCheckpoint(app, source, 'application', { appID: sourceApp }, this.clock.now()));
  }

  /**
   * Application-level webhook endpoints. The source never shows an endpoint's signing secret, so a new endpoint
   * gets a new one here, which nobody knows: the report says to rotate it (and give the receiver the new secret).
   * An endpoint imported before and gone from the source is deleted.
   */
  private async importWebhooks(tx: <T>(fn: (r: ImportRepo) => Promise<T>) => Promise<T>, app: string, source: string, list: Json[], report: ImportReport): Promise<void> {
    const seen = new Set<string>();
    for (const e of list) {
      if (typeof e.id !== 'string' || typeof e.url !== 'string' || !Array.isArray(e.events)) continue;
      seen.add(e.id);
      report.webhooks.seen++;
      const row = {
        app_id: app,
        id: e.id,
        url: e.url,
        events: JSON.stringify(e.events),
        key: typeof e.key === 'string' ? e.key : null,
        description: typeof e.description === 'string' ? e.description : null,
        created_at: ms(undefined, e.createdAt),
        updated_at: ms(undefined, e.updatedAt),
      };
      const outcome = await tx(async (r) => {
        const out = await r.putWebhook(app, row, newWebhookSecret());
        if (out !== 'key taken') await r.track(app, source, 'webhook', '', [row.id]);
        return out;
      });
      if (outcome === 'key taken') {
        report.skipped.push({ entity: 'webhook', id: row.id, reason: `another endpoint here has its key "${row.key}"` });
        continue;
      }
      report.webhooks[outcome]++;
      if (outcome === 'created') {
        report.notices.push({ entity: 'webhook', id: row.id, notice: `imported with a new signing secret (the source never shows its own): POST /admin/webhooks/${row.id}/rotate-secret with {"expiresIn":"0"} here and give the receiver of ${redactUrl(row.url)} the secret it answers` });
      }
    }
    if (report.dryRun) return;
    for (const id of await new ImportRepo(this.db).tracked(app, source, 'webhook')) {
      if (!seen.has(id) && (await tx((r) => r.deleteWebhook(app, source, id, this.clock.now())))) report.deleted.webhooks++;
    }
  }

  /**
   * Rooms that no room list shows and no earlier import saw: frozen before the first import, or whose members are
   * all banned from them. `GET /admin/stats` (totalRoomCount) tells whether any are left; when it does not say, or
   * some are, `POST /search` for rooms with a member of each user's id (the API key alone searches rooms of any
   * status) finds them, user after user until the count is reached. What is still missing is reported.
   */
  private async searchRooms(
    client: SourceClient,
    users: string[],
    rooms: Map<string, { room: Json; views: Map<string, { unread: number; pref: Json | undefined; muted: boolean }> }>,
    readById: (id: string) => Promise<Json | undefined>,
    report: ImportReport,
  ): Promise<void> {
    const stats = await optional(client.get<Json>('/admin/stats', {}, { allow404: true }));
    const total = typeof stats?.totalRoomCount === 'number' ? stats.totalRoomCount : undefined;
    report.discovery.sourceTotal = total ?? null;
    if (total !== undefined && rooms.size >= total) return;
    let truncated = false;
    for (const userId of users) {
      if (total !== undefined && rooms.size >= total) break;
      if (userId.length > 256) continue;
      const found = await optional(client.post<Json>('/search', { type: ['roomMember'], keyword: userId, limit: SEARCH_LIMIT }, { allow404: true }));
      const list = found?.roomMember;
      if (!Array.isArray(list)) break; // the source has no such search: nothing more to find this way
      if (list.length >= SEARCH_LIMIT) truncated = true;
      for (const hit of list as Json[]) {
        const id = idOf(hit);
        if (id === null || rooms.has(id)) continue;
        const room = await readById(id);
        if (!room) continue;
        rooms.set(id, { room, views: new Map() });
        report.discovery.bySearch++;
      }
    }
    if (total !== undefined && rooms.size < total) {
      report.skipped.push({
        entity: 'rooms',
        id: `${total - rooms.size} of ${total}`,
        reason: `the source counts ${total} rooms and ${rooms.size} were found (rooms without members${truncated ? ', or users with more than 200 rooms' : ''}): name them with --rooms`,
      });
    }
  }

  private async allUserIds(client: SourceClient): Promise<string[]> {
    const ids: string[] = [];
    for (let skip = 0; ; ) {
      const page = await client.get<{ totalCount: number; data: Json[] }>('/admin/clients', { limit: 100, skip });
      for (const u of page.data) ids.push(String(u._id));
      skip += page.data.length;
      if (page.data.length === 0 || skip >= page.totalCount) return ids;
    }
  }
}

/** Writes nothing: `--dry-run` counts what would be imported (everything as new). */
class DryRepo {
  async upsertUsers(_app: string, rows: UserRow[]) {
    return { created: rows.length, updated: 0 };
  }
  async replaceBlocks() {
    return false;
  }
  async replaceUserPrefs() {
    return false;
  }
  async replaceHidden() {
    return { changed: false, unknown: 0 };
  }
  async replaceGroup() {
    return false;
  }
  async setConfig() {
    return 0;
  }
  async putRoom() {
    return 'created' as const;
  }
  async putMessages(_app: string, rows: MessageRow[]) {
    return { created: rows.length, updated: 0 };
  }
  async settleRoom() {}
  async setCheckpoint() {}
  async track() {}
  async deleteMessages(_app: string, _source: string, _room: string, ids: string[]) {
    return ids.length;
  }
  async putWebhook() {
    return 'created' as const;
  }
}

const SEARCH_LIMIT = 200;

/** A read the source may not offer (404, or 4xx: a route of another server, a key without the scope): undefined then. */
async function optional<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof SourceError && err.status >= 400 && err.status < 500) return undefined;
    throw err;
  }
}

/** A URL as reports show it: without credentials or query, which may hold a token. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(an endpoint URL)';
  }
}

function idOf(x: unknown): string | null {
  if (typeof x === 'string') return x;
  if (x && typeof x === 'object' && '_id' in x) return String((x as Json)._id);
  return null;
}

/** An epoch-ms field of the API, or its ISO twin. */
function ms(value: unknown, isoText?: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof isoText === 'string') {
    const t = Date.parse(isoText);
    if (!Number.isNaN(t)) return t;
  }
  return 0;
}

function custom(obj: Json, known: Set<string>): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(obj)) if (!known.has(k)) out[k] = v;
  return out;
}

export function userRow(app: string, u: Json): UserRow {
  return {
    app_id: app,
    id: String(u._id),
    nickname: u.nickname ?? null,
    avatar_url: u.avatarUrl ?? null,
    description: u.description ?? null,
    is_robot: u.isRobot === true ? 1 : 0,
    extra: JSON.stringify(custom(u, USER_FIELDS)),
    address: u.address === undefined ? null : JSON.stringify(u.address),
    user_agent: u.userAgent ?? null,
    last_login_at: u.lastLoginTimeMS ? Number(u.lastLoginTimeMS) : null,
    created_at: ms(u.createdAtMS, u.createdAt),
    updated_at: ms(u.updatedAtMS, u.updatedAt),
  };
}

function roomRows(app: string, room: Json, views: Map<string, { unread: number; pref: Json | undefined; muted: boolean }>, joins: Map<string, number>) {
  const id = String(room._id);
  const createdAt = ms(room.createdTimeMS, room.createdTime);
  const row: RoomRow = {
    app_id: app,
    id,
    name: room.name ?? null,
    cover: room.cover ?? null,
    description: room.description ?? null,
    room_type: room.roomType ?? 'group',
    room_tags: JSON.stringify(room.roomTags ?? []),
    webhook: room.webhook ?? null,
    bot_mode: room.botMode === true ? 1 : 0,
    bot_state: room.botState ?? null,
    encrypted: room.encrypted === true ? 1 : 0,
    ext_params: room.extParams ?? null,
    status: Number(room.status ?? 1),
    opening: Number(room.opening ?? 1),
    owner: idOf(room.owner),
    extra: JSON.stringify(custom(room, ROOM_FIELDS)),
    last_message_id: idOf(room.lastMessage),
    message_count: 0,
    created_at: createdAt,
    updated_at: ms(room.updatedAtMS, room.updatedAt),
  };
  const props = new Map<string, Json>(((room.memberProperties as Json[] | undefined) ?? []).map((p) => [String(p.client), p]));
  const members: MemberRow[] = [];
  // The API shows no join time, but lists members in the order they joined (then by id): each member's time is
  // the one its latest join message gives, else the room's creation, raised where needed to keep that order.
  let prev = { at: Number.NEGATIVE_INFINITY, id: '' };
  for (const m of (room.members as Json[] | undefined) ?? []) {
    const p = props.get(String(m._id)) ?? {};
    let at = Math.max(joins.get(String(m._id)) ?? createdAt, prev.at);
    if (at === prev.at && String(m._id) < prev.id) at++;
    prev = { at, id: String(m._id) };
    const base = {
      app_id: app,
      room_id: id,
      role: p.role ?? 'member',
      properties: JSON.stringify(custom(p, MEMBER_PROPERTY_FIELDS)),
      joined_at: at,
    };
    members.push({ ...base, user_id: String(m._id), badge: Number(p.badge ?? 0), last_read: p.lastRead ?? null, via: null });
    if (m.clientType === 'group') {
      // Users in through a user group: their unread as their own room list shows it; their read mark is not exposed.
      for (const inner of (m.members as Json[] | undefined) ?? []) {
        const uid = String(inner._id);
        members.push({ ...base, role: 'member', properties: '{}', user_id: uid, badge: views.get(uid)?.unread ?? 0, last_read: null, via: String(m._id) });
      }
    }
  }
  const prefs = [];
  for (const [userId, v] of views) {
    const { muted: _m, ...data } = v.pref ?? {};
    const text = JSON.stringify(data);
    if (!v.muted && (text === PREF_DEFAULTS || text === '{}')) continue;
    prefs.push({ app_id: app, user_id: userId, room_id: id, scope: '', data: text, muted: v.muted ? 1 : 0, updated_at: row.updated_at });
  }
  return { row, tags: (room.roomTags as string[] | undefined) ?? [], members, prefs };
}

function messageRow(app: string, roomId: string, m: Json): MessageRow | undefined {
  const id = String(m._id);
  if (!isObjectId(id)) return undefined;
  const created = ms(m.createdAtMS, m.createdAt);
  return {
    app_id: app,
    id,
    room_id: roomId,
    sender_id: idOf(m.sender),
    message_type: String(m.messageType),
    message: JSON.stringify(m.message ?? ''),
    fields: JSON.stringify(custom(m, MESSAGE_FIELDS)),
    reply_id: idOf(m.reply),
    pinned: m.pinned === true ? 1 : 0,
    edited_at: typeof m.editedAtMS === 'number' ? m.editedAtMS : null,
    message_time: ms(m.messageTimeMS, m.messageTime) || created,
    created_at: created,
    updated_at: ms(m.updatedAtMS, m.updatedAt) || created,
  };
}
