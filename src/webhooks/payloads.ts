import type { Kysely } from 'kysely';
import type { ChatRenderer } from '../chat/render.js';
import { memberSummary } from '../chat/render.js';
import type { Caller } from '../chat/policy.js';
import type { RoomsService } from '../chat/rooms-service.js';
import { renderUser } from '../chat/users-service.js';
import { AppError } from '../errors.js';
import { type MessageRow, MessagesRepo } from '../store/messages-repo.js';
import type { Database } from '../store/schema.js';
import { UsersRepo } from '../store/users-repo.js';
import type { OutboxRow } from '../store/webhooks-repo.js';
import type { Facts } from './outbox.js';

type Json = Record<string, unknown>;

/**
 * Who a webhook payload is rendered for: the application's own backend, which holds the API key and so sees what
 * the platform sees (policy.ts: the platform role). Rendering goes through the same services and renderer as the
 * API's answers, so a payload never shows what the API key could not read.
 */
export function receiverOf(appId: string): Caller {
  return { appId, userId: null, platform: true };
}

/** Renders the `data` of webhook payloads from an outbox row's facts, as the store holds them at fan-out time. */
export class PayloadRenderer {
  /**
   * Messages rendered ahead for the events of one fan-out round (`prepare`), by application and id: as stored now,
   * and for message.created as they were created (from the row in the event).
   */
  private ready = new Map<string, Json>();
  private created = new Map<string, Json>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly render: ChatRenderer,
    private readonly rooms: RoomsService,
  ) {}

  /**
   * Renders the messages of a round's events together: one read of the rows and one render per application, not
   * a few statements per event.
   */
  async prepare(events: Array<{ app_id: string; facts: Facts }>): Promise<void> {
    this.ready = new Map();
    this.created = new Map();
    const byApp = new Map<string, { ids: Set<string>; rows: MessageRow[] }>();
    for (const e of events) {
      if (e.facts.messageId === undefined) continue;
      let app = byApp.get(e.app_id);
      if (!app) byApp.set(e.app_id, (app = { ids: new Set(), rows: [] }));
      if (e.facts.row) app.rows.push(e.facts.row);
      else app.ids.add(e.facts.messageId);
    }
    for (const [appId, { ids, rows }] of byApp) {
      const current = await new MessagesRepo(this.db).getMany(appId, [...ids]);
      const rendered = await this.render.renderMessages(appId, [...current, ...rows]);
      current.forEach((r, i) => this.ready.set(`${appId}\u0000${r.id}`, rendered[i] as Json));
      rows.forEach((r, i) => this.created.set(`${appId}\u0000${r.id}`, rendered[current.length + i] as Json));
    }
  }

  /** The message as clients read it; a message deleted since is given by its ids alone, with `deleted: true`. */
  async message(appId: string, roomId: string | null, messageId: string, asCreated = false): Promise<Json> {
    const prepared = (asCreated ? this.created.get(`${appId}\u0000${messageId}`) : undefined) ?? this.ready.get(`${appId}\u0000${messageId}`);
    if (prepared) return prepared;
    const row = await new MessagesRepo(this.db).get(appId, messageId);
    if (!row) return { _id: messageId, id: messageId, room: roomId, deleted: true };
    const [rendered] = await this.render.renderMessages(appId, [row]);
    return rendered as Json;
  }

  async members(appId: string, userIds: string[]): Promise<Json[]> {
    const rows = new Map((await new UsersRepo(this.db).getMany(appId, userIds)).map((u) => [u.id, u]));
    return userIds.map((id) => memberSummary(id, rows.get(id)));
  }

  /** The room as the API key reads it (GET /rooms/:id), or null when it no longer exists. */
  async room(appId: string, roomId: string): Promise<Json | null> {
    try {
      return await this.rooms.get(receiverOf(appId), roomId);
    } catch (err) {
      if (err instanceof AppError && err.status === 404) return null;
      throw err;
    }
  }

  /** The `data` of an application-level endpoint's payload (docs/webhooks.md lists each type's fields). */
  async endpointData(e: OutboxRow, f: Facts): Promise<Json> {
    const base: Json = e.room_id !== null ? { roomID: e.room_id } : {};
    if (f.actorId !== undefined) base.actorID = f.actorId;
    switch (e.type) {
      case 'message.created':
        return { ...base, message: await this.message(e.app_id, e.room_id, f.messageId!, true) };
      case 'message.edited':
      case 'message.recalled':
        return { ...base, message: await this.message(e.app_id, e.room_id, f.messageId!) };
      case 'message.deleted':
        return { ...base, messageIDs: f.messageIds };
      case 'room.created':
        return { ...base, members: f.members ?? [], room: await this.room(e.app_id, e.room_id!) };
      case 'room.updated':
        return { ...base, changes: f.changes ?? [], room: await this.room(e.app_id, e.room_id!) };
      case 'room.deleted':
        return { ...base, members: f.members ?? [] };
      case 'members.added':
        return { ...base, joined: f.joined === true, members: await this.members(e.app_id, f.userIds ?? []) };
      case 'members.removed':
        return { ...base, members: await this.members(e.app_id, f.userIds ?? []) };
      case 'user.created': {
        const [row] = await new UsersRepo(this.db).getMany(e.app_id, [f.userId!]);
        return { userID: f.userId, user: row ? renderUser(row) : null };
      }
      case 'user.deleted':
        return { userID: f.userId };
      case 'user.banned':
        return { ...base, userID: f.userId, unblockAt: f.unblockAt ?? null };
      case 'key.alert':
        return { alert: f.alert ?? null };
      default:
        return { ...base, userID: f.userId };
    }
  }

  /**
   * The `data` of a room webhook's payload, as IMKIT sends it (spec §4.5): the message for MESSAGE; for
   * JOIN_ROOM, ADD_MEMBERS and DELETE_MEMBERS the room id, the acting user and the members concerned.
   */
  async roomData(e: OutboxRow, f: Facts): Promise<Json> {
    if (e.type === 'message.created') return this.message(e.app_id, e.room_id, f.messageId!, true);
    const actor = f.actorId ?? null;
    const [sender] = actor === null ? [null] : await this.members(e.app_id, [actor]);
    return { room: e.room_id, sender, members: await this.members(e.app_id, f.userIds ?? []) };
  }
}
