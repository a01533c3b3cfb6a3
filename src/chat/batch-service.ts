import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { AppError, invalidRequest } from '../errors.js';
import type { DomainEvent, PushRequest } from '../events/bus.js';
import type { Database } from '../store/schema.js';
import { iso } from '../lib/clock.js';
import { BatchRepo, type BatchItemRow, type BatchJobRow } from '../store/batch-repo.js';
import { RoomsRepo } from '../store/rooms-repo.js';
import { UsersRepo } from '../store/users-repo.js';
import { type ChatContext, transact } from './chat-context.js';
import { appendMessage } from './message-writer.js';
import { assertMaySend, blocked } from './moderation-rules.js';
import { ModerationRepo } from '../store/moderation-repo.js';
import { type MessagesService, pushRequest } from './messages-service.js';
import type { Caller } from './policy.js';
import { directRoomId } from './rooms-service.js';

type Json = Record<string, unknown>;

export const MAX_BATCH_ITEMS = 100_000;
/** Where a job's template keeps the push options of the batch (docs/push.md: `push` defaults to false here). */
const PUSH_KEY = '$push';
const CONTROL = new Set([PUSH_KEY, 'paras', 'push', 'skipTotalBadge', 'sender', 'room', 'receiver', '_id', 'id', 'appID', '__proto__', 'constructor', 'prototype']);

/**
 * `POST /messages/batch`: one templated message to many rooms or users. The call only stores a job with one
 * item per recipient and returns its `batchID`; a BatchWorker sends the items. Each item's message and its
 * "sent" mark are written in one transaction, so a crash at any point neither loses nor repeats a message.
 */
export class BatchService {
  private wake: () => void = () => {};

  constructor(
    private readonly ctx: ChatContext,
    private readonly messages: MessagesService,
  ) {}

  /** The worker asks to be woken when a job arrives (instead of waiting for its next poll). */
  setWake(wake: () => void): void {
    this.wake = wake;
  }

  async accept(caller: Caller, body: Json): Promise<{ batchID: string; count: number }> {
    const now = this.ctx.clock.now();
    if (typeof body.message !== 'string') throw invalidRequest('Missing required field: message (a string, may hold $placeholders$)');
    if (typeof body.messageType !== 'string' || !body.messageType) throw invalidRequest('Missing required field: messageType');
    const paras = body.paras;
    if (!Array.isArray(paras) || paras.length === 0) throw invalidRequest('Missing required field: paras (a non-empty array)');
    if (paras.length > MAX_BATCH_ITEMS) throw invalidRequest(`paras may hold at most ${MAX_BATCH_ITEMS} recipients per batch`);
    const sender = body.sender === undefined ? null : body.sender;
    if (sender !== null && (typeof sender !== 'string' || !sender)) throw invalidRequest('Invalid field sender: must be a user id or a name such as "system"');
    const rooms = new Set<string>();
    const receivers = new Set<string>();
    paras.forEach((p, i) => {
      if (typeof p !== 'object' || p === null || Array.isArray(p)) throw invalidRequest(`Invalid field paras.${i}: must be an object`);
      const para = p as Json;
      if (typeof para.room === 'string' && para.room) rooms.add(para.room);
      else if (typeof para.receiver === 'string' && para.receiver) receivers.add(para.receiver);
      else throw invalidRequest(`Invalid field paras.${i}: needs a room or a receiver`);
      for (const [k, v] of Object.entries(para)) {
        if (k !== 'room' && k !== 'receiver' && typeof v !== 'string' && typeof v !== 'number') throw invalidRequest(`Invalid field paras.${i}.${k}: a placeholder value is a string or number`);
      }
    });
    if (receivers.size && sender === null) throw invalidRequest('sender is required to send to receivers (their direct room is with the sender)');
    await this.requireAll('rooms', [...rooms], (ids) => new RoomsRepo(this.ctx.db).existing(caller.appId, ids), 'ROOM_NOT_FOUND');
    await this.requireAll('users', [...receivers], async (ids) => (await new UsersRepo(this.ctx.db).getMany(caller.appId, ids)).map((u) => u.id), 'USER_NOT_FOUND');

    const template: Json = {};
    for (const [k, v] of Object.entries(body)) if (!CONTROL.has(k)) template[k] = v;
    // Reject a template that could never be sent, now rather than 10,000 times later.
    this.messages.checkBatchTemplate(template);
    // The job keeps the push options in its template, under a key no body can set ("$push" is a control key).
    const push = pushRequest(body, false);
    if (push) template[PUSH_KEY] = push;
    const id = `batch-${iso(now).slice(0, 10).replace(/-/g, '')}-${randomBytes(6).toString('hex')}`;
    const job: BatchJobRow = { app_id: caller.appId, id, sender, template: JSON.stringify(template), total: paras.length, status: 'running', created_at: now, updated_at: now, finished_at: null };
    await this.ctx.db.transaction().execute((trx) => new BatchRepo(trx).insertJob(job, paras.map((p) => JSON.stringify(p))));
    this.wake();
    return { batchID: id, count: paras.length };
  }

  /** `GET /messages/batch/:batchID`: where a job stands. */
  async progress(caller: Caller, batchId: string): Promise<Json> {
    const repo = new BatchRepo(this.ctx.db);
    const job = await repo.getJob(caller.appId, batchId);
    if (!job) throw new AppError('BATCH_NOT_FOUND', `Batch ${batchId} not found`);
    const counts = await repo.counts(caller.appId, batchId);
    const sent = counts.sent ?? 0;
    const failed = counts.failed ?? 0;
    return {
      batchID: job.id,
      status: job.status,
      count: job.total,
      sent,
      failed,
      pending: job.total - sent - failed,
      errors: (await repo.failures(caller.appId, batchId, 100)).map((f) => ({ index: f.idx, error: f.error })),
      createdAt: iso(job.created_at),
      createdAtMS: job.created_at,
      finishedAt: job.finished_at === null ? null : iso(job.finished_at),
      finishedAtMS: job.finished_at,
    };
  }

  /**
   * Sends claimed items of a job, many per transaction (a crash rolls back both the messages and their "sent"
   * marks, so nothing is lost or repeated). If the group fails, each item is retried alone so one bad item
   * (its room deleted meanwhile, say) fails by itself.
   */
  async sendItems(job: BatchJobRow, items: BatchItemRow[], worker: string): Promise<void> {
    if (items.length === 0) return;
    // Prepared (filled, censored, size-checked) before the transaction: the checks read the store themselves,
    // and SQLite has one connection, which the transaction holds.
    const ready: Array<{ item: BatchItemRow; prepared: Prepared }> = [];
    for (const item of items) {
      try {
        ready.push({ item, prepared: await this.prepare(job, item) });
      } catch (err) {
        await this.fail(item, worker, err);
      }
    }
    if (ready.length === 0) return;
    try {
      const events: DomainEvent[] = [];
      await transact(this.ctx, events, async (trx) => {
        for (const r of ready) events.push(...(await this.writeItem(trx, job, r.item, r.prepared, worker)));
      });
      for (const e of events) this.ctx.bus.emit(e);
    } catch (err) {
      if (ready.length > 1) {
        for (const r of ready) await this.sendItems(job, [r.item], worker);
        return;
      }
      if (!(err instanceof LostClaim)) await this.fail(ready[0]!.item, worker, err);
    }
  }

  private async prepare(job: BatchJobRow, item: BatchItemRow): Promise<Prepared> {
    const para = JSON.parse(item.params) as Json;
    const fill = (s: string) => s.replace(/\$[^$\s]{1,64}\$/g, (m) => (m in para ? String(para[m]) : m));
    const { [PUSH_KEY]: push, ...template } = JSON.parse(job.template) as Json;
    const body: Json = { ...template, message: fill(template.message as string) };
    if (template.extra !== undefined) body.extra = deepFill(template.extra, fill);
    const roomId = typeof para.room === 'string' ? para.room : directRoomId(job.sender!, para.receiver as string);
    // Blocks and bans bind the sender on this path too.
    const snap = await this.ctx.roomCache.get(job.app_id, roomId);
    if (snap) await assertMaySend(this.ctx.db, snap, job.sender, this.ctx.clock.now());
    else if (job.sender && typeof para.receiver === 'string' && (await new ModerationRepo(this.ctx.db).blockedBetween(job.app_id, job.sender, [para.receiver]))) {
      throw blocked();
    }
    return { ...(await this.messages.prepareBatchMessage(job.app_id, body)), roomId, byRoom: typeof para.room === 'string', receiver: para.receiver as string | undefined, push: push as PushRequest | undefined };
  }

  private async fail(item: BatchItemRow, worker: string, err: unknown): Promise<void> {
    const message = err instanceof AppError ? `${err.code}: ${err.message}` : 'INTERNAL_ERROR';
    await new BatchRepo(this.ctx.db).complete(item, worker, { error: message });
    if (!(err instanceof AppError)) throw err;
  }

  private async writeItem(trx: Kysely<Database>, job: BatchJobRow, item: BatchItemRow, p: Prepared, worker: string): Promise<DomainEvent[]> {
    const now = this.ctx.clock.now();
    const events: DomainEvent[] = [];
    const rooms = new RoomsRepo(trx);
    if (!(await rooms.get(job.app_id, p.roomId))) {
      if (p.byRoom) throw new AppError('ROOM_NOT_FOUND', `Room ${p.roomId} not found`);
      const members = (await new UsersRepo(trx).getMany(job.app_id, [job.sender!, p.receiver!])).map((u) => u.id);
      await rooms.insert({
        app_id: job.app_id, id: p.roomId, name: null, cover: null, description: null, room_type: 'direct', room_tags: '[]', webhook: null, bot_mode: 0,
        bot_state: null, encrypted: 0, ext_params: null, status: 1, opening: 1, owner: null, extra: '{}', last_message_id: null, message_count: 0, created_at: now, updated_at: now,
      });
      await rooms.addMembers(job.app_id, p.roomId, members, now);
      events.push({ type: 'room.created', appId: job.app_id, roomId: p.roomId, actorId: job.sender, members });
    }
    const msg = await appendMessage(trx, { appId: job.app_id, roomId: p.roomId, senderId: job.sender, now, messageType: p.messageType, message: p.message, fields: p.fields, replyId: null });
    if (!(await new BatchRepo(trx).complete(item, worker, { messageId: msg.id }))) throw new LostClaim();
    events.push({ type: 'message.created', appId: job.app_id, roomId: p.roomId, messageId: msg.id, senderId: job.sender, system: false, row: msg, ...(p.push ? { push: p.push } : {}) });
    return events;
  }

  private async requireAll(what: string, ids: string[], lookup: (ids: string[]) => Promise<string[]>, code: 'ROOM_NOT_FOUND' | 'USER_NOT_FOUND'): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const found = new Set(await lookup(chunk));
      const missing = chunk.filter((id) => !found.has(id));
      if (missing.length) throw new AppError(code, `Unknown ${what}: ${missing.slice(0, 20).join(', ')}`);
    }
  }
}

class LostClaim extends Error {}

interface Prepared {
  messageType: string;
  message: unknown;
  fields: Json;
  roomId: string;
  byRoom: boolean;
  receiver: string | undefined;
  push: PushRequest | undefined;
}

function deepFill(v: unknown, fill: (s: string) => string): unknown {
  if (typeof v === 'string') return fill(v);
  if (Array.isArray(v)) return v.map((x) => deepFill(x, fill));
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deepFill(x, fill)]));
  return v;
}

/**
 * Runs batch jobs in the background of a server process. Claims items a few at a time so several nodes can
 * share the work; a claim whose holder died is released (all of them at start on SQLite, where only one server
 * runs; after `staleMs` on Postgres).
 */
export class BatchWorker {
  private readonly id = `w-${randomBytes(6).toString('hex')}`;
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly ctx: ChatContext,
    private readonly batch: BatchService,
    private readonly logger: Logger,
    private readonly opts: { staleMs: number; releaseAllAtStart: boolean; idleMs?: number; chunk?: number; perTransaction?: number },
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.batch.setWake(() => this.wakeUp?.());
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const repo = new BatchRepo(this.ctx.db);
    try {
      await repo.releaseClaims(this.opts.releaseAllAtStart ? 'all' : this.ctx.clock.now() - this.opts.staleMs);
    } catch (err) {
      this.logger.error({ err }, 'batch: releasing claims failed');
    }
    while (this.running) {
      let worked = false;
      try {
        if (!this.opts.releaseAllAtStart) await repo.releaseClaims(this.ctx.clock.now() - this.opts.staleMs);
        for (const job of await repo.runningJobs()) {
          if (!this.running) break;
          const items = await repo.claim(job, this.id, this.opts.chunk ?? 50, this.ctx.clock.now(), this.ctx.dialect === 'postgres');
          for (let i = 0; i < items.length && this.running; i += this.opts.perTransaction ?? 25) {
            await this.batch.sendItems(job, items.slice(i, i + (this.opts.perTransaction ?? 25)), this.id);
            worked = true;
            // better-sqlite3 answers synchronously, so without this the loop would never let requests in.
            await new Promise((resolve) => setImmediate(resolve));
          }
          if (items.length === 0) await repo.finishIfDone(job, this.ctx.clock.now());
        }
      } catch (err) {
        this.logger.error({ err }, 'batch: worker iteration failed');
      }
      if (!worked && this.running) await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.opts.idleMs ?? 1000);
        this.wakeUp = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    // Claims not processed yet go back to the queue for the next start (or another node).
    await repo.releaseMine(this.id).catch(() => undefined);
  }
}
