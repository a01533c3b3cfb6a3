import type { Kysely, Selectable } from 'kysely';
import type { Database, UserGroupsTable } from './schema.js';

export type GroupRow = Selectable<UserGroupsTable> & { members: string[] };

/** User groups (virtual users whose members share the rooms the group is in). */
export class GroupsRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(row: Selectable<UserGroupsTable>, members: string[]): Promise<void> {
    await this.db.insertInto('user_groups').values(row).execute();
    if (members.length) await this.db.insertInto('group_members').values(members.map((user_id) => ({ app_id: row.app_id, group_id: row.id, user_id }))).execute();
  }

  async getMany(appId: string, ids: string[]): Promise<GroupRow[]> {
    if (ids.length === 0) return [];
    const groups = await this.db.selectFrom('user_groups').selectAll().where('app_id', '=', appId).where('id', 'in', [...new Set(ids)]).execute();
    return this.withMembers(appId, groups);
  }

  async list(appId: string, limit: number): Promise<{ rows: GroupRow[]; total: number }> {
    const count = await this.db.selectFrom('user_groups').select((eb) => eb.fn.countAll<number>().as('n')).where('app_id', '=', appId).executeTakeFirstOrThrow();
    const groups = await this.db.selectFrom('user_groups').selectAll().where('app_id', '=', appId).orderBy('created_at').orderBy('id').limit(limit).execute();
    return { rows: await this.withMembers(appId, groups), total: Number(count.n) };
  }

  private async withMembers(appId: string, groups: Array<Selectable<UserGroupsTable>>): Promise<GroupRow[]> {
    if (groups.length === 0) return [];
    const members = await this.db
      .selectFrom('group_members')
      .select(['group_id', 'user_id'])
      .where('app_id', '=', appId)
      .where('group_id', 'in', groups.map((g) => g.id))
      .orderBy('user_id')
      .execute();
    return groups.map((g) => ({ ...g, members: members.filter((m) => m.group_id === g.id).map((m) => m.user_id) }));
  }
}
