import type { Actor } from '../auth/guard.js';
import { AppError } from '../errors.js';
import type { MemberRow, RoomRow } from '../store/rooms-repo.js';

/**
 * Who may do what in a room, in one table (spec §6.7). Roles, strongest first: the platform administrator
 * (the API key), the room owner, managers (member role "admin"), members. A room without an owner (direct
 * rooms, rooms the backend made without one) is moderated by the platform administrator and its managers.
 */
export interface Caller {
  appId: string;
  /** The user acting; null for the API key without IM-CLIENT-ID. */
  userId: string | null;
  platform: boolean;
}

export type RoomRole = 'platform' | 'owner' | 'manager' | 'member' | 'none';

export type RoomAction =
  | 'read' // see the room, its members and its messages
  | 'send'
  | 'update' // name, cover, description, tags, webhook, bot, extParams, encrypted, opening
  | 'freeze'
  | 'setOwnerOrManagers'
  | 'delete'
  | 'invite'
  | 'removeOthers'
  | 'setRole'
  | 'setMemberProperty' // of another member
  | 'pin'
  | 'deleteMessages'
  | 'moderateMessages' // recall/edit messages of others
  | 'ban'; // ban and unban users, see the ban list

const RANK: Record<RoomRole, number> = { platform: 4, owner: 3, manager: 2, member: 1, none: 0 };

const NEEDS: Record<RoomAction, RoomRole> = {
  read: 'member',
  send: 'member',
  update: 'manager',
  freeze: 'manager',
  setOwnerOrManagers: 'owner',
  delete: 'owner',
  invite: 'member',
  removeOthers: 'manager',
  setRole: 'owner',
  setMemberProperty: 'manager',
  pin: 'manager',
  deleteMessages: 'manager',
  moderateMessages: 'manager',
  ban: 'manager',
};

export function callerOf(actor: Actor): Caller {
  return actor.kind === 'admin'
    ? { appId: actor.app.id, userId: actor.userId ?? null, platform: true }
    : { appId: actor.app.id, userId: actor.userId, platform: false };
}

export function roleIn(caller: Caller, room: RoomRow, member: MemberRow | undefined): RoomRole {
  if (caller.platform) return 'platform';
  if (!member) return 'none';
  if (room.owner === member.user_id) return 'owner';
  if (member.role === 'admin') return 'manager';
  return 'member';
}

export function can(role: RoomRole, action: RoomAction, room: RoomRow): boolean {
  let need = NEEDS[action];
  if (action === 'invite' && room.opening === 0) need = 'manager';
  return RANK[role] >= RANK[need];
}

/** Throws the error a caller should see when it may not act: not a member, or not a strong enough role. */
export function authorize(role: RoomRole, action: RoomAction, room: RoomRow): void {
  if (can(role, action, room)) return;
  if (role === 'none') throw new AppError('NOT_ROOM_MEMBER', 'You are not a member of this room');
  throw new AppError('INSUFFICIENT_PERMISSIONS', `Only the room owner${NEEDS[action] === 'owner' ? '' : ', a manager'} or the platform administrator can ${DESCRIBE[action]}`);
}

/** True when `a` is a strictly stronger role than `b` (who may ban whom). */
export function outranks(a: RoomRole, b: RoomRole): boolean {
  return RANK[a] > RANK[b];
}

export function isSuperuser(role: RoomRole): boolean {
  return RANK[role] >= RANK.manager;
}

const DESCRIBE: Record<RoomAction, string> = {
  read: 'read this room',
  send: 'send to this room',
  update: 'update this room',
  freeze: 'freeze or unfreeze this room',
  setOwnerOrManagers: 'change the owner or managers',
  delete: 'delete this room',
  invite: 'add members to this closed room',
  removeOthers: 'remove other members',
  setRole: 'change member roles',
  setMemberProperty: "change another member's properties",
  pin: 'pin or unpin messages',
  deleteMessages: 'delete messages',
  moderateMessages: "change other members' messages",
  ban: 'ban or unban users in this room',
};
