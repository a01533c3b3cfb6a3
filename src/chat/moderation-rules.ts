import type { Kysely } from 'kysely';
import { AppError } from '../errors.js';
import { ModerationRepo } from '../store/moderation-repo.js';
import type { Database } from '../store/schema.js';
import { banned, isBanned } from './policy.js';
import type { RoomSnapshot } from './room-cache.js';

/**
 * The checks every message path asks before storing (MessagesService, BatchService), for the sender named in the
 * message (who may differ from the caller: `POST /messages` with `sender`, batch items). The ban is the policy's
 * (policy.ts); the block between the two members of a direct room is a rule of sending only. Both bind the user,
 * whoever submits on their behalf: the API key sending as a banned or blocked user is refused too. Only a
 * freeze is lifted for the platform (see MessagesService), because it is a state of the room.
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

/** The same text for both sides: the blocked user is not told who blocked whom. */
export function blocked(): AppError {
  return new AppError('USER_BLOCKED', 'Messages cannot be sent in this direct room: one of its members has blocked the other');
}

