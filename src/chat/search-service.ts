import { AppError, invalidRequest } from '../errors.js';
import type { RoomRow } from '../store/rooms-repo.js';
import type { FileRow } from '../store/files-repo.js';
import { renderFile } from '../files/files-service.js';
import { containing, type MessageFilter, type RoomField, type RoomScope, SearchRepo, type TextPattern } from '../store/search-repo.js';
import type { ChatContext } from './chat-context.js';
import type { Caller } from './policy.js';
import type { RoomsService } from './rooms-service.js';

type Json = Record<string, unknown>;

/** What `POST /search` can look for (the Vue SDK asks for all of them). */
export const SEARCH_TYPES = ['messages', 'roomName', 'roomMember', 'roomTags', 'roomPrefTags', 'roomPrefFolder', 'files'] as const;
export type SearchType = (typeof SEARCH_TYPES)[number];

export const DEFAULT_SEARCH_LIMIT = 50;
export const MAX_SEARCH_LIMIT = 200;
export const MAX_KEYWORD = 256;
/** Rooms one query may name (`room: {$in: [...]}`). */
const MAX_NAMED_ROOMS = 100;

/**
 * Message content a keyword never looks into: ciphertext, recalled messages, and system messages whose text is
 * a member's name or a JSON list of members.
 */
const NOT_TEXT = ['encrypted', 'recall'];
const UNSEARCHABLE = [...NOT_TEXT, 'joinRoom', 'leaveRoom', 'addMember', 'addMembers', 'deleteMember', 'assignAdmin', 'cancelInvitations'];

const ROOM_FIELDS: Record<Exclude<SearchType, 'messages' | 'files'>, RoomField> = {
  roomName: 'name',
  roomMember: 'member',
  roomTags: 'tag',
  roomPrefTags: 'prefTag',
  roomPrefFolder: 'prefFolder',
};

export interface SearchInput {
  type: unknown;
  keyword: string;
  room?: string;
  roomTags?: string[];
  limit?: number;
}

/**
 * Keyword search over the caller's messages and rooms, and the Mongo-style message query of `GET /messages`.
 * A user only ever finds what is in rooms they belong to (and not what they hid for themself); the API key
 * alone searches every room of its application.
 */
export class SearchService {
  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
  ) {}

  /** `POST /search`: one result list per requested type. */
  async search(caller: Caller, input: SearchInput): Promise<Record<string, unknown[]>> {
    const types = parseTypes(input.type);
    const keyword = checkKeyword(input.keyword);
    const limit = checkLimit(input.limit);
    const scope = await this.scope(caller, input.room === undefined ? undefined : [input.room], input.roomTags);
    const repo = new SearchRepo(this.ctx.db, this.ctx.dialect);
    const out: Record<string, unknown[]> = {};
    for (const type of types) {
      if (type === 'messages') out.messages = await this.messageGroups(caller, scope, keyword, limit);
      else if (type === 'files') out.files = await this.fileGroups(caller.appId, scope, keyword, limit);
      else out[type] = (await repo.rooms(caller.appId, scope, ROOM_FIELDS[type], keyword, limit)).map(roomSummary);
    }
    return out;
  }

  /** `POST /messages/search` `{message: keyword}`: whole messages, newest first. */
  async searchMessages(caller: Caller, keyword: string, limit: number | undefined): Promise<{ totalCount: number; data: Json[] }> {
    const scope = await this.scope(caller, undefined, undefined);
    const filter: MessageFilter = { text: containing(checkKeyword(keyword)), excludeTypes: UNSEARCHABLE, hiddenFor: caller.userId ?? undefined };
    return this.findMessages(caller, scope, filter, checkLimit(limit));
  }

  /** `GET /messages?q=<JSON>`: `room`, `sender`, `messageType` and `message` (a string or a simple `$regex`). */
  async queryMessages(caller: Caller, q: string | undefined, limit: number | undefined): Promise<{ totalCount: number; data: Json[] }> {
    const query = parseQuery(q);
    const scope = await this.scope(caller, query.rooms, undefined);
    return this.findMessages(caller, scope, { ...query.filter, hiddenFor: caller.userId ?? undefined }, checkLimit(limit));
  }

  // ---------------------------------------------------------------- helpers

  private async findMessages(caller: Caller, scope: RoomScope, filter: MessageFilter, limit: number): Promise<{ totalCount: number; data: Json[] }> {
    const { rows, total } = await new SearchRepo(this.ctx.db, this.ctx.dialect).messages(caller.appId, scope, filter, limit);
    return { totalCount: total, data: await this.ctx.render.renderMessages(caller.appId, rows) };
  }

  /** Message ids grouped by room; rooms in the order of their newest hit. */
  private async messageGroups(caller: Caller, scope: RoomScope, keyword: string, limit: number): Promise<Json[]> {
    const repo = new SearchRepo(this.ctx.db, this.ctx.dialect);
    const { rows } = await repo.messages(caller.appId, scope, { text: containing(keyword), excludeTypes: UNSEARCHABLE, hiddenFor: caller.userId ?? undefined }, limit);
    const byRoom = new Map<string, string[]>();
    for (const r of rows) byRoom.set(r.room_id, [...(byRoom.get(r.room_id) ?? []), r.id]);
    const rooms = new Map((await repo.roomsByIds(caller.appId, [...byRoom.keys()])).map((r) => [r.id, r]));
    return [...byRoom].flatMap(([roomId, messages]) => {
      const room = rooms.get(roomId);
      return room ? [{ room: roomSummary(room), messages }] : [];
    });
  }

  /**
   * Files shared in the caller's rooms whose name contains the keyword, grouped by room like messages: `messages`
   * holds the file ids (the shape the Vue SDK reads for both), `files` their metadata.
   */
  private async fileGroups(appId: string, scope: RoomScope, keyword: string, limit: number): Promise<Json[]> {
    const repo = new SearchRepo(this.ctx.db, this.ctx.dialect);
    const byRoom = new Map<string, FileRow[]>();
    for (const f of await repo.files(appId, scope, keyword, limit)) byRoom.set(f.room_id!, [...(byRoom.get(f.room_id!) ?? []), f]);
    const rooms = new Map((await repo.roomsByIds(appId, [...byRoom.keys()])).map((r) => [r.id, r]));
    return [...byRoom].flatMap(([roomId, files]) => {
      const room = rooms.get(roomId);
      return room ? [{ room: roomSummary(room), messages: files.map((f) => f.id), files: files.map(renderFile) }] : [];
    });
  }

  /**
   * The caller's rooms (less those they are banned from), narrowed to named rooms (each of which the caller must
   * be able to read, with the same errors as reading its history) and to rooms carrying every tag.
   */
  private async scope(caller: Caller, roomIds: string[] | undefined, roomTags: string[] | undefined): Promise<RoomScope> {
    const at = this.ctx.clock.now();
    if (roomIds) {
      for (const id of roomIds) await this.rooms.accessCached(caller, id, 'read');
    }
    return { userId: caller.userId, at, roomIds, roomTags: roomTags?.length ? [...new Set(roomTags)] : undefined };
  }
}

export function roomSummary(room: RoomRow): Json {
  const out: Json = { _id: room.id, id: room.id };
  if (room.name !== null) out.name = room.name;
  if (room.cover !== null) out.cover = room.cover;
  if (room.description !== null) out.description = room.description;
  out.roomTags = JSON.parse(room.room_tags);
  return out;
}

function parseTypes(type: unknown): SearchType[] {
  const list = typeof type === 'string' ? [type] : Array.isArray(type) ? type : [];
  const known = new Set<string>(SEARCH_TYPES);
  const bad = list.filter((t) => typeof t !== 'string' || !known.has(t));
  if (list.length === 0 || bad.length) {
    const names = SEARCH_TYPES.map((t) => `'${t}'`);
    const got = bad.length ? ` (unsupported: ${bad.map((b) => JSON.stringify(b)).join(', ').slice(0, 200)})` : '';
    throw new AppError('INVALID_SEARCH_TYPE', `Search type must include ${names.slice(0, -1).join(', ')} or ${names.at(-1)}${got}`);
  }
  return [...new Set(list as SearchType[])];
}

function checkKeyword(keyword: unknown): string {
  if (typeof keyword !== 'string' || keyword.length === 0 || keyword.length > MAX_KEYWORD) {
    throw invalidRequest(`Invalid field keyword: must be a string of 1-${MAX_KEYWORD} characters`);
  }
  return keyword;
}

function checkLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_SEARCH_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SEARCH_LIMIT) throw invalidRequest(`Invalid field limit: must be an integer of 1-${MAX_SEARCH_LIMIT}`);
  return limit;
}

// ---------------------------------------------------------------- GET /messages?q=

function fail(message: string): never {
  throw new AppError('INVALID_QUERY', `Invalid query: ${message}`);
}

function parseQuery(text: string | undefined): { rooms?: string[]; filter: MessageFilter } {
  if (text === undefined || text.trim() === '') return { filter: {} };
  let q: unknown;
  try {
    q = JSON.parse(text);
  } catch {
    fail('q must be a JSON object');
  }
  if (typeof q !== 'object' || q === null || Array.isArray(q)) fail('q must be a JSON object');
  const filter: MessageFilter = {};
  let rooms: string[] | undefined;
  for (const [key, value] of Object.entries(q as Json)) {
    switch (key) {
      case 'room':
        rooms = [...new Set(strings(value, key))];
        if (rooms.length > MAX_NAMED_ROOMS) fail(`room: $in takes at most ${MAX_NAMED_ROOMS} rooms`);
        break;
      case 'sender':
        filter.senders = strings(value, key);
        break;
      case 'messageType':
        filter.types = strings(value, key);
        break;
      case 'message':
        if (typeof value === 'string') filter.equals = value;
        else if (isObject(value) && Object.keys(value).length === 1 && typeof value.$eq === 'string') filter.equals = value.$eq;
        else if (isObject(value) && typeof value.$regex === 'string') filter.text = regexPattern(value.$regex, value.$options);
        else fail('message must be a string, {"$eq": string} or {"$regex": string, "$options"?: string}');
        filter.excludeTypes = NOT_TEXT;
        break;
      default:
        fail(`unsupported field ${JSON.stringify(key.slice(0, 64))} (use room, sender, messageType or message)`);
    }
  }
  return { rooms, filter };
}

/** A string, `{$eq: string}` or `{$in: [strings]}`. */
function strings(value: unknown, field: string): string[] {
  if (typeof value === 'string') return [value];
  if (isObject(value) && Object.keys(value).length === 1) {
    if (typeof value.$eq === 'string') return [value.$eq];
    const list = value.$in;
    if (Array.isArray(list) && list.length <= 1000 && list.every((v) => typeof v === 'string')) return list as string[];
  }
  fail(`${field} must be a string, {"$eq": string} or {"$in": [strings]}`);
}

/**
 * `$regex` on message, limited to what LIKE can say exactly on both databases: literal text (with \-escaped
 * punctuation), `^` and `$` anchors, `.` and `.*`. Option `i` ignores case; `s` and `u` are accepted.
 */
function regexPattern(src: string, options: unknown): TextPattern {
  if (options !== undefined && (typeof options !== 'string' || !/^[isu]*$/.test(options))) fail('message: $options may only contain i, s and u');
  if (src.length > 512) fail('message: $regex longer than 512 characters');
  const p: TextPattern = { parts: [], anchoredStart: false, anchoredEnd: false, caseInsensitive: (options as string | undefined)?.includes('i') === true };
  const unsupported = (what: string): never => fail(`message: $regex supports literal text, ^, $, . and .* only (${what} is not supported)`);
  const literal = (c: string) => {
    const last = p.parts.at(-1);
    if (last && 'text' in last) last.text += c;
    else p.parts.push({ text: c });
  };
  const chars = [...src];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '^' && i === 0) p.anchoredStart = true;
    else if (c === '$' && i === chars.length - 1) p.anchoredEnd = true;
    else if (c === '\\') {
      const next = chars[++i];
      if (next === undefined) unsupported('a trailing \\');
      else if (next === 'n') literal('\n');
      else if (next === 't') literal('\t');
      else if (next === 'r') literal('\r');
      else if (/^[\p{P}\p{S} ]$/u.test(next)) literal(next);
      else unsupported(`\\${next}`);
    } else if (c === '.') {
      const q = chars[i + 1];
      if (q === '*') (p.parts.push({ any: 'many' }), i++);
      else if (q === '+') (p.parts.push({ any: 'one' }, { any: 'many' }), i++);
      else p.parts.push({ any: 'one' });
    } else if ('[](){}|*+?^$'.includes(c)) unsupported(JSON.stringify(c));
    else literal(c);
  }
  return p;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
