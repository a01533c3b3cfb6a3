import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/**
 * Named leases in the store: a node takes `name` for `periodMs` when nobody holds it or its holder's time ran out.
 * Periodic work (clean-ups) asks before it runs, so one node of a cluster does it per period, whichever is alive.
 * One statement (an upsert that changes the row only when it is free), so two nodes asking at once cannot both get it.
 */
export class LeasesRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async take(name: string, holder: string, now: number, periodMs: number): Promise<boolean> {
    const r = await sql<{ holder: string }>`
      insert into leases (name, holder, expires_at) values (${name}, ${holder}, ${now + periodMs})
      on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at
      where leases.expires_at <= ${now}
      returning holder`.execute(this.db);
    return r.rows.length === 1 && r.rows[0]!.holder === holder;
  }
}
