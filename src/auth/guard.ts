import type { Config } from '../config.js';
import { AppError, CREDENTIAL_FAILURE_CODES, CredentialErrors, invalidRequest } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../lib/clock.js';
import { digest } from '../lib/secrets.js';
import type { AppRow } from '../store/apps-repo.js';
import type { Store } from '../store/database.js';
import { UsersRepo } from '../store/users-repo.js';
import { CredentialCache, type CredentialCacheOptions } from './credential-cache.js';
import { apiKeyIsLive } from './keys.js';
import type { RateDecision, RateLimitStore } from './rate-limit.js';

/**
 * Who may call a route: `admin` needs the API key; `user` needs a user (a client key + token, or the API key
 * naming the user in IM-CLIENT-ID); `either` takes a user or the API key alone (platform administrator).
 */
export type AuthMode = 'admin' | 'user' | 'either';

export type Actor =
  | { kind: 'admin'; app: AppRow; apiKeyId: string; userId: string | undefined }
  | { kind: 'user'; app: AppRow; userId: string; tokenDigest: string; clientKeyId: string | null };

/** What a transport hands over: the request headers (lower-case names) and the caller's IP. */
export interface CredentialInput {
  headers: Record<string, string | string[] | undefined>;
  ip: string;
}

export interface AuthResult {
  actor: Actor;
  rate: RateDecision;
}

const MINUTE = 60_000;

/**
 * The one auth guard, shared by HTTP routes and socket handshakes: headers in, Actor out, or one of the seed
 * documents' errors. Credentials are read through its CredentialCache, which every committed change to them
 * empties first (also one made by the CLI in another process), so a revocation takes effect on the very next
 * request (on Postgres, once the change's notification has arrived from the database).
 */
export class Guard {
  /** What the guard keeps in memory; `stats` says how often the store was read. */
  readonly credentials: CredentialCache;
  private readonly users: UsersRepo;

  constructor(
    store: Store,
    bus: EventBus,
    private readonly rates: RateLimitStore,
    private readonly clock: Clock,
    private readonly config: Pick<Config, 'rateLimitPerMinute' | 'userRateLimitPerMinute' | 'authFailuresPerMinute'>,
    cacheOptions: CredentialCacheOptions = {},
  ) {
    this.credentials = new CredentialCache(store, bus, cacheOptions);
    this.users = new UsersRepo(store.db);
  }

  /** Settles once the cache watches the store for other processes' changes (until then it is bypassed). */
  ready(): Promise<void> {
    return this.credentials.ready();
  }

  close(): Promise<void> {
    return this.credentials.close();
  }

  async authenticate(input: CredentialInput, mode: AuthMode): Promise<AuthResult> {
    const now = this.clock.now();
    const failKey = `fail:${input.ip}`;
    const lockout = await this.rates.peek(failKey, this.config.authFailuresPerMinute, MINUTE, now);
    if (!lockout.allowed) throw CredentialErrors.rateLimited(lockout.retryAfter, lockout);
    try {
      await this.credentials.sync();
      return await this.resolve(input, mode, now);
    } catch (err) {
      if (err instanceof AppError && CREDENTIAL_FAILURE_CODES.has(err.code)) {
        await this.rates.hit(failKey, this.config.authFailuresPerMinute, MINUTE, now);
      }
      throw err;
    }
  }

  /**
   * Legacy socket `auth` carries only a token, no client key: the token alone names its application when it is
   * unique across applications. Same failure accounting and rate limits as `authenticate`.
   */
  async authenticateTokenOnly(token: string, ip: string): Promise<AuthResult> {
    const now = this.clock.now();
    const failKey = `fail:${ip}`;
    const lockout = await this.rates.peek(failKey, this.config.authFailuresPerMinute, MINUTE, now);
    if (!lockout.allowed) throw CredentialErrors.rateLimited(lockout.retryAfter, lockout);
    try {
      await this.credentials.sync();
      const tokenDigest = digest(token.replace(/^Bearer\s+/i, '').trim());
      // Not cached: this legacy path runs once per socket, and "unique across applications" is no single row.
      const rows = await this.users.findTokensAnyApp(tokenDigest);
      const row = rows.length === 1 ? rows[0]! : undefined;
      if (!row) throw CredentialErrors.invalidToken('The provided user token is invalid or has been revoked');
      if (row.expires_at !== null && row.expires_at <= now) throw CredentialErrors.invalidToken('The provided user token has expired');
      const app = await this.credentials.app(row.app_id);
      if (!app) throw CredentialErrors.invalidToken('The provided user token is invalid or has been revoked');
      const rate = await this.count(`tok:${app.id}:${tokenDigest}`, this.config.userRateLimitPerMinute, now);
      return { actor: { kind: 'user', app, userId: row.user_id, tokenDigest, clientKeyId: null }, rate };
    } catch (err) {
      if (err instanceof AppError && CREDENTIAL_FAILURE_CODES.has(err.code)) await this.rates.hit(failKey, this.config.authFailuresPerMinute, MINUTE, now);
      throw err;
    }
  }

  private async resolve(input: CredentialInput, mode: AuthMode, now: number): Promise<AuthResult> {
    const h = (name: string) => header(input.headers, name);
    const apiKey = h('im-api-key') ?? h('api_key');
    const asUser = h('im-client-id');

    if (apiKey !== undefined) {
      const found = await this.credentials.apiKey(digest(apiKey));
      if (!found || !apiKeyIsLive(found.key, now)) throw CredentialErrors.invalidApiKey();
      const { key, app } = found;
      const rate = await this.count(`api:${key.id}`, app.rate_limit_per_minute ?? this.config.rateLimitPerMinute, now);
      if (mode === 'user' && !asUser) {
        throw invalidRequest('IM-CLIENT-ID header is required to call a user route with the API key (it names the user to act as)');
      }
      return { actor: { kind: 'admin', app, apiKeyId: key.id, userId: asUser || undefined }, rate };
    }

    const clientKey = h('im-client-key') ?? h('client_key');
    if (clientKey === undefined) {
      throw mode === 'admin' ? CredentialErrors.missingApiKey() : CredentialErrors.missingClientKey();
    }
    const ck = await this.credentials.clientKey(digest(clientKey));
    if (!ck || ck.key.revoked_at !== null) throw CredentialErrors.invalidClientKey();
    const app = ck.app;
    await this.checkDomain(app, input.headers);

    const rawToken = h('im-authorization') ?? h('authorization');
    const token = rawToken?.replace(/^Bearer\s+/i, '').trim();
    if (!token) throw CredentialErrors.invalidToken('A user token is required in the IM-Authorization header');
    const tokenDigest = digest(token);
    const row = await this.credentials.token(app.id, tokenDigest);
    if (!row) throw CredentialErrors.invalidToken('The provided user token is invalid or has been revoked');
    if (row.expires_at !== null && row.expires_at <= now) throw CredentialErrors.invalidToken('The provided user token has expired');
    const rate = await this.count(`tok:${app.id}:${tokenDigest}`, this.config.userRateLimitPerMinute, now);
    if (asUser && asUser !== row.user_id) {
      throw CredentialErrors.insufficientPermissions('IM-CLIENT-ID does not match the user of the token');
    }
    if (mode === 'admin') {
      throw CredentialErrors.insufficientPermissions('A client key and user token cannot perform this operation; it requires the API key');
    }
    return { actor: { kind: 'user', app, userId: row.user_id, tokenDigest, clientKeyId: ck.key.id }, rate };
  }

  private async count(key: string, limit: number, now: number): Promise<RateDecision> {
    const d = await this.rates.hit(key, limit, MINUTE, now);
    if (!d.allowed) throw CredentialErrors.rateLimited(d.retryAfter, d);
    return d;
  }

  /**
   * Domain binding. The Host says which server name the caller used, a browser's Origin which site it runs
   * on. If either belongs to another application the key is refused; if this application lists domains,
   * the Host or the Origin must be one of them. The most specific entry wins (chat.example.com over
   * *.example.com).
   */
  private async checkDomain(app: AppRow, headers: CredentialInput['headers']): Promise<void> {
    const names = [hostnameOf(header(headers, 'origin'), true), hostnameOf(header(headers, 'host'), false)].filter(
      (n): n is string => n !== undefined,
    );
    const domains = await this.credentials.domainsFor([...new Set(names.flatMap(patternsFor))]);
    let ownMatch = false;
    for (const name of names) {
      const owner = patternsFor(name)
        .map((p) => domains.ownerOf(p))
        .find((o) => o !== undefined);
      if (owner === undefined) continue;
      if (owner !== app.id) throw CredentialErrors.clientKeyMismatch();
      ownMatch = true;
    }
    if (!ownMatch && (await domains.hasDomains(app.id))) throw CredentialErrors.clientKeyMismatch();
  }

  /**
   * Whether the token a socket logged in with is still good, with the texts login gives; on success, when it
   * expires. Read through the credential cache (a map lookup while nothing changed), so the gateway can ask
   * on every client event. A token now bound to another user counts as revoked.
   */
  async tokenLiveness(appId: string, userId: string, tokenDigest: string): Promise<{ ok: true; expiresAt: number | null } | { ok: false; error: AppError }> {
    const syncing = this.credentials.sync();
    if (syncing) await syncing;
    const row = await this.credentials.token(appId, tokenDigest);
    if (!row || row.user_id !== userId) return { ok: false, error: CredentialErrors.invalidToken('The provided user token is invalid or has been revoked') };
    if (row.expires_at !== null && row.expires_at <= this.clock.now()) return { ok: false, error: CredentialErrors.invalidToken('The provided user token has expired') };
    return { ok: true, expiresAt: row.expires_at };
  }
}

export function header(headers: CredentialInput['headers'], name: string): string | undefined {
  const v = headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

/** "a.b.example.com" -> ["a.b.example.com", "*.b.example.com", "*.example.com", "*.com"], most specific first. */
function patternsFor(host: string): string[] {
  const parts = host.split('.');
  const out = [host];
  for (let i = 1; i < parts.length; i++) out.push(`*.${parts.slice(i).join('.')}`);
  return out;
}

function hostnameOf(value: string | undefined, isOrigin: boolean): string | undefined {
  if (!value || value === 'null') return undefined;
  try {
    const url = new URL(isOrigin ? value : `http://${value}`);
    return url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}
