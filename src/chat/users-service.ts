import { withCustom } from '../lib/objects.js';
import type { Kysely } from 'kysely';
import type { Outbox, WebhookFact } from '../webhooks/outbox.js';
import type { Actor } from '../auth/guard.js';
import { newUserToken } from '../auth/keys.js';
import { AppError, invalidRequest } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import { iso } from '../lib/clock.js';
import { digest, last4 } from '../lib/secrets.js';
import type { AppRow } from '../store/apps-repo.js';
import { isUniqueViolation } from '../store/database.js';
import type { Dialect } from '../store/database.js';
import type { EventBus } from '../events/bus.js';
import { PrefsRepo } from '../store/prefs-repo.js';
import type { Database } from '../store/schema.js';
import { UsersRepo, type UserRow } from '../store/users-repo.js';
import { compileUserQuery } from '../store/user-query.js';

/** Profile fields with columns of their own; everything else a caller sends is kept as a custom field. */
export interface ProfileInput {
  nickname?: string;
  avatarUrl?: string;
  description?: string;
  isRobot?: boolean;
  custom: Record<string, unknown>;
}

export interface UpsertInput extends ProfileInput {
  id: string;
  issueAccessToken?: boolean;
  token?: string;
  expirationDate?: string | number;
}

/** Wire names that are computed or belong to the credential, never stored as custom fields. */
const RESERVED = new Set([
  '_id', 'id', 'appID', '__v', 'nickname', 'avatarUrl', 'description', 'isRobot', 'mute', 'address', 'userAgent',
  'lastLoginTime', 'lastLoginTimeMS', 'createdAt', 'createdAtMS', 'updatedAt', 'updatedAtMS', 'token',
  'issueAccessToken', 'expirationDate', 'notificationEnabled', 'isSocketConnected', '__proto__', 'constructor', 'prototype',
]);
const MAX_CUSTOM_BYTES = 16 * 1024;
export const MAX_USERS_PER_PAGE = 100;
export const MAX_BATCH_USERS = 1000;
/** Shortest custom token a backend may bind: a short one could be guessed by trying. */
export const MIN_CUSTOM_TOKEN_LENGTH = 16;
/** How old the stored login time may get before GET /me writes it again (see `me`). */
const LOGIN_REFRESH_MS = 60_000;

/** Users and their tokens. Knows nothing of HTTP; every method is scoped to one application. */
export class UsersService {
  private readonly repo: UsersRepo;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: Dialect,
    private readonly clock: Clock,
    private readonly tokenTtlMs: number,
    private readonly bus?: EventBus,
    /** Where user.created / user.deleted webhook events are written (absent: nobody is told). */
    private readonly outbox?: Outbox,
  ) {
    this.repo = new UsersRepo(db);
  }

  /** Splits a request body into profile fields and custom fields. */
  static profileFrom(body: Record<string, unknown>): ProfileInput {
    const custom: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(body)) if (!RESERVED.has(k)) custom[k] = v;
    return {
      nickname: body.nickname as string | undefined,
      avatarUrl: body.avatarUrl as string | undefined,
      description: body.description as string | undefined,
      isRobot: body.isRobot as boolean | undefined,
      custom,
    };
  }

  /**
   * POST /admin/clients: create or update (omitted fields are kept), and optionally issue a server token
   * (replacing the user's previous issued token) or bind a custom one (replacing the previous custom token).
   */
  async upsert(app: AppRow, input: UpsertInput): Promise<Record<string, unknown>> {
    const now = this.clock.now();
    const expiresAt = this.expiryFrom(input.expirationDate, now, input.issueAccessToken === true);
    if (input.issueAccessToken !== true && input.expirationDate !== undefined && input.token === undefined) {
      throw invalidRequest('Missing required field: token (expirationDate applies to a token)');
    }
    const issued = input.issueAccessToken === true ? await newUserToken(app, input.id, now, expiresAt!) : undefined;
    let replacedDigests: string[] = [];
    const run = () =>
      this.db.transaction().execute(async (trx) => {
        const repo = new UsersRepo(trx);
        const created: WebhookFact[] = [];
        const row = await this.write(repo, app.id, input.id, input, now, created);
        replacedDigests = (await repo.tokensOf(app.id, input.id, issued ? 'issued' : 'custom')).map((t) => t.digest).filter((d) => d !== (input.token !== undefined ? digest(input.token) : ''));
        if (issued) {
          await repo.deleteTokens(app.id, input.id, { kind: 'issued' });
          await repo.insertToken({ app_id: app.id, digest: digest(issued), user_id: input.id, kind: 'issued', last4: last4(issued), created_at: now, expires_at: expiresAt });
        } else if (input.token !== undefined) {
          await this.bindCustom(repo, app.id, input.id, input.token, expiresAt, now);
        }
        await this.outbox?.record(trx, created, now);
        return row;
      });
    const row = await retryOnceOnConflict(run);
    this.profilesWritten(app.id, [input.id]);
    if (issued || input.token !== undefined) this.tokensWritten(app.id, input.id, replacedDigests, issued ? undefined : input.token);
    const out = renderUser(row);
    if (issued) Object.assign(out, { token: issued, expirationDate: iso(expiresAt!) });
    else if (input.token !== undefined) Object.assign(out, { token: input.token, expirationDate: expiresAt === null ? null : iso(expiresAt) });
    return out;
  }

  /** POST /admin/clients/list: upsert many profiles in one transaction; never issues tokens. */
  async upsertMany(app: AppRow, items: Array<{ id: string } & ProfileInput>): Promise<{ count: number }> {
    if (items.length > MAX_BATCH_USERS) throw invalidRequest(`data may hold at most ${MAX_BATCH_USERS} users per call`);
    const now = this.clock.now();
    await retryOnceOnConflict(() =>
      this.db.transaction().execute(async (trx) => {
        const repo = new UsersRepo(trx);
        const created: WebhookFact[] = [];
        for (const item of items) await this.write(repo, app.id, item.id, item, now, created);
        await this.outbox?.record(trx, created, now);
      }),
    );
    this.profilesWritten(app.id, items.map((i) => i.id));
    return { count: items.length };
  }

  async list(app: AppRow, q: string | undefined, limit: number, skip: number): Promise<{ totalCount: number; data: Record<string, unknown>[] }> {
    if (limit > MAX_USERS_PER_PAGE) {
      throw new AppError('RESULT_TOO_LARGE', `limit may be at most ${MAX_USERS_PER_PAGE}; use a more specific query or a smaller limit`);
    }
    let filter;
    if (q !== undefined && q !== '') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(q);
      } catch {
        throw new AppError('INVALID_QUERY', 'q must be a JSON object (a MongoDB-style filter)');
      }
      filter = compileUserQuery(parsed, this.dialect);
    }
    const { rows, total } = await this.repo.list(app.id, filter, limit, skip);
    return { totalCount: total, data: rows.map((r) => renderUser(r)) };
  }

  /** The user an actor acts as; the API key names it with IM-CLIENT-ID. */
  async me(actor: Actor, connection?: { ip: string; userAgent: string | undefined }): Promise<Record<string, unknown>> {
    const userId = actingUser(actor);
    const row = await this.repo.get(actor.app.id, userId);
    if (!row) throw new AppError('USER_NOT_FOUND', `User ${userId} does not exist`);
    if (actor.kind === 'user' && connection) {
      // The SDKs call GET /me right after logging in, so this is the login the IMKIT pages report. Clients also
      // call it again and again (every socket login does), and each write of the users row empties the sender
      // caches for that user: so the row is written only when the address or user agent changed, or when the
      // stored login time is more than a minute old. The login time shown may thus lag by up to a minute.
      const now = this.clock.now();
      const patch = { last_login_at: now, address: JSON.stringify(addressOf(connection.ip)), user_agent: connection.userAgent ?? null };
      const stale = row.last_login_at === null || now - row.last_login_at >= LOGIN_REFRESH_MS;
      if (stale || row.address !== patch.address || row.user_agent !== patch.user_agent) {
        await this.repo.update(actor.app.id, userId, patch);
        this.profilesWritten(actor.app.id, [userId]);
        Object.assign(row, patch);
      }
    }
    const mute = await new PrefsRepo(this.db).mutedRooms(actor.app.id, userId);
    return { ...renderUser(row, mute), notificationEnabled: true };
  }

  /** POST /me: a user changes their own profile (not isRobot, not tokens). */
  async updateMe(actor: Actor, input: ProfileInput): Promise<Record<string, unknown>> {
    const userId = actingUser(actor);
    const now = this.clock.now();
    const row = await this.db.transaction().execute(async (trx) => {
      const repo = new UsersRepo(trx);
      if (!(await repo.get(actor.app.id, userId))) throw new AppError('USER_NOT_FOUND', `User ${userId} does not exist`);
      return this.write(repo, actor.app.id, userId, { ...input, isRobot: undefined }, now);
    });
    this.profilesWritten(actor.app.id, [userId]);
    return renderUser(row, await new PrefsRepo(this.db).mutedRooms(actor.app.id, userId));
  }

  /** PUT /admin/clients/:id/token: replaces the user's custom token. */
  async replaceToken(app: AppRow, userId: string, token: string, expirationDate: string | number | undefined): Promise<Record<string, unknown>> {
    const now = this.clock.now();
    const expiresAt = this.expiryFrom(expirationDate, now, false);
    let replaced: string[] = [];
    const row = await this.db.transaction().execute(async (trx) => {
      const repo = new UsersRepo(trx);
      const user = await repo.get(app.id, userId);
      if (!user) throw new AppError('CLIENT_NOT_FOUND', `Client ${userId} does not exist`);
      replaced = (await repo.tokensOf(app.id, userId, 'custom')).map((t) => t.digest).filter((d) => d !== digest(token));
      await this.bindCustom(repo, app.id, userId, token, expiresAt, now);
      await repo.update(app.id, userId, { updated_at: now });
      return { ...user, updated_at: now };
    });
    this.profilesWritten(app.id, [userId]);
    this.tokensWritten(app.id, userId, replaced, token);
    return {
      _id: row.id,
      id: row.id,
      nickname: row.nickname ?? undefined,
      avatarUrl: row.avatar_url ?? undefined,
      issueAccessToken: false,
      token,
      expirationDate: expiresAt === null ? null : iso(expiresAt),
      updatedAt: iso(now),
      updatedAtMS: now,
    };
  }

  /** DELETE /admin/clients/:id/token: revokes one token, or every token of the user. */
  async revokeTokens(app: AppRow, userId: string, token: string | undefined): Promise<{ success: true; message: string; revokedTokens: number }> {
    const result = await this.db.transaction().execute(async (trx) => {
      const repo = new UsersRepo(trx);
      if (!(await repo.get(app.id, userId))) throw new AppError('CLIENT_NOT_FOUND', `Client ${userId} does not exist`);
      if (token !== undefined) {
        const n = await repo.deleteTokens(app.id, userId, { digest: digest(token) });
        if (n === 0) throw new AppError('TOKEN_NOT_FOUND', 'That token is not a token of this client');
        return { success: true as const, message: 'Token revoked successfully', revokedTokens: n };
      }
      const n = await repo.deleteTokens(app.id, userId);
      return { success: true as const, message: 'All tokens revoked successfully', revokedTokens: n };
    });
    this.revoked(app.id, userId, token === undefined ? 'all' : [digest(token)]);
    return result;
  }

  /** DELETE /admin/clients/:id: the user and every token of theirs. */
  async delete(app: AppRow, userId: string): Promise<{ _id: string; deleted: true }> {
    await this.db.transaction().execute(async (trx) => {
      const repo = new UsersRepo(trx);
      await repo.deleteTokens(app.id, userId);
      if (!(await repo.delete(app.id, userId))) throw new AppError('CLIENT_NOT_FOUND', `Client ${userId} does not exist`);
      await this.outbox?.record(trx, [{ type: 'user.deleted', appId: app.id, roomId: null, facts: { userId } }], this.clock.now());
    });
    this.profilesWritten(app.id, [userId]);
    this.revoked(app.id, userId, 'all');
    return { _id: userId, deleted: true };
  }

  /** After a committed write of users rows: what was cached of them (chat/user-cache.ts) is dropped. */
  private profilesWritten(appId: string, userIds: string[]): void {
    this.bus?.emit({ type: 'user.changed', appId, userIds });
  }

  private revoked(appId: string, userId: string, tokenDigests: string[] | 'all'): void {
    if (tokenDigests !== 'all' && tokenDigests.length === 0) return;
    this.bus?.emit({ type: 'credentials.revoked', appId, userId, tokenDigests });
  }

  /**
   * After a committed token write: the replaced tokens are revoked; a custom token bound again may have a new
   * expiry, so it is announced by digest (a new token needs no announcement: nothing can have cached it).
   */
  private tokensWritten(appId: string, userId: string, replaced: string[], rebound: string | undefined): void {
    if (replaced.length > 0) this.revoked(appId, userId, replaced);
    if (rebound !== undefined) this.bus?.emit({ type: 'credentials.changed', appId, tokenDigests: [digest(rebound)] });
  }

  /** Creates or updates a profile; a creation adds its `user.created` webhook fact to `created`. */
  private async write(repo: UsersRepo, appId: string, id: string, input: ProfileInput, now: number, created?: WebhookFact[]): Promise<UserRow> {
    const existing = await repo.get(appId, id);
    const custom = { ...(existing ? (JSON.parse(existing.extra) as Record<string, unknown>) : {}), ...input.custom };
    for (const [k, v] of Object.entries(custom)) if (v === null) delete custom[k];
    const extra = JSON.stringify(custom);
    if (Buffer.byteLength(extra) > MAX_CUSTOM_BYTES) throw invalidRequest(`custom fields may hold at most ${MAX_CUSTOM_BYTES} bytes of JSON`);
    const row: UserRow = {
      app_id: appId,
      id,
      nickname: input.nickname ?? existing?.nickname ?? null,
      avatar_url: input.avatarUrl ?? existing?.avatar_url ?? null,
      description: input.description ?? existing?.description ?? null,
      is_robot: input.isRobot === undefined ? (existing?.is_robot ?? 0) : input.isRobot ? 1 : 0,
      extra,
      address: existing?.address ?? null,
      user_agent: existing?.user_agent ?? null,
      last_login_at: existing?.last_login_at ?? null,
      created_at: existing?.created_at ?? now,
      updated_at: now,
    };
    if (existing) {
      const { app_id: _a, id: _i, created_at: _c, ...patch } = row;
      await repo.update(appId, id, patch);
    } else {
      await repo.insert(row);
      created?.push({ type: 'user.created', appId, roomId: null, facts: { userId: id } });
    }
    return row;
  }

  private async bindCustom(repo: UsersRepo, appId: string, userId: string, token: string, expiresAt: number | null, now: number): Promise<void> {
    if (token.length < MIN_CUSTOM_TOKEN_LENGTH) throw invalidRequest(`Invalid field token: must be at least ${MIN_CUSTOM_TOKEN_LENGTH} characters`);
    const d = digest(token);
    const existing = await repo.findToken(appId, d);
    if (existing && existing.user_id !== userId) throw new AppError('TOKEN_CONFLICT', 'This token is already bound to another client');
    if (existing) {
      await repo.updateTokenExpiry(appId, d, expiresAt);
      return;
    }
    await repo.deleteTokens(appId, userId, { kind: 'custom' });
    await repo.insertToken({ app_id: appId, digest: d, user_id: userId, kind: 'custom', last4: last4(token), created_at: now, expires_at: expiresAt });
  }

  /** ISO-8601 or epoch ms; must lie in the future. Issued tokens default to the configured lifetime. */
  private expiryFrom(value: string | number | undefined, now: number, issuing: boolean): number | null {
    if (value === undefined) return issuing ? now + this.tokenTtlMs : null;
    const ms = typeof value === 'number' ? value : /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
    if (!Number.isFinite(ms)) throw invalidRequest('Invalid expirationDate format (use ISO-8601, e.g. 2026-01-01T00:00:00Z)');
    if (ms <= now) throw invalidRequest('expirationDate must be in the future');
    return ms;
  }
}

export function actingUser(actor: Actor): string {
  if (actor.kind === 'user') return actor.userId;
  if (!actor.userId) throw invalidRequest('IM-CLIENT-ID header is required to act as a user with the API key');
  return actor.userId;
}

/**
 * The Client object of the IMKIT pages: `_id` and `id`, ISO times with `...MS` twins, custom fields inline;
 * `mute` lists the rooms the user muted (callers that did not load them show []).
 */
export function renderUser(row: UserRow, mute: string[] = []): Record<string, unknown> {
  const custom = JSON.parse(row.extra) as Record<string, unknown>;
  const out: Record<string, unknown> = { _id: row.id, id: row.id, appID: row.app_id, __v: 0 };
  if (row.nickname !== null) out.nickname = row.nickname;
  if (row.avatar_url !== null) out.avatarUrl = row.avatar_url;
  if (row.description !== null) out.description = row.description;
  out.isRobot = row.is_robot === 1;
  out.mute = mute;
  if (row.address !== null) out.address = JSON.parse(row.address);
  if (row.user_agent !== null) out.userAgent = row.user_agent;
  if (row.last_login_at !== null) out.lastLoginTime = iso(row.last_login_at);
  out.lastLoginTimeMS = row.last_login_at ?? 0;
  out.createdAt = iso(row.created_at);
  out.createdAtMS = row.created_at;
  out.updatedAt = iso(row.updated_at);
  out.updatedAtMS = row.updated_at;
  return withCustom(out, custom);
}

function addressOf(ip: string): { address: string; family: string } {
  return { address: ip, family: ip.includes(':') ? 'IPv6' : 'IPv4' };
}

async function retryOnceOnConflict<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    // Two first writes of the same new user raced; the loser runs again and now updates.
    if (isUniqueViolation(err)) return run();
    throw err;
  }
}
