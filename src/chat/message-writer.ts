import type { Kysely } from 'kysely';
import { newObjectId } from '../lib/ids.js';
import type { Database } from '../store/schema.js';
import { MessagesRepo, type MessageRow } from '../store/messages-repo.js';
import { RoomsRepo } from '../store/rooms-repo.js';

/**
 * The one way a message enters a room, inside the caller's transaction: store it, make it the room's last
 * message, raise every other member's unread badge by one (a single UPDATE, so counts stay exact under
 * concurrent sends), and mark it read for its sender.
 */
export async function appendMessage(
  trx: Kysely<Database>,
  input: { appId: string; roomId: string; senderId: string | null; messageType: string; message: unknown; fields: Record<string, unknown>; replyId?: string | null; now: number },
): Promise<MessageRow> {
  const row: MessageRow = {
    app_id: input.appId,
    id: newObjectId(input.now),
    room_id: input.roomId,
    sender_id: input.senderId,
    message_type: input.messageType,
    message: JSON.stringify(input.message ?? ''),
    fields: JSON.stringify(input.fields),
    reply_id: input.replyId ?? null,
    pinned: 0,
    edited_at: null,
    message_time: input.now,
    created_at: input.now,
    updated_at: input.now,
  };
  const rooms = new RoomsRepo(trx);
  await new MessagesRepo(trx).insert(row);
  await rooms.update(input.appId, input.roomId, { last_message_id: row.id, updated_at: input.now });
  await rooms.incrementBadges(input.appId, input.roomId, input.senderId, input.now);
  if (input.senderId !== null) await rooms.updateMember(input.appId, input.roomId, input.senderId, { last_read: row.id, badge: 0 });
  return row;
}
