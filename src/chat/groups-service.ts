import { AppError } from '../errors.js';
import { iso } from '../lib/clock.js';
import { newObjectId } from '../lib/ids.js';
import { isUniqueViolation } from '../store/database.js';
import { GroupsRepo, type GroupRow } from '../store/groups-repo.js';
import { UsersRepo } from '../store/users-repo.js';
import type { ChatContext } from './chat-context.js';

type Json = Record<string, unknown>;

/**
 * User groups (spec §3.2): a virtual user whose id can be put in a room's members; every user of the group
 * then gets that room (access, delivery and their own unread count). The pages document create and list only.
 */
export class GroupsService {
  constructor(private readonly ctx: ChatContext) {}

  async create(appId: string, input: { _id?: string; nickname?: string; avatarUrl?: string; members?: string[] }): Promise<Json> {
    if (typeof input.nickname !== 'string' || input.nickname.trim() === '') throw new AppError('MISSING_PARAMETER', 'nickname is required');
    const now = this.ctx.clock.now();
    const id = input._id ?? newObjectId(now);
    const members = [...new Set(input.members ?? [])];
    try {
      await this.ctx.db.transaction().execute(async (trx) => {
        if ((await new UsersRepo(trx).getMany(appId, [id])).length) throw new AppError('GROUP_ALREADY_EXISTS', `A user with the id ${id} exists; a group needs an id of its own`);
        const found = new Set((await new UsersRepo(trx).getMany(appId, members)).map((u) => u.id));
        const missing = members.filter((m) => !found.has(m));
        if (missing.length) throw new AppError('USER_NOT_FOUND', `Users not found: ${missing.slice(0, 20).join(', ')}`);
        await new GroupsRepo(trx).insert({ app_id: appId, id, nickname: input.nickname!, avatar_url: input.avatarUrl ?? null, created_at: now, updated_at: now }, members);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('GROUP_ALREADY_EXISTS', 'A group with this ID already exists');
      throw err;
    }
    return render((await new GroupsRepo(this.ctx.db).getMany(appId, [id]))[0]!);
  }

  async list(appId: string, limit: number): Promise<{ totalCount: number; data: Json[] }> {
    const { rows, total } = await new GroupsRepo(this.ctx.db).list(appId, limit);
    return { totalCount: total, data: rows.map(render) };
  }
}

function render(g: GroupRow): Json {
  const out: Json = { _id: g.id, id: g.id, nickname: g.nickname, members: g.members, createdAt: iso(g.created_at), createdAtMS: g.created_at, updatedAt: iso(g.updated_at), updatedAtMS: g.updated_at };
  if (g.avatar_url !== null) out.avatarUrl = g.avatar_url;
  return out;
}
