import type { Kysely } from 'kysely';
import { AppError } from '../errors.js';
import { ModerationRepo } from '../store/moderation-repo.js';
import type { Database } from '../store/schema.js';
import { isBanned, type RoomSnapshot } from './room-cache.js';

/**
 * The checks every message path asks before storing (MessagesService, BatchService) and before a user reads a
 * room. They bind the user, whoever submits on their behalf: the API key sending as a banned or blocked user is
 * refused too. Only a freeze is lifted for the platform (see MessagesService), because it is a state of the room.
 * Bans and members come from the room's cached snapshot (room-cache.ts); a block between two users is read from
 * the store.
 */
export async function assertMaySend(db: Kysely<Database>, snap: RoomSnapshot, senderId: string | null, now: number): Promise<void> {
  if (senderId === null) return;
  if (isBanned(snap, senderId, now)) throw banned();
  if (snap.room.room_type === 'direct') {
    const others = [...snap.members.keys()].filter((u) => u !== senderId);
    if (await new ModerationRepo(db).blockedBetween(snap.room.app_id, senderId, others)) throw blocked();
  }
}

/** A banned user reads nothing of the room (history, single messages) until the ban ends. */
export function assertMayRead(snap: RoomSnapshot, userId: string | null, now: number): void {
  if (userId !== null && isBanned(snap, userId, now)) throw banned();
}

/** The same text for both sides: the blocked user is not told who blocked whom. */
export function blocked(): AppError {
  return new AppError('USER_BLOCKED', 'Messages cannot be sent in this direct room: one of its members has blocked the other');
}

export function banned(): AppError {
  return new AppError('USER_BANNED', 'You are banned from this room');
}
