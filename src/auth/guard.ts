import { timingSafeEqual } from 'node:crypto';
import { parseCookie } from 'cookie';
import type { Config } from '../config.js';
import { AppError, CREDENTIAL_FAILURE_CODES, CredentialErrors, invalidRequest } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Clock } from '../lib/clock.js';
import { digest } from '../lib/secrets.js';
import type { ApiKeyRow, AppRow } from '../store/apps-repo.js';
import type { Store } from '../store/database.js';
import type { UserTokenRow } from '../store/users-repo.js';
import { CredentialCache, type CredentialCacheOptions } from './credential-cache.js';
import { apiKeyIsLive } from './keys.js';
import { type Scope, scopeAllows } from './scopes.js';
import { compileAllowlist } from '../lib/client-address.js';
import type { RateDecision, RateLimitStore } from './rate-limit.js';
import { csrfTokenFor, type OperatorIdentity } from '../operators/operators-service.js';

/**
 * Who may call a route: `admin` needs the API key; `user` needs a user (a client key + token, or the API key
 * naming the user in IM-CLIENT-ID); `either` takes a user or the API key alone (platform administrator).
 */
export type AuthMode = 'admin' | 'user' | 'either';

/**
 * `admin` is the application's platform administrator: an API key, or a dashboard operator acting on the
 * application its call names (`operator` set; then `apiKeyId` is empty and the operator is unscoped).
 */
export type Actor =
  | { kind: 'admin'; app: AppRow; apiKeyId: string; apiKeyFingerprint: string | null; apiKeyLast4: string; userId: string | undefined; operator?: OperatorIdentity }
  | { kind: 'user'; app: AppRow; userId: string; tokenDigest: string; clientKeyId: string | null; tokenExpiresAt: number | null };

/** What a transport hands over: the request headers (lower-case names) and the caller's IP. */
export interface CredentialInput {
  headers: Record<string, string | string[] | undefined>;
  ip: string;
  /** The HTTP method: a dashboard session must carry its CSRF token on anything but GET and HEAD. */
  method?: string;
}

/** The cookie that carries a dashboard session (docs/dashboard.md). */
export const SESSION_COOKIE = 'imkit_session';
/** The header a dashboard call names its application in. */
export const APP_HEADER = 'x-imkit-app';
/** The header that carries a dashboard session's CSRF token. */
export const CSRF_HEADER = 'x-csrf-token';

/** What the guard needs of the operators' sessions (OperatorsService). */
export interface OperatorSessions {
  session(token: string): Promise<{ operator: OperatorIdentity; expiresAt: number } | undefined>;
}

export interface OperatorAuth {
  operator: OperatorIdentity;
  sessionToken: string;
  expiresAt: number;
}

export interface AuthResult {
  actor: Actor;
  rate: RateDecision;
}

const MINUTE = 60_000;

/** What monitoring learns from the guard (src/monitoring): set by createServer; empty by default. */
export interface GuardObserver {
  /** A request authenticated with an API key; `refused` when the key's rate limit answered 429. */
  apiKeyUsed?(appId: string, keyId: string, address: string, refused: boolean): void;
  /** A 429: the API key's or user token's rate limit, or the failed-credential lockout. */
  refused?(kind: 'api_key' | 'user_token' | 'auth_failures'): void;
  /** A live API key was presented, before its allowlist and rate limit apply (key anomaly alerts). */
  apiKeyPresented?(key: KeyRef, address: string): void;
  /** An API key that opens nothing was presented; `key` names it when it is a revoked or expired key. */
  invalidApiKey?(address: string, key: KeyRef | undefined): void;
}

/** An API key as the audit log and the alerts name it (never its digest). */
export interface KeyRef {
  appId: string;
  keyId: string;
  fingerprint: string | null;
  last4: string;
}

/**
 * The one auth guard, shared by HTTP routes and socket handshakes: headers in, Actor out, or one of the seed
 * documents' errors. Credentials are read through its CredentialCache, from which every committed change drops
 * what it concerns first (also one made by the CLI in another process), so a revocation takes effect on the very
 * next request (on Postgres, once the change's notification has arrived from the database).
 */
export class Guard {
  /** What the guard keeps in memory; `stats` says how often the store was read. */
  readonly credentials: CredentialCache;
  observer: GuardObserver = {};
  /** Dashboard sessions; set by createServer (unset: a session cookie is no credential). */
  operators: OperatorSessions | undefined;

  constructor(
    store: Store,
    bus: EventBus,
    /** Every rate limit of the server: the guard's own, and the socket event budgets the gateway takes from it. */
    readonly rates: RateLimitStore,
    private readonly clock: Clock,
    private readonly config: Pick<Config, 'rateLimitPerMinute' | 'userRateLimitPerMinute' | 'authFailuresPerMinute' | 'legacySocketAuth'>,
    cacheOptions: CredentialCacheOptions = {},
  ) {
    this.credentials = new CredentialCache(store, bus, cacheOptions);
  }

  /** Settles once the cache watches the store for other processes' changes (until then it is bypassed). */
  ready(): Promise<void> {
    return this.credentials.ready();
  }

  close(): Promise<void> {
    return this.credentials.close();
  }

  /** Applies other processes' credential changes to the cache (see `tokenLiveness`). */
  async syncCredentials(): Promise<void> {
    await this.credentials.sync();
  }

  /**
   * `scope`: what the route needs of an API key limited to scopes (RouteDef.scope; undefined: only a key without
   * scopes may call it).
   */
  async authenticate(input: CredentialInput, mode: AuthMode, scope?: Scope): Promise<AuthResult> {
    const now = this.clock.now();
    try {
      await this.credentials.sync();
      return await this.resolve(input, mode, now, scope);
    } catch (err) {
      throw await this.failed(err, input.ip, presentedCredential(input.headers), now);
    }
  }

  /**
   * A dashboard call that concerns no application (the operator's session, the list of applications): a live
   * session cookie, plus the CSRF token when the method changes something. Failures count like any credential's.
   */
  async authenticateOperator(input: CredentialInput): Promise<OperatorAuth> {
    const now = this.clock.now();
    // Not logged in is not a failed guess: the dashboard asks this on every load.
    const token = sessionCookie(input.headers);
    if (token === undefined) throw noSession();
    try {
      const s = await this.operatorSession(token, input);
      return { operator: s.operator, sessionToken: token, expiresAt: s.expiresAt };
    } catch (err) {
      throw await this.failed(err, input.ip, presentedCredential(input.headers), now);
    }
  }

  /** The session behind a cookie value, its CSRF token checked on methods that change something. */
  private async operatorSession(token: string, input: CredentialInput): Promise<{ operator: OperatorIdentity; expiresAt: number }> {
    const s = this.operators ? await this.operators.session(token) : undefined;
    if (!s) throw new AppError('INVALID_SESSION', 'The dashboard session is invalid or has expired; log in again');
    const method = (input.method ?? 'GET').toUpperCase();
    if (method !== 'GET' && method !== 'HEAD') {
      const sent = header(input.headers, CSRF_HEADER);
      const want = csrfTokenFor(token);
      if (sent === undefined || sent.length !== want.length || !timingSafeEqual(Buffer.from(sent), Buffer.from(want))) {
        throw new AppError('CSRF_TOKEN_INVALID', 'The X-CSRF-Token header is missing or wrong (the dashboard sends it with every change)');
      }
    }
    return s;
  }

  /**
   * The web chat opened without a client key (`/chat?token=T`): the client key of the application that holds the
   * token in IM-Authorization, and nothing else. Every call counts against the caller's address
   * (IMKIT_AUTH_FAILURE_LIMIT a minute), and a token no application holds counts as a failed credential.
   */
  async clientKeyForToken(input: CredentialInput, lookup: (tokenDigest: string) => Promise<string | undefined>): Promise<{ clientKey: string }> {
    const now = this.clock.now();
    const d = await this.rates.hit(`chatkey:${input.ip}`, this.config.authFailuresPerMinute, MINUTE, now);
    if (!d.allowed) throw CredentialErrors.rateLimited(d.retryAfter, d);
    const raw = (header(input.headers, 'im-authorization') ?? header(input.headers, 'authorization'))?.replace(/^Bearer\s+/i, '').trim();
    try {
      if (!raw) throw CredentialErrors.invalidToken('A user token is required in the IM-Authorization header');
      const clientKey = await lookup(digest(raw));
      if (!clientKey) throw CredentialErrors.invalidToken('No client key is known for this token; open the chat with &clientKey=');
      return { clientKey };
    } catch (err) {
      throw await this.failed(err, input.ip, raw ? digest(`chat\n${raw}`) : undefined, now);
    }
  }

  /**
   * Legacy socket `auth` carries only a token, no client key and no Origin to bind: it is accepted for the one
   * application IMKIT_LEGACY_SOCKET_AUTH names (refused when unset), looked up by (application, digest) like any
   * token, so another tenant binding the same string changes nothing here. Same failure accounting and rate
   * limits as `authenticate`.
   */
  async authenticateTokenOnly(token: string, ip: string): Promise<AuthResult> {
    const now = this.clock.now();
    const raw = token.replace(/^Bearer\s+/i, '').trim();
    try {
      const appId = this.config.legacySocketAuth;
      if (appId === undefined) throw CredentialErrors.invalidToken('The legacy auth event is disabled on this server; use auth2 with the client key');
      await this.credentials.sync();
      if (!raw) throw CredentialErrors.invalidToken('A user token is required');
      const tokenDigest = digest(raw);
      const app = await this.credentials.app(appId);
      if (!app) throw CredentialErrors.tokenRevoked();
      const row = await this.liveToken(app.id, tokenDigest, undefined, now);
      const rate = await this.count(`tok:${app.id}:${tokenDigest}`, this.config.userRateLimitPerMinute, now);
      return { actor: { kind: 'user', app, userId: row.user_id, tokenDigest, clientKeyId: null, tokenExpiresAt: row.expires_at }, rate };
    } catch (err) {
      throw await this.failed(err, ip, raw ? digest(`legacy\n${raw}`) : undefined, now);
    }
  }

  /**
   * A failed credential check counts against the caller's address and against the credential presented; when
   * either has failed too often within the minute, the answer is 429 instead of the failure. Only failures are
   * ever refused so: a valid credential is checked first and passes, whoever else fails from the same address
   * (an office, a proxy) or with the same key. The address counter is hit first and the credential counter only
   * while the address is not over its limit, so one address cannot fill memory with counters of made-up
   * credentials faster than the limit allows.
   */
  private async failed(err: unknown, ip: string, credential: string | undefined, now: number): Promise<unknown> {
    if (!(err instanceof AppError) || !CREDENTIAL_FAILURE_CODES.has(err.code)) return err;
    const limit = this.config.authFailuresPerMinute;
    const byAddress = await this.rates.hit(`fail:${ip}`, limit, MINUTE, now);
    if (!byAddress.allowed) {
      this.observer.refused?.('auth_failures');
      return CredentialErrors.rateLimited(byAddress.retryAfter, byAddress);
    }
    if (credential !== undefined) {
      const byCredential = await this.rates.hit(`failcred:${credential}`, limit, MINUTE, now);
      if (!byCredential.allowed) {
        this.observer.refused?.('auth_failures');
        return CredentialErrors.rateLimited(byCredential.retryAfter, byCredential);
      }
    }
    return err;
  }

  private async resolve(input: CredentialInput, mode: AuthMode, now: number, scope?: Scope): Promise<AuthResult> {
    const h = (name: string) => header(input.headers, name);
    const apiKey = h('im-api-key') ?? h('api_key');
    const asUser = h('im-client-id');

    if (apiKey !== undefined) {
      const found = await this.credentials.apiKey(digest(apiKey));
      const ref: KeyRef | undefined = found && { appId: found.app.id, keyId: found.key.id, fingerprint: found.key.fingerprint, last4: found.key.last4 };
      // Refusals of a key of an application name it for that application's audit log.
      const refuse = (err: AppError) => Object.assign(err, { keyRef: ref });
      if (!found || !apiKeyIsLive(found.key, now)) {
        this.observer.invalidApiKey?.(input.ip, ref);
        throw found ? refuse(CredentialErrors.invalidApiKey()) : CredentialErrors.invalidApiKey();
      }
      const { key, app } = found;
      const limits = keyLimits(key);
      this.observer.apiKeyPresented?.(ref!, input.ip);
      // A key bound to addresses is refused from any other before it counts for anything.
      if (limits.allowIps && !limits.allowIps(input.ip)) {
        throw refuse(new AppError('IP_NOT_ALLOWED', `This API key may not be used from ${input.ip}: it is limited to the addresses of its allowlist (docs/security.md)`));
      }
      // Counted in memory here, where the key is known; written in batches (src/monitoring/usage.ts).
      const rate = await this.rates.hit(`api:${key.id}`, key.rate_limit_per_minute ?? app.rate_limit_per_minute ?? this.config.rateLimitPerMinute, MINUTE, now);
      this.observer.apiKeyUsed?.(app.id, key.id, input.ip, !rate.allowed);
      if (!rate.allowed) {
        this.observer.refused?.('api_key');
        throw refuse(CredentialErrors.rateLimited(rate.retryAfter, rate));
      }
      // The seed's words: a key limited to scopes calling outside them.
      if (!scopeAllows(limits.scopes, scope)) throw refuse(CredentialErrors.insufficientPermissions());
      if (mode === 'user' && !asUser) {
        throw invalidRequest('IM-CLIENT-ID header is required to call a user route with the API key (it names the user to act as)');
      }
      return { actor: { kind: 'admin', app, apiKeyId: key.id, apiKeyFingerprint: key.fingerprint, apiKeyLast4: key.last4, userId: asUser || undefined }, rate };
    }

    const clientKey = h('im-client-key') ?? h('client_key');
    const session = clientKey === undefined ? sessionCookie(input.headers) : undefined;
    if (session !== undefined) {
      // A dashboard operator: a server-wide administrator acting on the application the call names, as an API key
      // without scopes would (docs/dashboard.md). Never as a user.
      const { operator } = await this.operatorSession(session, input);
      if (mode === 'user') throw CredentialErrors.insufficientPermissions('A dashboard session cannot act as a user; this route needs a user token');
      const appId = h(APP_HEADER);
      if (appId === undefined) throw invalidRequest('The X-IMKIT-APP header names the application a dashboard call acts on');
      const app = await this.credentials.app(appId);
      if (!app) throw new AppError('APP_NOT_FOUND', `No application ${appId}`);
      const rate = await this.rates.hit(`op:${operator.id}`, this.config.rateLimitPerMinute, MINUTE, now);
      if (!rate.allowed) throw CredentialErrors.rateLimited(rate.retryAfter, rate);
      return { actor: { kind: 'admin', app, apiKeyId: '', apiKeyFingerprint: null, apiKeyLast4: '', userId: undefined, operator }, rate };
    }
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
    const row = await this.liveToken(app.id, tokenDigest, undefined, now);
    const rate = await this.count(`tok:${app.id}:${tokenDigest}`, this.config.userRateLimitPerMinute, now);
    if (asUser && asUser !== row.user_id) {
      throw CredentialErrors.insufficientPermissions('IM-CLIENT-ID does not match the user of the token');
    }
    if (mode === 'admin') {
      throw CredentialErrors.insufficientPermissions('A client key and user token cannot perform this operation; it requires the API key');
    }
    return { actor: { kind: 'user', app, userId: row.user_id, tokenDigest, clientKeyId: ck.key.id, tokenExpiresAt: row.expires_at }, rate };
  }

  private async count(key: string, limit: number, now: number): Promise<RateDecision> {
    const d = await this.rates.hit(key, limit, MINUTE, now);
    if (!d.allowed) {
      this.observer.refused?.('user_token');
      throw CredentialErrors.rateLimited(d.retryAfter, d);
    }
    return d;
  }

  /**
   * Domain binding. A browser says with its Origin which site the page runs on; that is what a client key bound to
   * domains must be used from, so when a request carries an Origin, the Origin alone must be one of the
   * application's domains (a matching Host proves nothing about the page that sent the request). Without an
   * Origin (an app, a server) the Host, the server name the caller used, stands in. Either naming another
   * application's domain is refused, also for an application without domains. The most specific entry wins
   * (chat.example.com over *.example.com).
   */
  private async checkDomain(app: AppRow, headers: CredentialInput['headers']): Promise<void> {
    const originHeader = header(headers, 'origin');
    const origin = hostnameOf(originHeader, true);
    const host = hostnameOf(header(headers, 'host'), false);
    const names = [origin, host].filter((n): n is string => n !== undefined);
    const domains = await this.credentials.domainsFor([...new Set(names.flatMap(patternsFor))]);
    const ownerOf = (name: string | undefined) =>
      name === undefined
        ? undefined
        : patternsFor(name)
            .map((p) => domains.ownerOf(p))
            .find((o) => o !== undefined);
    const originOwner = ownerOf(origin);
    const hostOwner = ownerOf(host);
    for (const owner of [originOwner, hostOwner]) if (owner !== undefined && owner !== app.id) throw CredentialErrors.clientKeyMismatch();
    // An Origin that is present but names no site ("null" from a sandboxed frame or a file) cannot match a domain.
    const satisfied = originHeader !== undefined ? originOwner === app.id : hostOwner === app.id;
    if (!satisfied && (await domains.hasDomains(app.id))) throw CredentialErrors.clientKeyMismatch();
  }

  /**
   * Whether the token a socket logged in with is still good, with the texts login gives. Read from the credential
   * cache as it stands (a map lookup), so the gateway can ask on every client event: this process's revocations
   * drop their entries at once; other processes' reach the cache when it is synced (`syncCredentials`: every HTTP
   * request, and the gateway's poll every second). Syncing here, on every event, cost a store read per message on
   * SQLite, whose writer thread changes `data_version` with every batch.
   */
  async tokenLiveness(appId: string, userId: string, tokenDigest: string): Promise<AppError | undefined> {
    try {
      await this.liveToken(appId, tokenDigest, userId, this.clock.now());
      return undefined;
    } catch (err) {
      if (err instanceof AppError) return err;
      throw err;
    }
  }

  /**
   * The one check of a user token: it exists (and, when `userId` is given, still belongs to that user: a token
   * bound to another user since counts as revoked) and has not expired at `now`.
   */
  private async liveToken(appId: string, tokenDigest: string, userId: string | undefined, now: number): Promise<UserTokenRow> {
    const row = await this.credentials.token(appId, tokenDigest);
    if (!row || (userId !== undefined && row.user_id !== userId)) throw CredentialErrors.tokenRevoked();
    if (row.expires_at !== null && row.expires_at <= now) throw CredentialErrors.tokenExpired();
    return row;
  }
}

/**
 * What the failure counter of a credential is keyed by: a digest of the API key, or of the client key and token
 * together (the same token under another client key is another attempt). Undefined when nothing was presented.
 */
function presentedCredential(headers: CredentialInput['headers']): string | undefined {
  const h = (name: string) => header(headers, name);
  const apiKey = h('im-api-key') ?? h('api_key');
  if (apiKey !== undefined) return digest(`api\n${apiKey}`);
  const clientKey = h('im-client-key') ?? h('client_key');
  const token = (h('im-authorization') ?? h('authorization'))?.replace(/^Bearer\s+/i, '').trim();
  const session = clientKey === undefined ? sessionCookie(headers) : undefined;
  if (session !== undefined) return digest(`operator\n${session}`);
  if (clientKey === undefined && !token) return undefined;
  return digest(`user\n${clientKey ?? ''}\n${token ?? ''}`);
}

/** The dashboard session cookie's value, if the request carries one. */
export function sessionCookie(headers: CredentialInput['headers']): string | undefined {
  const raw = header(headers, 'cookie');
  if (raw === undefined || raw.length > 8192) return undefined;
  const value = parseCookie(raw)[SESSION_COOKIE];
  return value ? value : undefined;
}

function noSession(): AppError {
  return new AppError('INVALID_SESSION', 'Log in to the dashboard first (no session cookie)');
}

export function header(headers: CredentialInput['headers'], name: string): string | undefined {
  const v = headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

/** "a.b.example.com" -> ["a.b.example.com", "*.b.example.com", "*.example.com", "*.com"], most specific first. */
export function patternsFor(host: string): string[] {
  const parts = host.split('.');
  const out = [host];
  for (let i = 1; i < parts.length; i++) out.push(`*.${parts.slice(i).join('.')}`);
  return out;
}

export function hostnameOf(value: string | undefined, isOrigin: boolean): string | undefined {
  if (!value || value === 'null') return undefined;
  try {
    const url = new URL(isOrigin ? value : `http://${value}`);
    return url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A key's scopes and address allowlist, parsed once per cached row (the credential cache replaces the row object
 * when the key changes, so a WeakMap keyed by it cannot serve stale limits).
 */
const parsedLimits = new WeakMap<ApiKeyRow, { scopes: string[] | null; allowIps: ((ip: string) => boolean) | null }>();
function keyLimits(key: ApiKeyRow): { scopes: string[] | null; allowIps: ((ip: string) => boolean) | null } {
  let l = parsedLimits.get(key);
  if (!l) {
    l = {
      scopes: key.scopes === null ? null : (JSON.parse(key.scopes) as string[]),
      allowIps: key.allow_ips === null ? null : compileAllowlist(JSON.parse(key.allow_ips) as string[]),
    };
    parsedLimits.set(key, l);
  }
  return l;
}
