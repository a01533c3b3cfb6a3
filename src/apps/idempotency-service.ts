import { Periodic } from '../lib/periodic.js';
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Actor } from '../auth/guard.js';
import { AppError, fromStoreError, invalidRequest } from '../errors.js';
import { type ClaimRef, withClaim } from '../lib/claim-scope.js';
import type { Clock } from '../lib/clock.js';
import { IdempotencyRepo } from '../store/idempotency-repo.js';
import type { Database } from '../store/schema.js';

/** How long a key is remembered (Stripe's 24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/** A first request still "running" after this long is taken for abandoned (the process died): a retry runs again. */
export const ABANDONED_AFTER_MS = 60_000;

/** An Idempotency-Key, and a socket send's clientMsgId: visible ASCII. */
const KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * What a request with a key does: give a kept answer again (`replay`), or run, under its claim (`run`). `sent`: the
 * first request stored this message and its answer was never kept (it crashed, or failed after the commit): the
 * request is answered with that message instead of running (only for requests that say they can, `recover`).
 */
export type Begin = { replay: { status: number; body: string } } | { run: ClaimRef; sent?: string };

/** What a request that sends a message answers for a message its first try stored (the answer that try lost). */
export type Recover = (messageId: string) => Promise<unknown>;

/**
 * `Idempotency-Key` on POST requests (docs/reliability.md). The first request with a key runs and its answer
 * (any status below 500) is kept for 24 h; a retry with the same key and the same request gets that answer again,
 * with `Idempotent-Replayed: true`, and changes nothing. The same key with another request is 422; while the first
 * runs, 409 (retry after a second). A 5xx is not kept: the retry runs again. Keys belong to the caller: the API key
 * (and the user it acts as) or the user.
 */
export class Idempotency {
  /** Pruning once an hour (in a cluster, by one node per hour). */
  readonly pruning = new Periodic('prune:idempotency', 3_600_000);

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async begin(actor: Actor, key: string, method: string, route: string, params: unknown, body: unknown, recoverable = false): Promise<Begin> {
    if (!KEY.test(key)) throw invalidRequest('Idempotency-Key must be 1 to 255 visible ASCII characters');
    return this.claim('Idempotency-Key', actor.app.id, subjectOf(actor), key, `${method} ${route}\n${JSON.stringify(params ?? null)}\n${JSON.stringify(body ?? null)}`, recoverable);
  }

  /**
   * Runs a request that holds its key's claim: with `recover` (the request sends a message), the message it stores
   * records its id on the key in the same transaction (lib/claim-scope.ts); `sent` answers with that message.
   */
  async run(begun: { run: ClaimRef; sent?: string }, fn: () => Promise<unknown>, recover?: Recover): Promise<unknown> {
    if (!recover) return fn();
    if (begun.sent !== undefined) return recover(begun.sent);
    return withClaim(begun.run, fn);
  }

  /**
   * A socket `chat message` carrying `clientMsgId` (docs/reliability.md): that id is the user's key for the send,
   * kept as an Idempotency-Key of theirs would be (the same table, the same 24 h, the same answers), so a send
   * retried after a lost ack, on this socket or after a reconnect, is acknowledged with the first message again
   * and not stored twice. `run` sends and gives the ack; the ack kept is what a retry gets. Without the field, it
   * just runs.
   */
  async socketSend(appId: string, userId: string, message: Record<string, unknown>, run: () => Promise<unknown>, recover?: Recover): Promise<unknown> {
    const id = message.clientMsgId;
    if (id === undefined) return run();
    const key = typeof id === 'number' && Number.isSafeInteger(id) ? String(id) : id;
    if (typeof key !== 'string' || !KEY.test(key)) throw invalidRequest('clientMsgId must be 1 to 255 visible ASCII characters (or an integer)');
    const begun = await this.claim('clientMsgId', appId, `u:${userId}`, key, `SOCKET chat message\n${JSON.stringify(message)}`, recover !== undefined);
    if ('replay' in begun) return JSON.parse(begun.replay.body) as unknown;
    let ack: unknown;
    try {
      ack = await this.run(begun, run, recover);
    } catch (err) {
      const e = err instanceof AppError ? err : fromStoreError(err);
      // An answer below 500 is kept for the retry; anything else releases the key, so the retry sends again.
      await this.finish(begun.run, e?.status ?? 500, JSON.stringify(e?.toBody() ?? null)).catch(() => undefined);
      throw err;
    }
    await this.finish(begun.run, 200, JSON.stringify(ack));
    return ack;
  }

  private async claim(name: string, appId: string, subject: string, key: string, request: string, recoverable: boolean): Promise<Begin> {
    const now = this.clock.now();
    const repo = new IdempotencyRepo(this.db);
    if (await this.pruning.due(now)) await repo.prune(now - IDEMPOTENCY_TTL_MS);
    const fingerprint = createHash('sha256').update(request).digest('hex');
    const row = { app_id: appId, subject, key, fingerprint, status: null, body: null, created_at: now, message_id: null };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await repo.claim(row)) return { run: { appId, subject, key } };
      const found = await repo.get(appId, subject, key);
      if (!found) continue; // deleted meanwhile (a 5xx released it): claim again
      const expired = found.created_at <= now - IDEMPOTENCY_TTL_MS;
      // Unanswered, and its message stored: the first try's answer was lost; the message is the answer.
      const sent = recoverable && !expired && found.status === null && found.message_id !== null ? found.message_id : undefined;
      const abandoned = found.status === null && sent === undefined && found.created_at <= now - ABANDONED_AFTER_MS;
      if (expired || abandoned) {
        if (await repo.takeOver(row, found.created_at)) return { run: { appId, subject, key } };
        continue;
      }
      if (found.fingerprint !== fingerprint) {
        throw new AppError('IDEMPOTENCY_KEY_REUSED', `This ${name} was used with a different ${name === 'clientMsgId' ? 'message' : 'request (method, path or body)'} in the last 24 hours`);
      }
      if (sent !== undefined) return { run: { appId, subject, key }, sent };
      if (found.status === null) throw new AppError('IDEMPOTENCY_KEY_IN_USE', `A request with this ${name} is still running; retry in a moment`, { retryAfter: 1 });
      return { replay: { status: found.status, body: found.body ?? '' } };
    }
    throw new AppError('IDEMPOTENCY_KEY_IN_USE', `A request with this ${name} is still running; retry in a moment`, { retryAfter: 1 });
  }

  /** The first request answered: kept for its retries (a 5xx is forgotten, so a retry runs again). */
  async finish(run: { appId: string; subject: string; key: string }, status: number, body: string): Promise<void> {
    const repo = new IdempotencyRepo(this.db);
    if (status >= 500) await repo.release(run.appId, run.subject, run.key);
    else await repo.finish(run.appId, run.subject, run.key, status, body);
  }
}

function subjectOf(actor: Actor): string {
  if (actor.kind === 'user') return `u:${actor.userId}`;
  const who = actor.operator ? `op:${actor.operator.id}` : `k:${actor.apiKeyId}`;
  return actor.userId === undefined ? who : `${who}:u:${actor.userId}`;
}
