import type { Kysely } from 'kysely';
import { AppError } from '../errors.js';
import { newObjectId } from '../lib/ids.js';
import { type ClaimRef, takeClaim } from '../lib/claim-scope.js';
import { flushSoon } from '../lib/turn-end.js';
import { IdempotencyRepo } from '../store/idempotency-repo.js';
import { AppendRepo, type PlannedStatement, type SenderRead } from '../store/append-repo.js';
import type { Dialect } from '../store/database.js';
import type { Database, WebhookEventsTable } from '../store/schema.js';
import type { PushRequest } from '../events/bus.js';
import type { Outbox } from '../webhooks/outbox.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { RoomsRepo } from '../store/rooms-repo.js';

export interface AppendInput {
  appId: string;
  roomId: string;
  senderId: string | null;
  messageType: string;
  message: unknown;
  fields: Record<string, unknown>;
  replyId?: string | null;
  now: number;
  /** `message` and `fields` as JSON text, when the caller has serialized them already (to check their size). */
  json?: { message: string; fields: string };
  /**
   * The room's `webhook` (from the sender's snapshot) and whether a room webhook's reply posts this message: the
   * writer adds the message's outbox row to its batch when someone wants it (webhooks/outbox.ts).
   */
  webhook?: { room: string | null; fromBot: boolean };
  /** The send's push options (docs/push.md); undefined: no push (`push: false`, system messages). */
  push?: PushRequest;
}

/**
 * The one way a message enters a room, inside the caller's transaction: store it, make it the room's last
 * message, raise every other member's unread badge by one (a single UPDATE, so counts stay exact under
 * concurrent sends), and mark it read for its sender.
 */
export async function appendMessage(trx: Kysely<Database>, input: AppendInput): Promise<MessageRow> {
  const row = messageRow(input);
  const rooms = new RoomsRepo(trx);
  await new MessagesRepo(trx).insert(row);
  await rooms.noteNewMessages(input.appId, input.roomId, row.id, input.now, 1);
  await rooms.incrementBadges(input.appId, input.roomId, input.senderId, input.now);
  if (input.senderId !== null) await rooms.updateMember(input.appId, input.roomId, input.senderId, { last_read: row.id, badge: 0 });
  return row;
}

interface Pending {
  row: MessageRow;
  event: WebhookEventsTable | undefined;
  /** The idempotency key of the request that sends it: the batch records the message's id on it. */
  claim: ClaimRef | undefined;
  resolve: (row: MessageRow) => void;
  reject: (err: unknown) => void;
}

const MAX_BATCH = 128;

/**
 * Group commit for users' messages. Sends that arrive while the store is busy are written together, in arrival
 * order, with one transaction and a few statements per batch (AppendRepo) instead of one transaction and four
 * statements each: on SQLite the commit is the most expensive statement of a send, on PostgreSQL every statement
 * is a round trip. The result is the same as appending them one after the other: the same rows, badges and read
 * marks. Each caller's promise settles when its batch is committed. A batch that fails is retried one message at a
 * time, so one bad message does not fail the others.
 */
export class MessageWriter {
  private queue: Pending[] = [];
  private running = false;
  private idleWaiters: Array<() => void> = [];
  /**
   * Committed batches and the messages they held, for monitoring (a ratio near 1 means no batching), and sends
   * refused because too many messages were waiting.
   */
  readonly stats = { batches: 0, messages: 0, refused: 0 };
  /** Told the size of every committed batch (the batch-size histogram of /metrics). */
  onBatch: ((size: number) => void) | undefined;

  private readonly repo: AppendRepo;

  /**
   * `runBatch`: runs a batch's statements as one transaction (Store.runBatch: SQLite's writer thread, or Postgres).
   * `maxQueued`: messages that may wait for a batch at once (config `maxQueuedMessages`); past it the store is not
   * keeping up, and a send is refused at once with 503 SERVICE_UNAVAILABLE (retry after a second) instead of
   * waiting in memory that would grow for as long as the overload lasts.
   */
  constructor(
    private readonly db: Kysely<Database>,
    dialect: Dialect,
    private readonly runBatch: (statements: PlannedStatement[]) => Promise<void>,
    private readonly maxQueued = Number.POSITIVE_INFINITY,
    private readonly outbox?: Outbox,
  ) {
    this.repo = new AppendRepo(db, dialect);
  }

  append(input: AppendInput): Promise<MessageRow> {
    if (this.queue.length >= this.maxQueued) {
      this.stats.refused++;
      return Promise.reject(
        new AppError('SERVICE_UNAVAILABLE', `The server is overloaded: ${this.queue.length} messages are waiting to be stored; retry in a moment`, { retryAfter: 1 }),
      );
    }
    return new Promise((resolve, reject) => {
      const row = messageRow(input);
      const event = this.outbox?.messageRow(row, input.webhook?.room ?? null, input.webhook?.fromBot, input.push);
      this.queue.push({ row, event, claim: takeClaim(input.appId), resolve, reject });
      if (!this.running) {
        this.running = true;
        // Let the requests already read from the sockets join this batch. (Holding batches back for a few ms
        // was measured: it caps a sender that waits for each answer at a batch per interval, for no clear gain.)
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          await this.write(batch);
          this.stats.batches++;
          this.stats.messages += batch.length;
          this.onBatch?.(batch.length);
          for (const p of batch) p.resolve(p.row);
        } catch (err) {
          if (batch.length === 1) batch[0]!.reject(err);
          else {
            for (const p of batch) {
              await this.write([p]).then(() => {
                this.stats.batches++;
                this.stats.messages++;
                this.onBatch?.(1);
                p.resolve(p.row);
              }, p.reject);
            }
          }
        }
        // What the settled sends start (deliveries, acks, error acks) goes out as soon as it is ready, not at the
        // end of the turn.
        flushSoon();
      }
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Settles once every message accepted so far is committed or refused (a graceful shutdown waits for it). */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async write(batch: Pending[]): Promise<void> {
    const byApp = new Map<string, { rows: MessageRow[]; events: WebhookEventsTable[] }>();
    for (const p of batch) {
      let app = byApp.get(p.row.app_id);
      if (!app) byApp.set(p.row.app_id, (app = { rows: [], events: [] }));
      app.rows.push(p.row);
      if (p.event) app.events.push(p.event);
    }
    const statements: PlannedStatement[] = [];
    for (const [appId, { rows, events }] of byApp) statements.push(...this.repo.plan(appId, rows, senderReads(rows), rows[rows.length - 1]!.created_at, events));
    for (const p of batch) if (p.claim) statements.push(IdempotencyRepo.noteMessage(this.db, p.claim, p.row.id));
    await this.runBatch(statements);
  }
}

/**
 * Each sender's read mark after the batch: their last message of the room, and as unread the batch messages that
 * others sent to the room after it (what sending them one by one would leave).
 */
export function senderReads(rows: MessageRow[]): SenderRead[] {
  const out = new Map<string, SenderRead>();
  const laterByRoom = new Map<string, number>();
  const seen = new Set<string>();
  for (let i = rows.length - 1; i >= 0; i--) {
    const r = rows[i]!;
    const later = laterByRoom.get(r.room_id) ?? 0;
    if (r.sender_id !== null) {
      const key = `${r.room_id}\u0000${r.sender_id}`;
      if (!seen.has(key)) {
        seen.add(key);
        // Messages after this one in the room, minus the sender's own (there are none: this is their last).
        out.set(key, { roomId: r.room_id, userId: r.sender_id, messageId: r.id, badge: later });
      }
    }
    laterByRoom.set(r.room_id, later + 1);
  }
  return [...out.values()];
}

function messageRow(input: AppendInput): MessageRow {
  return {
    app_id: input.appId,
    id: newObjectId(input.now),
    room_id: input.roomId,
    sender_id: input.senderId,
    message_type: input.messageType,
    message: input.json?.message ?? JSON.stringify(input.message ?? ''),
    fields: input.json?.fields ?? JSON.stringify(input.fields),
    reply_id: input.replyId ?? null,
    pinned: 0,
    edited_at: null,
    message_time: input.now,
    created_at: input.now,
    updated_at: input.now,
  };
}
