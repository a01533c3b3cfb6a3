import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { Dialect } from './database.js';
import type { MessageRow } from './messages-repo.js';
import type { Database, WebhookEventsTable } from './schema.js';

/** One sender's read mark after a batch: their last message of the room, and what others sent after it. */
export interface SenderRead {
  roomId: string;
  userId: string;
  messageId: string;
  badge: number;
}

const EVENT_COLUMNS = ['id', 'app_id', 'type', 'room_id', 'data', 'state', 'created_at'] as const;

const MESSAGE_COLUMNS = [
  'app_id', 'id', 'room_id', 'sender_id', 'message_type', 'message', 'fields', 'reply_id', 'pinned', 'edited_at', 'message_time', 'created_at', 'updated_at',
] as const;

/**
 * The write half of sending: many new messages of one application stored with four kinds of statement, whatever
 * their number (group commit, see chat/message-writer.ts). On SQLite each statement's SQL depends only on how many
 * rows it carries, so it is compiled once per shape with Kysely and then run with fresh parameters: building and
 * compiling a query costs more than running it. On PostgreSQL the four run in one function call.
 */
export class AppendRepo {
  /** SQL text per statement kind and row count (only SQLite compiles shapes). */
  private static readonly shapes = new Map<string, string>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: Dialect,
  ) {}

  /**
   * The statements, in order, that insert the messages (in the given order), make the last one of each room its
   * last message and count them, raise every member's badge by the number of batch messages sent to the room
   * (banned members excepted), then set each sender's read mark and badge (`reads`, which also undoes the raise for
   * their own messages), and add the outbox rows of the messages someone subscribes to (`events`, webhooks/outbox.ts:
   * in the same transaction, so an event exists exactly when its message does). Run them as one transaction
   * (Store.runBatch). Statements carry a power of two of rows, so few distinct shapes are ever prepared.
   */
  plan(appId: string, rows: MessageRow[], reads: SenderRead[], now: number, events: WebhookEventsTable[] = []): PlannedStatement[] {
    const out: PlannedStatement[] = [];
    if (rows.length === 0) return out;
    // Each room's last message of the batch, and how many the batch sends it.
    const perRoom = new Map<string, { last: MessageRow; n: number }>();
    for (const r of rows) perRoom.set(r.room_id, { last: r, n: (perRoom.get(r.room_id)?.n ?? 0) + 1 });
    if (this.dialect === 'postgres') return [postgresCall(appId, rows, perRoom, reads, now, events)];
    for (const part of chunks(events)) {
      out.push(this.statement('events', part.length, () => eventsShape(part.length), part.flatMap((e) => EVENT_COLUMNS.map((c) => e[c]))));
    }
    for (const part of chunks(rows)) {
      out.push(this.statement('insert', part.length, () => insertShape(part.length), part.flatMap((r) => MESSAGE_COLUMNS.map((c) => r[c]))));
    }
    for (const part of chunks([...perRoom.values()])) {
      out.push(this.statement('last', part.length, () => lastMessageShape(part.length), [...part.flatMap((p) => [p.last.room_id, p.last.id, p.last.created_at, p.n]), appId]));
    }
    // Rooms that received the same number of messages are raised by one statement (usually all of them: 1 each).
    const byCount = new Map<number, string[]>();
    for (const [roomId, p] of perRoom) {
      const list = byCount.get(p.n);
      if (list) list.push(roomId);
      else byCount.set(p.n, [roomId]);
    }
    for (const [n, roomIds] of byCount) {
      for (const part of chunks(roomIds)) out.push(this.statement('badges', part.length, () => badgeShape(part.length), [n, appId, ...part, now]));
    }
    for (const part of chunks(reads)) {
      out.push(this.statement('reads', part.length, () => readShape(part.length), [...part.flatMap((r) => [r.roomId, r.userId, r.messageId, r.badge]), appId]));
    }
    return out;
  }

  private statement(kind: string, n: number, shape: () => RawBuilder<unknown>, params: unknown[]): PlannedStatement {
    const key = `${kind}:${n}`;
    let text = AppendRepo.shapes.get(key);
    if (text === undefined) {
      text = shape().compile(this.db).sql;
      AppendRepo.shapes.set(key, text);
    }
    return { sql: text, params };
  }
}

/**
 * On PostgreSQL the whole batch is one call of `imkit_append_batch` (migration 0010), the same statements in a
 * function, each list passed as an array: one round trip and one prepared statement whatever the batch holds. With
 * outbox rows, `imkit_append_batch_events` (migration 0016) calls it and inserts them.
 */
function postgresCall(appId: string, rows: MessageRow[], perRoom: Map<string, { last: MessageRow; n: number }>, reads: SenderRead[], now: number, events: WebhookEventsTable[]): PlannedStatement {
  const rooms = [...perRoom.entries()];
  const column = <K extends keyof MessageRow>(k: K) => rows.map((r) => r[k]);
  const params = [
    appId, now,
    column('id'), column('room_id'), column('sender_id'), column('message_type'), column('message'), column('fields'), column('reply_id'),
    column('pinned'), column('edited_at'), column('message_time'), column('created_at'), column('updated_at'),
    rooms.map(([id]) => id), rooms.map(([, p]) => p.last.id), rooms.map(([, p]) => p.last.created_at), rooms.map(([, p]) => p.n),
    rooms.map(([id]) => id), rooms.map(([, p]) => p.n),
    reads.map((r) => r.roomId), reads.map((r) => r.userId), reads.map((r) => r.messageId), reads.map((r) => r.badge),
  ];
  if (events.length) params.push(events.map((e) => e.id), events.map((e) => e.type), events.map((e) => e.room_id), events.map((e) => e.data), events.map((e) => e.created_at));
  const fn = events.length ? 'imkit_append_batch_events' : 'imkit_append_batch';
  return { sql: `select ${fn}(${params.map((_, i) => `$${i + 1}`).join(', ')})`, params };
}

/** One statement of a batch: SQL text (one of few shapes) and its parameters. */
export interface PlannedStatement {
  sql: string;
  params: unknown[];
}

// The shapes below are compiled with placeholder values; only their SQL text is kept. Parameters are bound in the
// order they appear, which the `params` arrays above follow.

const P = null;

function tuples(n: number, width: number, cast: Array<'integer' | 'bigint' | null> = []): RawBuilder<unknown> {
  const one = sql.join(Array.from({ length: width }, (_, i) => (cast[i] ? sql`cast(${P} as ${sql.raw(cast[i]!)})` : sql`${P}`)));
  return sql.join(Array.from({ length: n }, () => sql`(${one})`));
}

function insertShape(n: number): RawBuilder<unknown> {
  return sql`insert into messages (${sql.raw(MESSAGE_COLUMNS.join(', '))}) values ${tuples(n, MESSAGE_COLUMNS.length)}`;
}

function eventsShape(n: number): RawBuilder<unknown> {
  return sql`insert into webhook_events (${sql.raw(EVENT_COLUMNS.join(', '))}) values ${tuples(n, EVENT_COLUMNS.length)}`;
}

function lastMessageShape(n: number): RawBuilder<unknown> {
  return sql`with v(rid, mid, t, n) as (values ${tuples(n, 4, [null, null, 'bigint', 'integer'])})
    update rooms set last_message_id = v.mid, updated_at = v.t, message_count = message_count + v.n from v where rooms.app_id = ${P} and rooms.id = v.rid`;
}

/**
 * Every member of the listed rooms not banned at `now` gains `n` unread; the senders' own badges are set afterwards
 * (readShape). Written as `room_id in (...)` rather than a join with a VALUES list: from about eight rows on,
 * SQLite's planner (without ANALYZE statistics) turned the join around and scanned every member of the application
 * through the (app_id, user_id) index, once per listed room.
 */
function badgeShape(n: number): RawBuilder<unknown> {
  const ids = sql.join(Array.from({ length: n }, () => sql`${P}`));
  return sql`update room_members set badge = badge + cast(${P} as integer)
    where room_members.app_id = ${P} and room_members.room_id in (${ids})
      and not exists (
        select 1 from room_bans b
        where b.app_id = room_members.app_id and b.room_id = room_members.room_id and b.user_id = room_members.user_id
          and (b.unblock_at is null or b.unblock_at > cast(${P} as bigint))
      )`;
}

function readShape(n: number): RawBuilder<unknown> {
  return sql`with v(rid, uid, mid, k) as (values ${tuples(n, 4, [null, null, null, 'integer'])})
    update room_members set last_read = v.mid, badge = v.k from v
    where room_members.app_id = ${P} and room_members.room_id = v.rid and room_members.user_id = v.uid`;
}

/** Splits a list into runs whose lengths are powers of two, largest first (37 -> 32, 4, 1). */
function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  let i = 0;
  while (i < items.length) {
    let size = 1;
    while (size * 2 <= items.length - i) size *= 2;
    out.push(items.slice(i, i + size));
    i += size;
  }
  return out;
}

/** The statement shapes, for tests that check how the databases plan them. */
export const appendShapes = { insert: insertShape, last: lastMessageShape, badges: badgeShape, reads: readShape };
