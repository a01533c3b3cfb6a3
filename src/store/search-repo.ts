import { type Kysely, type RawBuilder, type SqlBool, sql } from 'kysely';
import type { Dialect } from './database.js';
import type { MessageRow } from './messages-repo.js';
import { ModerationRepo } from './moderation-repo.js';
import type { FileRow } from './files-repo.js';
import type { RoomRow } from './rooms-repo.js';
import type { Database } from './schema.js';

/** Which rooms a search looks in. */
export interface RoomScope {
  /**
   * Only rooms this user is a member of and not banned from at `at`; null = every room of the application (the
   * API key alone).
   */
  userId: string | null;
  /** When bans are checked (ms): a ban in force then hides its room, as it does from the user's room list. */
  at: number;
  /** Only these rooms. */
  roomIds?: string[];
  /** Only rooms carrying every one of these tags. */
  roomTags?: string[];
}

/**
 * A text pattern with the meaning of a SQL LIKE, built from literal text and wildcards, so that user text is
 * always escaped and never read as pattern syntax.
 */
export interface TextPattern {
  parts: Array<{ text: string } | { any: 'one' | 'many' }>;
  anchoredStart: boolean;
  anchoredEnd: boolean;
  caseInsensitive: boolean;
}

/** The pattern "contains this keyword, ignoring case". */
export function containing(keyword: string): TextPattern {
  return { parts: [{ text: keyword }], anchoredStart: false, anchoredEnd: false, caseInsensitive: true };
}

export interface MessageFilter {
  /** The message is a JSON string matching this pattern. */
  text?: TextPattern;
  /** The message is exactly this string. */
  equals?: string;
  senders?: string[];
  types?: string[];
  excludeTypes?: string[];
  /** Leave out the messages this user hid for themself. */
  hiddenFor?: string;
}

export type RoomField = 'name' | 'tag' | 'member' | 'prefTag' | 'prefFolder';

/** Keyword and filter searches over messages and rooms; the only place their SQL lives. */
export class SearchRepo {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: Dialect,
  ) {}

  /** Matching messages, newest first, and how many match in all. */
  async messages(appId: string, scope: RoomScope, f: MessageFilter, limit: number): Promise<{ rows: MessageRow[]; total: number }> {
    let base = this.db.selectFrom('messages').where('messages.app_id', '=', appId).where(this.inScope(appId, scope, sql.ref('messages.room_id')));
    if (f.senders) base = base.where(f.senders.length ? sql<SqlBool>`messages.sender_id in (${sql.join(f.senders)})` : NEVER);
    if (f.types) base = base.where(f.types.length ? sql<SqlBool>`messages.message_type in (${sql.join(f.types)})` : NEVER);
    if (f.excludeTypes?.length) base = base.where(sql<SqlBool>`messages.message_type not in (${sql.join(f.excludeTypes)})`);
    // Messages are stored as JSON text written by JSON.stringify, so a string compares as its JSON form.
    if (f.equals !== undefined) base = base.where('messages.message', '=', JSON.stringify(f.equals));
    if (f.text) base = base.where(this.isString(sql.ref('messages.message'))).where(this.textMatches(this.stringValue(sql.ref('messages.message')), f.text));
    if (f.hiddenFor !== undefined) {
      const userId = f.hiddenFor;
      base = base.where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('user_deleted_messages as h')
              .select('h.message_id')
              .whereRef('h.app_id', '=', 'messages.app_id')
              .whereRef('h.message_id', '=', 'messages.id')
              .where('h.user_id', '=', userId),
          ),
        ),
      );
    }
    const count = await base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const rows = await base.selectAll('messages').orderBy('messages.id', 'desc').limit(limit).execute();
    return { rows, total: Number(count.n) };
  }

  /** Rooms in scope whose field contains the keyword (ignoring case), most recently active first. */
  rooms(appId: string, scope: RoomScope, field: RoomField, keyword: string, limit: number): Promise<RoomRow[]> {
    return this.db
      .selectFrom('rooms')
      .selectAll('rooms')
      .where('rooms.app_id', '=', appId)
      .where(this.inScope(appId, scope, sql.ref('rooms.id')))
      .where(this.roomMatches(scope, field, containing(keyword)))
      .orderBy(sql`coalesce(rooms.last_message_id, '')`, 'desc')
      .orderBy('rooms.id')
      .limit(limit)
      .execute();
  }

  /** Files uploaded to rooms in scope whose name contains the keyword (ignoring case), newest first; thumbnails left out. */
  files(appId: string, scope: RoomScope, keyword: string, limit: number): Promise<FileRow[]> {
    return this.db
      .selectFrom('files')
      .selectAll('files')
      .where('files.app_id', '=', appId)
      .where('files.room_id', 'is not', null)
      .where('files.thumbnail_of', 'is', null)
      .where(this.inScope(appId, scope, sql.ref('files.room_id')))
      .where(this.textMatches(sql.ref('files.filename'), containing(keyword)))
      .orderBy('files.id', 'desc')
      .limit(limit)
      .execute();
  }

  roomsByIds(appId: string, ids: string[]): Promise<RoomRow[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('rooms').selectAll().where('app_id', '=', appId).where('id', 'in', ids).execute();
  }

  // ---------------------------------------------------------------- predicates

  private inScope(appId: string, scope: RoomScope, roomId: RawBuilder<unknown>): RawBuilder<SqlBool> {
    const parts: RawBuilder<SqlBool>[] = [];
    if (scope.userId !== null) {
      const mine = this.db.selectFrom('room_members').select('room_id').where('app_id', '=', appId).where('user_id', '=', scope.userId);
      const banned = new ModerationRepo(this.db).bannedRoomIds(appId, scope.userId, scope.at);
      parts.push(sql<SqlBool>`${roomId} in (${mine})`, sql<SqlBool>`${roomId} not in (${banned})`);
    }
    if (scope.roomIds) parts.push(scope.roomIds.length ? sql<SqlBool>`${roomId} in (${sql.join(scope.roomIds)})` : NEVER);
    for (const tag of scope.roomTags ?? []) {
      const tagged = this.db.selectFrom('room_tags').select('room_id').where('app_id', '=', appId).where('tag', '=', tag);
      parts.push(sql<SqlBool>`${roomId} in (${tagged})`);
    }
    return parts.length ? sql<SqlBool>`(${sql.join(parts, sql` and `)})` : ALWAYS;
  }

  private roomMatches(scope: RoomScope, field: RoomField, p: TextPattern): RawBuilder<SqlBool> {
    switch (field) {
      case 'name':
        return this.textMatches(sql.ref('rooms.name'), p);
      case 'tag':
        return sql<SqlBool>`exists (select 1 from room_tags t where t.app_id = rooms.app_id and t.room_id = rooms.id and ${this.textMatches(sql.ref('t.tag'), p)})`;
      case 'member': {
        // Searching for people: the caller is in all of their own rooms, so they never count as a hit.
        const notMe = scope.userId === null ? ALWAYS : sql<SqlBool>`m.user_id <> ${scope.userId}`;
        return sql<SqlBool>`exists (select 1 from room_members m left join users u on u.app_id = m.app_id and u.id = m.user_id
          where m.app_id = rooms.app_id and m.room_id = rooms.id and ${notMe}
          and (${this.textMatches(sql.ref('m.user_id'), p)} or ${this.textMatches(sql.ref('u.nickname'), p)}))`;
      }
      case 'prefTag':
      case 'prefFolder': {
        if (scope.userId === null) return NEVER;
        const mine = sql<SqlBool>`p.app_id = rooms.app_id and p.room_id = rooms.id and p.user_id = ${scope.userId} and p.scope = ''`;
        if (field === 'prefFolder') {
          const folder = this.dialect === 'sqlite' ? sql`(case when json_type(p.data, '$.folder') = 'text' then json_extract(p.data, '$.folder') end)` : sql`(p.data::json ->> 'folder')`;
          return sql<SqlBool>`exists (select 1 from room_prefs p where ${mine} and ${this.textMatches(folder, p)})`;
        }
        if (this.dialect === 'sqlite') {
          return sql<SqlBool>`exists (select 1 from room_prefs p, json_each(p.data, '$.tags') j where ${mine} and j.type = 'text' and ${this.textMatches(sql.ref('j.value'), p)})`;
        }
        return sql<SqlBool>`exists (select 1 from room_prefs p cross join lateral json_array_elements_text(
            case when json_typeof(p.data::json -> 'tags') = 'array' then p.data::json -> 'tags' else '[]'::json end) as j(v)
          where ${mine} and ${this.textMatches(sql.ref('j.v'), p)})`;
      }
    }
  }

  /** LIKE with an ESCAPE clause (lower() on both sides when ignoring case); SQLite's LIKE ignores ASCII case, so its case-sensitive form is GLOB. */
  private textMatches(value: RawBuilder<unknown>, p: TextPattern): RawBuilder<SqlBool> {
    if (p.caseInsensitive) return sql<SqlBool>`lower(${value}) like lower(${likePattern(p)}) escape ${sql.lit(ESCAPE)}`;
    if (this.dialect === 'sqlite') return sql<SqlBool>`${value} glob ${globPattern(p)}`;
    return sql<SqlBool>`${value} like ${likePattern(p)} escape ${sql.lit(ESCAPE)}`;
  }

  private isString(json: RawBuilder<unknown>): RawBuilder<SqlBool> {
    return this.dialect === 'sqlite' ? sql<SqlBool>`json_type(${json}) = 'text'` : sql<SqlBool>`json_typeof(${json}::json) = 'string'`;
  }

  private stringValue(json: RawBuilder<unknown>): RawBuilder<unknown> {
    return this.dialect === 'sqlite' ? sql`json_extract(${json}, '$')` : sql`(${json}::json #>> '{}')`;
  }
}

const ALWAYS = sql<SqlBool>`1 = 1`;
const NEVER = sql<SqlBool>`1 = 0`;
// Not a backslash, so the SQL text means the same whatever Postgres' standard_conforming_strings says.
const ESCAPE = '!';

export function likePattern(p: TextPattern): string {
  const body = p.parts.map((part) => ('text' in part ? part.text.replace(/[!%_]/g, (c) => ESCAPE + c) : part.any === 'one' ? '_' : '%')).join('');
  return `${p.anchoredStart ? '' : '%'}${body}${p.anchoredEnd ? '' : '%'}`;
}

function globPattern(p: TextPattern): string {
  // GLOB has no escape character: a special character is written as a one-character class.
  const body = p.parts.map((part) => ('text' in part ? part.text.replace(/[*?[]/g, (c) => `[${c}]`) : part.any === 'one' ? '?' : '*')).join('');
  return `${p.anchoredStart ? '' : '*'}${body}${p.anchoredEnd ? '' : '*'}`;
}
