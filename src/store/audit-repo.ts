import type { Kysely } from 'kysely';
import type { PlannedStatement } from './append-repo.js';
import type { AuditLogTable, Database } from './schema.js';

export type AuditRow = AuditLogTable;

export interface AuditFilter {
  before?: string;
  actor?: string;
  action?: string;
  target?: string;
  limit: number;
}

/** The audit log (docs/security.md). */
export class AuditRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(rows: AuditRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) await this.db.insertInto('audit_log').values(rows.slice(i, i + 500)).execute();
  }

  /** Newest first; `actor` matches the actor's id or fingerprint. */
  async list(appId: string, f: AuditFilter): Promise<{ rows: AuditRow[]; total: number }> {
    let q = this.db.selectFrom('audit_log').where('app_id', '=', appId);
    if (f.actor !== undefined) q = q.where((eb) => eb.or([eb('actor_id', '=', f.actor!), eb('actor_fingerprint', '=', f.actor!)]));
    if (f.action !== undefined) q = q.where('action', '=', f.action);
    if (f.target !== undefined) q = q.where('target', '=', f.target);
    const total = Number((await q.select((eb) => eb.fn.countAll().as('n')).executeTakeFirst())?.n ?? 0);
    if (f.before !== undefined) q = q.where('id', '<', f.before);
    const rows = await q.selectAll().orderBy('id', 'desc').limit(f.limit).execute();
    return { rows, total };
  }

  /**
   * The statements that insert `rows` and delete entries older than `pruneBefore`, to run as one transaction on
   * SQLite's writer thread: one insert per row, so the thread prepares one statement text whatever the count.
   */
  plan(rows: AuditRow[], pruneBefore: number | undefined): PlannedStatement[] {
    const out: PlannedStatement[] = [];
    for (const row of rows) {
      const c = this.db.insertInto('audit_log').values(row).compile();
      out.push({ sql: c.sql, params: c.parameters as unknown[] });
    }
    if (pruneBefore !== undefined) {
      const c = this.db.deleteFrom('audit_log').where('at', '<', pruneBefore).compile();
      out.push({ sql: c.sql, params: c.parameters as unknown[] });
    }
    return out;
  }

  async prune(before: number): Promise<void> {
    await this.db.deleteFrom('audit_log').where('at', '<', before).execute();
  }
}
