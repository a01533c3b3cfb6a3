import type { Actor } from '../auth/guard.js';
import { AppError } from '../errors.js';
import type { MemberRow, RoomRow } from '../store/rooms-repo.js';
import type { RoomSnapshot } from './room-cache.js';

/**
 * Who may do what in a room, in one table (spec §6.7): the one access decision every service asks, through
 * `RoomsService.access` / `accessCached` (which load the facts) and `authorize` (which decides). Roles, strongest
 * first: the platform administrator (the API key), the room owner, managers (member role "admin"), members,
 * banned users, and everyone else. A room without an owner (direct rooms, rooms the backend made without one) is
 * moderated by the platform administrator and its managers.
 *
 * A ban is a role, not a separate check: a user banned from a room is "banned" there whatever else they are
 * (member, manager, owner), until the ban ends, and that role may do nothing in the room but leave it and keep
 * their own preferences for it. A ban binds the user, whoever acts as them: the API key naming a banned user in
 * IM-CLIENT-ID is banned too (the API key alone is the platform and is never banned). Who receives a room's
 * events is the same decision (`audience`).
 */
export interface Caller {
  appId: string;
  /** The user acting; null for the API key without IM-CLIENT-ID. */
  userId: string | null;
  platform: boolean;
}

export type RoomRole = 'platform' | 'owner' | 'manager' | 'member' | 'banned' | 'none';

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
  | 'ban' // ban and unban users, see the ban list
  | 'leave' // remove oneself from the room
  | 'ownState'; // one's own preferences and mute for the room, the ids one hid there (nothing of the room itself)

const RANK: Record<RoomRole, number> = { platform: 5, owner: 4, manager: 3, member: 2, banned: 1, none: 0 };

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
  leave: 'banned',
  ownState: 'banned',
};

export function callerOf(actor: Actor): Caller {
  return actor.kind === 'admin'
    ? { appId: actor.app.id, userId: actor.userId ?? null, platform: true }
    : { appId: actor.app.id, userId: actor.userId, platform: false };
}

/** The caller's role; `banned` says whether the acting user (if any) is banned from the room now. */
export function roleIn(caller: Caller, room: RoomRow, member: MemberRow | undefined, banned = false): RoomRole {
  if (banned && caller.userId !== null) return 'banned';
  if (caller.platform) return 'platform';
  if (!member) return 'none';
  if (room.owner === member.user_id) return 'owner';
  if (member.role === 'admin') return 'manager';
  return 'member';
}

/** The caller's role from a room's snapshot (members, roles and bans as cached) at `now`. */
export function roleInSnapshot(caller: Caller, snap: RoomSnapshot, now: number): RoomRole {
  const userId = caller.userId;
  return roleIn(caller, snap.room, userId === null ? undefined : snap.members.get(userId), userId !== null && isBanned(snap, userId, now));
}

/** Whether a ban ending at `until` (null: without end; undefined: no ban) is in force at `now`. */
export function banInForce(until: number | null | undefined, now: number): boolean {
  return until === null || (until !== undefined && until > now);
}

/** True when the user is banned from the snapshot's room at `now`. */
export function isBanned(snap: RoomSnapshot, userId: string, now: number): boolean {
  return snap.bans.has(userId) && banInForce(snap.bans.get(userId), now);
}

/**
 * Who receives what happens in a room (new and changed messages, room changes, typing, read receipts): the members
 * whose role there lets them read it, so everyone but the banned.
 */
export function audience(snap: RoomSnapshot, now: number): string[] {
  const out: string[] = [];
  for (const id of snap.members.keys()) if (!isBanned(snap, id, now)) out.push(id);
  return out;
}

export function can(role: RoomRole, action: RoomAction, room: RoomRow): boolean {
  let need = NEEDS[action];
  if (action === 'invite' && room.opening === 0) need = 'manager';
  return RANK[role] >= RANK[need];
}

/** Throws the error a caller should see when it may not act: not a member, or not a strong enough role. */
export function authorize(role: RoomRole, action: RoomAction, room: RoomRow): void {
  if (can(role, action, room)) return;
  if (role === 'banned') throw banned();
  if (role === 'none') throw new AppError('NOT_ROOM_MEMBER', 'You are not a member of this room');
  throw new AppError('INSUFFICIENT_PERMISSIONS', `Only the room owner${NEEDS[action] === 'owner' ? '' : ', a manager'} or the platform administrator can ${DESCRIBE[action]}`);
}

/** True when `a` is a strictly stronger role than `b` (who may ban whom). */
export function outranks(a: RoomRole, b: RoomRole): boolean {
  return RANK[a] > RANK[b];
}

export function banned(): AppError {
  return new AppError('USER_BANNED', 'You are banned from this room');
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
  leave: 'leave this room',
  ownState: 'change your own state in this room',
};

// ---------------------------------------------------------------- uploaded files

export type FileAction = 'read' | 'delete';

/** What the file decision needs to know of a file. */
export interface FileFacts {
  roomId: string | null;
  uploaderId: string | null;
}

/**
 * Who may read or delete an uploaded file (docs/files.md), given the snapshot of the room the file was uploaded to
 * (undefined when it has none, or the room is gone). The API key alone may do anything. A file of a room follows the
 * room: its readers read it (so the banned do not, and neither does an uploader banned from the room: a ban binds
 * its user); its uploader reads it too, after leaving the room. Deleting takes the uploader, or a role that may delete
 * the room's messages (owner, managers, the API key acting as a user). A file without a room is its uploader's and
 * the platform's alone.
 */
export function authorizeFile(caller: Caller, file: FileFacts, snap: RoomSnapshot | undefined, now: number, action: FileAction): void {
  if (caller.platform && caller.userId === null) return;
  const role = snap ? roleInSnapshot(caller, snap, now) : undefined;
  const own = caller.userId !== null && caller.userId === file.uploaderId;
  if (action === 'delete' && own) return;
  if (role === 'banned') throw banned();
  if (action === 'read' && own) return;
  if (snap && role) {
    authorize(role, action === 'read' ? 'read' : 'deleteMessages', snap.room);
    return;
  }
  if (caller.platform) return;
  throw new AppError('INSUFFICIENT_PERMISSIONS', action === 'read' ? 'Only the uploader can read this file' : 'Only the uploader can delete this file');
}
