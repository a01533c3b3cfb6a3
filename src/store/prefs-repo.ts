import type { Kysely, Selectable } from 'kysely';
import type { Database, RoomPrefsTable, UserPrefsTable } from './schema.js';

export type RoomPrefRow = Selectable<RoomPrefsTable>;
export type UserPrefRow = Selectable<UserPrefsTable>;

/** Per-user room preferences (tags, folder, mute...) and free-form user preferences. */
export class PrefsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  roomPrefs(appId: string, userId: string, roomIds: string[], scope = ''): Promise<RoomPrefRow[]> {
    if (roomIds.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom('room_prefs')
      .selectAll()
      .where('app_id', '=', appId)
      .where('user_id', '=', userId)
      .where('scope', '=', scope)
      .where('room_id', 'in', roomIds)
      .execute();
  }

  /** One room's preferences of many users (a room event rendered for each online member). */
  roomPrefsOfUsers(appId: string, roomId: string, userIds: string[], scope = ''): Promise<RoomPrefRow[]> {
    if (userIds.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom('room_prefs')
      .selectAll()
      .where('app_id', '=', appId)
      .where('room_id', '=', roomId)
      .where('scope', '=', scope)
      .where('user_id', 'in', userIds)
      .execute();
  }

  allRoomPrefs(appId: string, userId: string, scope = ''): Promise<RoomPrefRow[]> {
    return this.db.selectFrom('room_prefs').selectAll().where('app_id', '=', appId).where('user_id', '=', userId).where('scope', '=', scope).execute();
  }

  async mutedRooms(appId: string, userId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('room_prefs')
      .select('room_id')
      .where('app_id', '=', appId)
      .where('user_id', '=', userId)
      .where('scope', '=', '')
      .where('muted', '=', 1)
      .orderBy('room_id')
      .execute();
    return rows.map((r) => r.room_id);
  }

  async upsertRoomPref(row: RoomPrefRow): Promise<void> {
    await this.db
      .insertInto('room_prefs')
      .values(row)
      .onConflict((oc) => oc.columns(['app_id', 'user_id', 'room_id', 'scope']).doUpdateSet({ data: row.data, muted: row.muted, updated_at: row.updated_at }))
      .execute();
  }

  userPrefs(appId: string, userId: string): Promise<UserPrefRow[]> {
    return this.db.selectFrom('user_prefs').selectAll().where('app_id', '=', appId).where('user_id', '=', userId).orderBy('key').execute();
  }

  async upsertUserPref(row: UserPrefRow): Promise<void> {
    await this.db
      .insertInto('user_prefs')
      .values(row)
      .onConflict((oc) => oc.columns(['app_id', 'user_id', 'key']).doUpdateSet({ data: row.data, updated_at: row.updated_at }))
      .execute();
  }

  async deleteUserPref(appId: string, userId: string, key: string): Promise<boolean> {
    const res = await this.db.deleteFrom('user_prefs').where('app_id', '=', appId).where('user_id', '=', userId).where('key', '=', key).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }
}
