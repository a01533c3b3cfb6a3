import type { EventBus } from '../events/bus.js';
import { AppsRepo, type ApiKeyRow, type AppRow, type ClientKeyRow } from '../store/apps-repo.js';
import type { Store } from '../store/database.js';
import type { CredentialChange, ExternalWrites } from '../store/external-writes.js';
import { UsersRepo, type UserTokenRow } from '../store/users-repo.js';

export interface KeyOfApp<K> {
  key: K;
  app: AppRow;
}

/** Who lists a domain, as the domain binding check needs it. */
export interface DomainView {
  /** The application listing this exact entry (`chat.example.com` or `*.example.com`), if any. */
  ownerOf(pattern: string): string | undefined;
  /** Whether the application lists any domain. */
  hasDomains(appId: string): boolean | Promise<boolean>;
}

export interface CredentialCacheStats {
  /** Lookups answered from memory. */
  hits: number;
  /** Lookups answered by the store: misses, and every lookup while the cache is bypassed. */
  storeReads: number;
  /** Times everything held was dropped. */
  flushes: number;
  /** Changes that dropped only the entries they concern (a token, a key, one application's entries). */
  drops: number;
}

export interface CredentialCacheOptions {
  /** User tokens kept at most (the oldest entry goes first). */
  maxTokens?: number;
  /** API keys, client keys and applications kept at most, each. */
  maxKeys?: number;
  /** Told when changes by other processes stop or start being noticed (then the cache is bypassed or used again). */
  onWatchStatus?: (reliable: boolean, err?: unknown) => void;
}

/**
 * What the auth guard reads on every request, kept in memory: API keys and client keys (with their application)
 * by digest, user tokens by (application, digest), applications by id, and the whole domain table. Only rows that
 * exist are kept: a credential that is not found is looked up again next time (a forged one keeps failing, one
 * created a moment later works). Rows are kept as stored; expiry and revocation times are compared with the clock
 * by the guard on every request.
 *
 * A change drops what it concerns, and only that: a revoked or changed token its (application, digest) entry, a
 * changed key its entry, a deleted user that user's tokens, a changed application everything of that application,
 * a changed domain the domain table. A new token, key or application drops nothing (nothing held can be stale). A
 * change made by this process arrives through the bus events its services emit after committing; one made by
 * another process through the store (`Store.watchExternalWrites`: a trigger-kept change log read when PRAGMA
 * data_version moved on SQLite, LISTEN/NOTIFY with the changed row on Postgres). When the store cannot say what
 * changed (a gap in watching, a reader too far behind) everything is dropped; while it cannot say at all (the
 * Postgres LISTEN connection is down) every lookup reads the store. A read that began before any drop does not
 * store its result: each drop raises a generation number that the read compares before storing.
 *
 * One per guard, so several servers in one process do not share it.
 */
export class CredentialCache {
  readonly stats: CredentialCacheStats = { hits: 0, storeReads: 0, flushes: 0, drops: 0 };
  private generation = 0;
  private readonly apiKeys: BoundedMap<KeyOfApp<ApiKeyRow>>;
  private readonly clientKeys: BoundedMap<KeyOfApp<ClientKeyRow>>;
  private readonly tokens: TokenMap;
  private readonly apps: BoundedMap<AppRow>;
  private domains: DomainSnapshot | undefined;
  private domainsLoading: { generation: number; promise: Promise<DomainSnapshot> } | undefined;
  private readonly appsRepo: AppsRepo;
  private readonly usersRepo: UsersRepo;
  private readonly external: ExternalWrites;
  private readonly off: () => void;

  constructor(store: Store, bus: EventBus, options: CredentialCacheOptions = {}) {
    const maxKeys = options.maxKeys ?? 10_000;
    this.apiKeys = new BoundedMap(maxKeys);
    this.clientKeys = new BoundedMap(maxKeys);
    this.apps = new BoundedMap(maxKeys);
    this.tokens = new TokenMap(options.maxTokens ?? 100_000);
    this.appsRepo = new AppsRepo(store.db);
    this.usersRepo = new UsersRepo(store.db);
    this.external = store.watchExternalWrites({
      onChange: (changes) => (changes === undefined ? this.flush() : changes.forEach((c) => this.drop(c))),
      onStatus: options.onWatchStatus,
    });
    this.off = bus.on((e) => {
      if (e.type === 'credentials.revoked') {
        if (e.tokenDigests === 'all') this.drop({ kind: 'user', appId: e.appId, ref: e.userId });
        else for (const d of e.tokenDigests) this.drop({ kind: 'token', appId: e.appId, ref: d });
      } else if (e.type === 'credentials.changed') {
        // Token writes name the tokens that may be cached (none for a new token); anything else concerns the application.
        if (e.tokenDigests) for (const d of e.tokenDigests) this.drop({ kind: 'token', appId: e.appId, ref: d });
        else this.drop({ kind: 'app', appId: e.appId, ref: null });
      }
    });
  }

  /** Settles once watching the store for other processes' changes has started (or failed and retries). */
  ready(): Promise<void> {
    return this.external.started;
  }

  async close(): Promise<void> {
    this.off();
    await this.external.close();
    this.flush();
  }

  /**
   * Applies the changes other processes committed until now; call it before the lookups of each authentication.
   * Usually synchronous (undefined); a promise when it has to wait for the store.
   */
  sync(): Promise<void> | undefined {
    return this.external.check();
  }

  apiKey(digest: string): Promise<KeyOfApp<ApiKeyRow> | undefined> {
    return this.lookup(this.apiKeys, digest, async () => {
      const key = await this.appsRepo.findApiKeyByDigest(digest);
      const app = key && (await this.appsRepo.getApp(key.app_id));
      return key && app ? { key, app } : undefined;
    });
  }

  clientKey(digest: string): Promise<KeyOfApp<ClientKeyRow> | undefined> {
    return this.lookup(this.clientKeys, digest, async () => {
      const key = await this.appsRepo.findClientKeyByDigest(digest);
      const app = key && (await this.appsRepo.getApp(key.app_id));
      return key && app ? { key, app } : undefined;
    });
  }

  token(appId: string, digest: string): Promise<UserTokenRow | undefined> {
    return this.lookup(this.tokens, TokenMap.key(appId, digest), () => this.usersRepo.findToken(appId, digest));
  }

  app(appId: string): Promise<AppRow | undefined> {
    return this.lookup(this.apps, appId, () => this.appsRepo.getApp(appId));
  }

  /** The domain table for the given entries (the host and origin patterns of one request). */
  async domainsFor(patterns: string[]): Promise<DomainView> {
    if (this.external.reliable) return this.domainSnapshot();
    // Bypassed: the two small queries the guard always made.
    let owners = new Map<string, string>();
    if (patterns.length > 0) {
      this.stats.storeReads++;
      owners = new Map((await this.appsRepo.ownersOfDomains(patterns)).map((r) => [r.domain, r.app_id]));
    }
    return {
      ownerOf: (p) => owners.get(p),
      hasDomains: (appId) => {
        this.stats.storeReads++;
        return this.appsRepo.hasDomains(appId);
      },
    };
  }

  /** Drops what one change concerns. */
  private drop(change: CredentialChange): void {
    this.generation++;
    this.stats.drops++;
    const { appId, ref } = change;
    switch (change.kind) {
      case 'token':
        if (ref !== null) this.tokens.delete(TokenMap.key(appId, ref));
        break;
      case 'user':
        if (ref !== null) this.tokens.deleteWhere(appId, (row) => row.user_id === ref);
        break;
      case 'api_key':
        if (ref !== null) this.apiKeys.delete(ref);
        break;
      case 'client_key':
        if (ref !== null) this.clientKeys.delete(ref);
        break;
      case 'domains':
        this.dropDomains();
        break;
      default:
        this.apiKeys.deleteWhere((v) => v.app.id === appId);
        this.clientKeys.deleteWhere((v) => v.app.id === appId);
        this.tokens.deleteWhere(appId, () => true);
        this.apps.delete(appId);
        this.dropDomains();
    }
  }

  private dropDomains(): void {
    this.domains = undefined;
    this.domainsLoading = undefined;
  }

  private flush(): void {
    this.generation++;
    this.stats.flushes++;
    this.apiKeys.clear();
    this.clientKeys.clear();
    this.tokens.clear();
    this.apps.clear();
    this.dropDomains();
  }

  private async lookup<V extends object>(map: Pick<BoundedMap<V>, 'get' | 'set'>, key: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    if (this.external.reliable) {
      const hit = map.get(key);
      if (hit !== undefined) {
        this.stats.hits++;
        return hit;
      }
    }
    const generation = this.generation;
    this.stats.storeReads++;
    const value = await load();
    // Found rows only, and only when nothing was dropped while the store was read (that change may concern them).
    if (value !== undefined && generation === this.generation && this.external.reliable) map.set(key, frozen(value));
    return value;
  }

  /** The domain table, loaded once per generation; concurrent first requests share one load. */
  private domainSnapshot(): DomainSnapshot | Promise<DomainSnapshot> {
    if (this.domains) {
      this.stats.hits++;
      return this.domains;
    }
    this.stats.storeReads++;
    const loading = this.domainsLoading;
    if (loading && loading.generation === this.generation) return loading.promise;
    const generation = this.generation;
    const promise = this.appsRepo.allDomains().then((rows) => {
      const snapshot = new DomainSnapshot(new Map(rows.map((r) => [r.domain, r.app_id])));
      if (generation === this.generation && this.external.reliable) this.domains = snapshot;
      return snapshot;
    });
    const entry = { generation, promise };
    this.domainsLoading = entry;
    promise
      .finally(() => {
        if (this.domainsLoading === entry) this.domainsLoading = undefined;
      })
      .catch(() => {}); // the caller awaiting `promise` sees the error
    return promise;
  }
}

class DomainSnapshot implements DomainView {
  private readonly listing: Set<string>;

  constructor(private readonly owners: Map<string, string>) {
    this.listing = new Set(owners.values());
  }

  ownerOf(pattern: string): string | undefined {
    return this.owners.get(pattern);
  }

  hasDomains(appId: string): boolean {
    return this.listing.has(appId);
  }
}

/** A Map that forgets its oldest entry when full. */
class BoundedMap<V> {
  private readonly map = new Map<string, V>();

  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  set(key: string, value: V): void {
    if (!this.map.has(key) && this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, value);
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  /** Scans every entry: for keys and applications, which are few. */
  deleteWhere(pred: (value: V) => boolean): void {
    for (const [k, v] of this.map) if (pred(v)) this.map.delete(k);
  }

  clear(): void {
    this.map.clear();
  }
}

/**
 * User tokens by (application, digest), the oldest forgotten first when full, with an index by application so that
 * dropping one application's or one user's tokens does not scan every tenant's.
 */
class TokenMap {
  private readonly map = new Map<string, UserTokenRow>();
  private readonly byApp = new Map<string, Set<string>>();

  constructor(private readonly max: number) {}

  /** A digest is 64 hex characters, so digest + application id is unambiguous. */
  static key(appId: string, digest: string): string {
    return digest + appId;
  }

  get(key: string): UserTokenRow | undefined {
    return this.map.get(key);
  }

  set(key: string, row: UserTokenRow): void {
    if (!this.map.has(key) && this.map.size >= this.max) this.delete(this.map.keys().next().value!);
    this.map.set(key, row);
    let keys = this.byApp.get(row.app_id);
    if (!keys) this.byApp.set(row.app_id, (keys = new Set()));
    keys.add(key);
  }

  delete(key: string): void {
    const row = this.map.get(key);
    if (!row) return;
    this.map.delete(key);
    const keys = this.byApp.get(row.app_id);
    keys?.delete(key);
    if (keys?.size === 0) this.byApp.delete(row.app_id);
  }

  deleteWhere(appId: string, pred: (row: UserTokenRow) => boolean): void {
    for (const key of this.byApp.get(appId) ?? []) if (pred(this.map.get(key)!)) this.delete(key);
  }

  clear(): void {
    this.map.clear();
    this.byApp.clear();
  }
}

/** Cached rows are shared by every request that hits them: none may change them. */
function frozen<V extends object>(value: V): V {
  for (const v of Object.values(value)) if (typeof v === 'object' && v !== null) Object.freeze(v);
  return Object.freeze(value);
}
