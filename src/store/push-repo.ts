import type { Kysely } from 'kysely';
import type { PlannedStatement } from './append-repo.js';
import type { Database, PushCredentialsTable, PushDevicesTable } from './schema.js';

export type DeviceRow = PushDevicesTable;
export type CredentialRow = PushCredentialsTable;
export type Provider = DeviceRow['provider'];

/** Removing a device a provider reported invalid, as one fixed statement (SQLite: the writer thread). */
const REMOVE_DEVICE_SQL = 'delete from push_devices where app_id = ? and id = ? and token_key = ?';

/** Devices registered for push, the applications' push credentials, and who a new message notifies (docs/push.md). */
export class PushRepo {
  constructor(private readonly db: Kysely<Database>) {}

  // ---------------------------------------------------------------- devices

  /** Stores a device; a token subscribed before (by anyone of the application) moves to this row's user. */
  async upsertDevice(row: DeviceRow): Promise<void> {
    await this.db
      .insertInto('push_devices')
      .values(row)
      .onConflict((oc) => oc.columns(['app_id', 'provider', 'token_key']).doUpdateSet({ user_id: row.user_id, type: row.type, device_id: row.device_id, updated_at: row.updated_at }))
      .execute();
  }

  /** A device (deviceId) that subscribes a new token forgets its old one. */
  async deleteOtherTokensOfDevice(appId: string, userId: string, deviceId: string, provider: Provider, keepTokenKey: string): Promise<void> {
    await this.db
      .deleteFrom('push_devices')
      .where('app_id', '=', appId)
      .where('user_id', '=', userId)
      .where('device_id', '=', deviceId)
      .where('provider', '=', provider)
      .where('token_key', '!=', keepTokenKey)
      .execute();
  }

  /** Removes a user's devices of one provider matching a device id and/or a token; answers how many. */
  async deleteDevices(appId: string, userId: string, provider: Provider, by: { deviceId?: string; tokenKey?: string }): Promise<number> {
    let q = this.db.deleteFrom('push_devices').where('app_id', '=', appId).where('user_id', '=', userId).where('provider', '=', provider);
    if (by.deviceId !== undefined) q = q.where('device_id', '=', by.deviceId);
    if (by.tokenKey !== undefined) q = q.where('token_key', '=', by.tokenKey);
    return Number((await q.executeTakeFirst()).numDeletedRows);
  }

  /** A user's devices, oldest first. */
  devicesOfUser(appId: string, userId: string): Promise<DeviceRow[]> {
    return this.db.selectFrom('push_devices').selectAll().where('app_id', '=', appId).where('user_id', '=', userId).orderBy('updated_at').orderBy('id').execute();
  }

  async deleteDevice(appId: string, id: string): Promise<void> {
    await this.db.deleteFrom('push_devices').where('app_id', '=', appId).where('id', '=', id).execute();
  }

  device(appId: string, id: string): Promise<DeviceRow | undefined> {
    return this.db.selectFrom('push_devices').selectAll().where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  }

  /** The devices of these users served by these providers. */
  devicesOf(appId: string, userIds: string[], providers: Provider[]): Promise<DeviceRow[]> {
    if (userIds.length === 0 || providers.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom('push_devices')
      .selectAll()
      .where('app_id', '=', appId)
      .where('user_id', 'in', userIds)
      .where('provider', 'in', providers)
      .orderBy('user_id')
      .orderBy('id')
      .execute();
  }

  /**
   * Removes a device a provider reported invalid, unless its token changed meanwhile (token_key): one statement
   * of fixed text, for the SQLite writer thread (Store.runBatch).
   */
  planRemoveDevice(appId: string, id: string, tokenKey: string): PlannedStatement {
    return { sql: REMOVE_DEVICE_SQL, params: [appId, id, tokenKey] };
  }

  async removeDevice(appId: string, id: string, tokenKey: string): Promise<void> {
    await this.db.deleteFrom('push_devices').where('app_id', '=', appId).where('id', '=', id).where('token_key', '=', tokenKey).execute();
  }

  // ---------------------------------------------------------------- credentials

  credentials(appId: string): Promise<CredentialRow[]> {
    return this.db.selectFrom('push_credentials').selectAll().where('app_id', '=', appId).orderBy('provider').execute();
  }

  async putCredentials(row: CredentialRow): Promise<void> {
    await this.db
      .insertInto('push_credentials')
      .values(row)
      .onConflict((oc) => oc.columns(['app_id', 'provider']).doUpdateSet({ data: row.data, info: row.info, updated_at: row.updated_at }))
      .execute();
  }

  async deleteCredentials(appId: string, provider: string): Promise<boolean> {
    const r = await this.db.deleteFrom('push_credentials').where('app_id', '=', appId).where('provider', '=', provider as CredentialRow['provider']).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  /** Applications with some push credentials, and those of them with at least one device (webhooks/outbox.ts). */
  async pushApps(): Promise<{ credentialed: string[]; withDevices: string[] }> {
    const credentialed = (await this.db.selectFrom('push_credentials').select('app_id').distinct().execute()).map((r) => r.app_id);
    const withDevices = (
      await this.db
        .selectFrom('push_credentials as c')
        .select('c.app_id')
        .distinct()
        .where((eb) => eb.exists(eb.selectFrom('push_devices as d').select('d.id').whereRef('d.app_id', '=', 'c.app_id')))
        .execute()
    ).map((r) => r.app_id);
    return { credentialed, withDevices };
  }

  // ---------------------------------------------------------------- recipients of a new message

  /**
   * Of `userIds` (the room's audience, as the policy gives it), those a new message from `senderId` may notify: not
   * muting the room, not blocking the sender, and with at least one device. (Who has a live socket is known only in
   * memory: the caller leaves those out.) Asked in chunks, so a big room stays under the dialects' parameter limits.
   */
  async recipients(appId: string, roomId: string, userIds: string[], senderId: string | null): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < userIds.length; i += 500) {
      let q = this.db
        .selectFrom('push_devices as d')
        .select('d.user_id')
        .distinct()
        .where('d.app_id', '=', appId)
        .where('d.user_id', 'in', userIds.slice(i, i + 500))
        .where((eb) =>
          eb.not(
            eb.exists(
              eb
                .selectFrom('room_prefs as p')
                .select('p.user_id')
                .where('p.app_id', '=', appId)
                .where('p.room_id', '=', roomId)
                .whereRef('p.user_id', '=', 'd.user_id')
                .where('p.scope', '=', '')
                .where('p.muted', '=', 1),
            ),
          ),
        );
      if (senderId !== null) {
        q = q.where((eb) =>
          eb.not(eb.exists(eb.selectFrom('user_blocks as k').select('k.blocker').where('k.app_id', '=', appId).whereRef('k.blocker', '=', 'd.user_id').where('k.blockee', '=', senderId))),
        );
      }
      for (const r of await q.execute()) out.push(r.user_id);
    }
    return out.sort();
  }
}
