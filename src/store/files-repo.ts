import type { Kysely, Selectable } from 'kysely';
import type { Database, FilesTable } from './schema.js';

export type FileRow = Selectable<FilesTable>;

/** Uploaded files' metadata and the applications' keys for signed file URLs; every query takes the application id. */
export class FilesRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(row: FileRow): Promise<void> {
    await this.db.insertInto('files').values(row).execute();
  }

  get(appId: string, id: string): Promise<FileRow | undefined> {
    return this.db.selectFrom('files').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  /** Deletes a file and its thumbnail; returns the rows deleted (their storage keys are then removed by the caller). */
  async delete(appId: string, id: string): Promise<FileRow[]> {
    return this.db.transaction().execute(async (trx) => {
      const rows = await trx
        .selectFrom('files')
        .selectAll()
        .where('app_id', '=', appId)
        .where((eb) => eb.or([eb('id', '=', id), eb('thumbnail_of', '=', id)]))
        .execute();
      if (rows.length) await trx.deleteFrom('files').where('app_id', '=', appId).where('id', 'in', rows.map((r) => r.id)).execute();
      return rows;
    });
  }

  /** The application's signing key for file URLs, made on first use (by whichever node or process asks first). */
  async urlKey(appId: string, make: () => string, now: number): Promise<string> {
    const found = await this.db.selectFrom('file_url_keys').select('secret').where('app_id', '=', appId).executeTakeFirst();
    if (found) return found.secret;
    await this.db.insertInto('file_url_keys').values({ app_id: appId, secret: make(), created_at: now }).onConflict((oc) => oc.column('app_id').doNothing()).execute();
    const row = await this.db.selectFrom('file_url_keys').select('secret').where('app_id', '=', appId).executeTakeFirstOrThrow();
    return row.secret;
  }
}
