import { type Kysely, type Selectable, sql } from 'kysely';
import type { BatchItemsTable, BatchJobsTable, Database } from './schema.js';

export type BatchJobRow = Selectable<BatchJobsTable>;
export type BatchItemRow = Selectable<BatchItemsTable>;

/** Batch-send jobs and their items (one per recipient), the durable queue behind POST /messages/batch. */
export class BatchRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async insertJob(job: BatchJobRow, params: string[]): Promise<void> {
    await this.db.insertInto('batch_jobs').values(job).execute();
    for (let i = 0; i < params.length; i += 500) {
      const chunk = params.slice(i, i + 500).map((p, j) => ({
        app_id: job.app_id,
        batch_id: job.id,
        idx: i + j,
        params: p,
        status: 'pending',
        claimed_by: null,
        claimed_at: null,
        message_id: null,
        error: null,
      }));
      await this.db.insertInto('batch_items').values(chunk).execute();
    }
  }

  getJob(appId: string, id: string): Promise<BatchJobRow | undefined> {
    return this.db.selectFrom('batch_jobs').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  async counts(appId: string, batchId: string): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('batch_items')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .where('app_id', '=', appId)
      .where('batch_id', '=', batchId)
      .groupBy('status')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  failures(appId: string, batchId: string, limit: number): Promise<Array<{ idx: number; error: string | null }>> {
    return this.db
      .selectFrom('batch_items')
      .select(['idx', 'error'])
      .where('app_id', '=', appId)
      .where('batch_id', '=', batchId)
      .where('status', '=', 'failed')
      .orderBy('idx')
      .limit(limit)
      .execute();
  }

  runningJobs(): Promise<BatchJobRow[]> {
    return this.db.selectFrom('batch_jobs').selectAll().where('status', '=', 'running').orderBy('created_at').orderBy('id').execute();
  }

  /** Gives claims of a crashed process back (claimed before `staleBefore`, or by anyone when `all`). */
  async releaseClaims(staleBefore: number | 'all'): Promise<number> {
    let q = this.db.updateTable('batch_items').set({ status: 'pending', claimed_by: null, claimed_at: null }).where('status', '=', 'claimed');
    if (staleBefore !== 'all') q = q.where('claimed_at', '<', staleBefore);
    return Number((await q.executeTakeFirst()).numUpdatedRows);
  }

  /** Gives back the claims of one worker (it is stopping). */
  async releaseMine(worker: string): Promise<void> {
    await this.db.updateTable('batch_items').set({ status: 'pending', claimed_by: null, claimed_at: null }).where('status', '=', 'claimed').where('claimed_by', '=', worker).execute();
  }

  /**
   * Claims up to `limit` pending items of a job for this worker; returns the claimed ones in order. With `skipLocked`
   * (PostgreSQL, several nodes) items another node is claiming at this moment are skipped, not waited for.
   */
  async claim(job: BatchJobRow, worker: string, limit: number, now: number, skipLocked = false): Promise<BatchItemRow[]> {
    if (skipLocked) {
      // The rows are picked in a CTE (run once); as `idx in (subquery)` PostgreSQL ran the locking subquery once per
      // row of the job (a statement timeout at 10,000 items). Claims of this worker left by a chunk that failed as a
      // whole go back to the queue when they are stale, as a dead node's do.
      const { rows } = await sql<BatchItemRow>`
        with picked as (
          select idx from batch_items
          where app_id = ${job.app_id} and batch_id = ${job.id} and status = 'pending'
          order by idx limit ${limit}
          for update skip locked)
        update batch_items b set status = 'claimed', claimed_by = ${worker}, claimed_at = ${now}
        from picked where b.app_id = ${job.app_id} and b.batch_id = ${job.id} and b.idx = picked.idx
        returning b.*`.execute(this.db);
      return rows.sort((a, b) => a.idx - b.idx);
    }
    const next = await this.db
      .selectFrom('batch_items')
      .select('idx')
      .where('app_id', '=', job.app_id)
      .where('batch_id', '=', job.id)
      .where('status', '=', 'pending')
      .orderBy('idx')
      .limit(limit)
      .execute();
    if (next.length === 0) return [];
    await this.db
      .updateTable('batch_items')
      .set({ status: 'claimed', claimed_by: worker, claimed_at: now })
      .where('app_id', '=', job.app_id)
      .where('batch_id', '=', job.id)
      .where('status', '=', 'pending')
      .where('idx', 'in', next.map((n) => n.idx))
      .execute();
    return this.db
      .selectFrom('batch_items')
      .selectAll()
      .where('app_id', '=', job.app_id)
      .where('batch_id', '=', job.id)
      .where('claimed_by', '=', worker)
      .where('status', '=', 'claimed')
      .orderBy('idx')
      .execute();
  }

  /**
   * Marks one claimed item done, only if this worker still holds the claim. Run inside the transaction that
   * stores the message: the two commit together or not at all, so no message is ever sent twice.
   */
  async complete(item: BatchItemRow, worker: string, result: { messageId: string } | { error: string }): Promise<boolean> {
    const res = await this.db
      .updateTable('batch_items')
      .set('messageId' in result ? { status: 'sent', message_id: result.messageId } : { status: 'failed', error: result.error.slice(0, 500) })
      .where('app_id', '=', item.app_id)
      .where('batch_id', '=', item.batch_id)
      .where('idx', '=', item.idx)
      .where('status', '=', 'claimed')
      .where('claimed_by', '=', worker)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  async finishIfDone(job: BatchJobRow, now: number): Promise<boolean> {
    const open = await this.db
      .selectFrom('batch_items')
      .select('idx')
      .where('app_id', '=', job.app_id)
      .where('batch_id', '=', job.id)
      .where((eb) => eb.or([eb('status', '=', 'pending'), eb('status', '=', 'claimed')]))
      .limit(1)
      .executeTakeFirst();
    if (open) return false;
    await this.db.updateTable('batch_jobs').set({ status: 'done', finished_at: now, updated_at: now }).where('app_id', '=', job.app_id).where('id', '=', job.id).execute();
    return true;
  }
}

