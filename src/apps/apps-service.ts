import type { Kysely } from 'kysely';
import { AppError, invalidRequest } from '../errors.js';
import { importedApiKey, importedClientKey, issuedClientKey, newApiKey, newClientKey, newSigningSecret, apiKeyIsLive } from '../auth/keys.js';
import type { Clock } from '../lib/clock.js';
import { iso } from '../lib/clock.js';
import type { EventBus } from '../events/bus.js';
import { digest } from '../lib/secrets.js';
import { APP_ID_PATTERN } from '../lib/ids.js';
import { AppsRepo, type ApiKeyRow, type AppRow } from '../store/apps-repo.js';
import { isUniqueViolation } from '../store/database.js';
import { MonitoringRepo } from '../store/monitoring-repo.js';
import { isScope, SCOPES } from '../auth/scopes.js';
import { compileAllowlist } from '../lib/client-address.js';
import { parseDuration } from '../lib/duration.js';
import type { Database } from '../store/schema.js';

export interface NewApp {
  id?: string;
  name: string;
  domains?: string[];
  rateLimitPerMinute?: number | null;
}

export interface CreatedApp {
  id: string;
  name: string;
  domains: string[];
  apiKey: string;
  clientKey: string;
}

export interface AppSummary {
  id: string;
  name: string;
  domains: string[];
  rateLimitPerMinute: number | null;
  createdAt: string;
  apiKeys: Array<{ id: string; fingerprint: string | null; last4: string; status: 'live' | 'expiring' | 'expired' | 'revoked'; createdAt: string; expiresAt: string | null; revokedAt: string | null }>;
  clientKey: { id: string; last4: string; issued: boolean; createdAt: string } | null;
}

const DOMAIN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * Applications (tenants) and their keys. Used by the CLI today and by the dashboard later; every secret it
 * returns is returned once, from the call that created it. Every committed change is announced on the bus
 * (`credentials.changed`), so the auth guard drops what it cached; the CLI has no bus: the server notices its
 * changes through the store (src/store/external-writes.ts).
 */
export class AppsService {
  private readonly repo: AppsRepo;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly bus?: EventBus,
  ) {
    this.repo = new AppsRepo(db);
  }

  /** Ids of the client keys revoked after `since` (epoch ms): the realtime gateway drops the sockets that used them. */
  clientKeysRevokedSince(since: number): Promise<string[]> {
    return this.repo.clientKeysRevokedSince(since);
  }

  async create(input: NewApp): Promise<CreatedApp> {
    const name = input.name.trim();
    if (!name || name.length > 200) throw invalidRequest('name must be 1-200 characters');
    const domains = normalizeDomains(input.domains ?? []);
    const id = input.id ?? (await this.freeIdFor(name));
    if (!APP_ID_PATTERN.test(id)) throw invalidRequest('id must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit');
    const now = this.clock.now();
    try {
      const created = await this.db.transaction().execute(async (trx) => {
        const repo = new AppsRepo(trx);
        if (await repo.getApp(id)) throw new AppError('APP_EXISTS', `Application ${id} already exists`);
        for (const d of domains) {
          const owner = await repo.appOfDomain(d);
          if (owner) throw new AppError('DOMAIN_TAKEN', `Domain ${d} already belongs to application ${owner}`);
        }
        const app: AppRow = { id, name, rate_limit_per_minute: input.rateLimitPerMinute ?? null, signing_secret: newSigningSecret(), created_at: now, updated_at: now };
        await repo.insertApp(app);
        await repo.insertDomains(id, domains);
        const apiKey = newApiKey(id, now);
        await repo.insertApiKey(apiKey.row);
        const clientKey = await newClientKey(app, now);
        await repo.insertClientKey(clientKey.row);
        return { id, name, domains, apiKey: apiKey.secret, clientKey: clientKey.secret };
      });
      this.changed(id);
      return created;
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('APP_EXISTS', `Application ${id} or one of its domains already exists`);
      throw err;
    }
  }

  async list(): Promise<AppSummary[]> {
    const [apps, domains] = await Promise.all([this.repo.listApps(), this.repo.domainsByApp()]);
    return Promise.all(apps.map((a) => this.summarize(a, domains.get(a.id) ?? [])));
  }

  async describe(app: AppRow): Promise<AppSummary> {
    return this.summarize(app, await this.repo.domainsOf(app.id));
  }

  /** The application with this id, if there is one (imkit-server import creates it when not). */
  get(id: string): Promise<AppRow | undefined> {
    return this.repo.getApp(id);
  }

  /** Finds an application by id, or by name when exactly one has that name. */
  async resolve(idOrName: string): Promise<AppRow> {
    const byId = await this.repo.getApp(idOrName);
    if (byId) return byId;
    const byName = await this.repo.findAppsByName(idOrName);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new AppError('APP_NOT_FOUND', `Several applications are named ${idOrName}; use the id`);
    throw new AppError('APP_NOT_FOUND', `No application ${idOrName}`);
  }

  /**
   * Adds a new API key. Keys that were live keep working for `expireOldInMs` more (0 = revoked now), so
   * services can switch over without downtime.
   */
  async rotateApiKey(app: AppRow, expireOldInMs: number): Promise<{ apiKey: string; fingerprint: string | null; last4: string; oldKeysExpireAt: string | null }> {
    const now = this.clock.now();
    const until = now + expireOldInMs;
    const rotated = await this.db.transaction().execute(async (trx) => {
      const repo = new AppsRepo(trx);
      for (const key of await repo.listApiKeys(app.id)) {
        if (!apiKeyIsLive(key, now)) continue;
        if (expireOldInMs === 0) await repo.updateApiKey(key.id, { revoked_at: now });
        else if (key.expires_at === null || key.expires_at > until) await repo.updateApiKey(key.id, { expires_at: until });
      }
      const fresh = newApiKey(app.id, now);
      await repo.insertApiKey(fresh.row);
      return { apiKey: fresh.secret, fingerprint: fresh.row.fingerprint, last4: fresh.row.last4, oldKeysExpireAt: expireOldInMs === 0 ? null : iso(until) };
    });
    this.changed(app.id);
    return rotated;
  }

  /**
   * Revokes the live key with this fingerprint (the first 10 hex characters of its SHA-256 digest, as lists show
   * it), this key id, or ending in these last 4 characters when only one live key does.
   */
  async revokeApiKey(app: AppRow, which: string): Promise<{ id: string; fingerprint: string | null; last4: string; revokedAt: string }> {
    const now = this.clock.now();
    const key = this.findLive(await this.repo.listApiKeys(app.id), which, now, app.id);
    await this.repo.updateApiKey(key.id, { revoked_at: now });
    this.changed(app.id);
    return { id: key.id, fingerprint: key.fingerprint, last4: key.last4, revokedAt: iso(now) };
  }

  /**
   * `app create-api-key`: a new key besides the others, optionally limited (scopes, an address allowlist, an
   * expiry, a per-minute limit, a name); the secret is in this answer only.
   */
  async createApiKey(app: AppRow, input: { name?: string; scopes?: string[]; allowIps?: string[]; expiresIn?: string; rateLimitPerMinute?: number }): Promise<Record<string, unknown>> {
    const now = this.clock.now();
    if (input.name !== undefined && (input.name.length === 0 || input.name.length > 100)) throw invalidRequest('Invalid field name: 1-100 characters', { field: 'name' });
    const scopes = input.scopes === undefined ? undefined : [...new Set(input.scopes)];
    const unknown = scopes?.filter((s) => !isScope(s)) ?? [];
    if (unknown.length) throw invalidRequest(`Invalid field scopes: unknown ${unknown.map((s) => JSON.stringify(s)).join(', ')}; the scopes are ${SCOPES.join(', ')}`, { field: 'scopes' });
    if (scopes !== undefined && scopes.length === 0) throw invalidRequest('Invalid field scopes: give at least one scope (a key without scopes has full permissions)', { field: 'scopes' });
    const allowIps = input.allowIps === undefined ? undefined : [...new Set(input.allowIps.map((a) => a.trim()))];
    if (allowIps !== undefined) {
      if (allowIps.length === 0 || allowIps.length > 100) throw invalidRequest('Invalid field allowIps: 1-100 addresses or CIDRs', { field: 'allowIps' });
      for (const a of allowIps) {
        try {
          compileAllowlist([a]);
        } catch {
          throw invalidRequest(`Invalid field allowIps: ${JSON.stringify(a)} is not an IP address or CIDR (203.0.113.0/24, 2001:db8::/32)`, { field: 'allowIps' });
        }
      }
    }
    const expiresInMs = input.expiresIn === undefined ? undefined : parseDuration(input.expiresIn);
    if (input.expiresIn !== undefined && (expiresInMs === undefined || expiresInMs <= 0)) {
      throw invalidRequest('Invalid field expiresIn: a duration such as 90d, 12h or 30m', { field: 'expiresIn' });
    }
    if (input.rateLimitPerMinute !== undefined && (!Number.isInteger(input.rateLimitPerMinute) || input.rateLimitPerMinute < 1 || input.rateLimitPerMinute > 10_000_000)) {
      throw invalidRequest('Invalid field rateLimitPerMinute: a whole number from 1 to 10000000', { field: 'rateLimitPerMinute' });
    }
    const fresh = newApiKey(app.id, now, {
      name: input.name,
      scopes,
      allowIps,
      expiresAt: expiresInMs === undefined ? undefined : now + expiresInMs,
      rateLimitPerMinute: input.rateLimitPerMinute,
    });
    await this.repo.insertApiKey(fresh.row);
    this.changed(app.id);
    return { apiKey: fresh.secret, ...renderKey(fresh.row, now, undefined) };
  }

  /** `app list-api-keys`: every key of the application (never a secret), with its limits and last use. */
  async listApiKeys(app: AppRow): Promise<Array<Record<string, unknown>>> {
    const now = this.clock.now();
    const keys = await this.repo.listApiKeys(app.id);
    const { last } = await new MonitoringRepo(this.db).usageOf(app.id, now);
    const lastByKey = new Map(last.map((u) => [u.key_id, u]));
    return keys.map((k) => renderKey(k, now, lastByKey.get(k.id)));
  }

  /**
   * Replaces one live API key (by fingerprint, id or unique last 4) with a new one of the same name, scopes,
   * allowlist and limit; the old key keeps working for `expireOldInMs` more (0 = revoked now). The new secret is in
   * this answer only.
   */
  async rotateOneApiKey(app: AppRow, which: string, expireOldInMs: number): Promise<Record<string, unknown>> {
    if (!Number.isFinite(expireOldInMs) || expireOldInMs < 0 || expireOldInMs > 30 * 86_400_000) throw invalidRequest('Invalid field expireOldIn: a duration from 0 to 30d', { field: 'expireOldIn' });
    const now = this.clock.now();
    const old = this.findLive(await this.repo.listApiKeys(app.id), which, now, app.id);
    const until = now + expireOldInMs;
    const fresh = newApiKey(app.id, now, {
      name: old.name ?? undefined,
      scopes: old.scopes === null ? undefined : (JSON.parse(old.scopes) as string[]),
      allowIps: old.allow_ips === null ? undefined : (JSON.parse(old.allow_ips) as string[]),
      expiresAt: old.expires_at ?? undefined,
      rateLimitPerMinute: old.rate_limit_per_minute ?? undefined,
    });
    await this.db.transaction().execute(async (trx) => {
      const repo = new AppsRepo(trx);
      await repo.insertApiKey(fresh.row);
      if (expireOldInMs === 0) await repo.updateApiKey(old.id, { revoked_at: now });
      else if (old.expires_at === null || old.expires_at > until) await repo.updateApiKey(old.id, { expires_at: until });
    });
    this.changed(app.id);
    return { apiKey: fresh.secret, ...renderKey(fresh.row, now, undefined), replaced: { id: old.id, fingerprint: old.fingerprint, last4: old.last4, expiresAt: iso(expireOldInMs === 0 ? now : Math.min(until, old.expires_at ?? until)), revoked: expireOldInMs === 0 } };
  }

  /** The application's client key: shown again when this server issued it (it is no secret), else its last 4 only. */
  async clientKey(app: AppRow): Promise<{ id: string; clientKey: string | null; last4: string; issued: boolean; createdAt: string } | null> {
    const row = await this.repo.liveClientKey(app.id);
    if (!row) return null;
    return { id: row.id, clientKey: (await issuedClientKey(app, row)) ?? null, last4: row.last4, issued: row.issued === 1, createdAt: iso(row.created_at) };
  }

  /**
   * The web chat without `clientKey` (docs/dashboard.md): the client key of the one application that holds this live
   * user token, when this server issued that key. Undefined when no application (or more than one) holds it.
   */
  async clientKeyForToken(tokenDigest: string): Promise<string | undefined> {
    const apps = await this.repo.appsOfToken(tokenDigest, this.clock.now());
    if (apps.length !== 1) return undefined;
    const app = await this.repo.getApp(apps[0]!);
    return app ? ((await this.clientKey(app))?.clientKey ?? undefined) : undefined;
  }

  /** Replaces the application's domains (the client key's binding, docs/auth.md); each may belong to one application only. */
  async setDomains(app: AppRow, input: string[]): Promise<{ domains: string[] }> {
    if (input.length > 100) throw invalidRequest('Invalid field domains: at most 100', { field: 'domains' });
    const domains = normalizeDomains(input);
    try {
      await this.db.transaction().execute(async (trx) => {
        const repo = new AppsRepo(trx);
        for (const d of domains) {
          const owner = await repo.appOfDomain(d);
          if (owner && owner !== app.id) throw new AppError('DOMAIN_TAKEN', `Domain ${d} already belongs to another application`);
        }
        await repo.deleteDomains(app.id);
        await repo.insertDomains(app.id, domains);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('DOMAIN_TAKEN', 'One of these domains already belongs to another application');
      throw err;
    }
    this.changed(app.id);
    return { domains };
  }

  private findLive(keys: ApiKeyRow[], which: string, now: number, appId: string): ApiKeyRow {
    const live = keys.filter((k) => apiKeyIsLive(k, now));
    const exact = live.filter((k) => k.fingerprint === which || k.id === which);
    const matches = exact.length ? exact : live.filter((k) => k.last4 === which);
    if (matches.length === 0) throw new AppError('KEY_NOT_FOUND', `No live API key with fingerprint, id or last 4 characters ${which} in application ${appId}`);
    if (matches.length > 1) throw new AppError('KEY_AMBIGUOUS', `Several live API keys end in ${which}; name the key by its fingerprint (app list-api-keys shows it)`);
    return matches[0]!;
  }

  /** One client key per application: the new one replaces the old at once. */
  async rotateClientKey(app: AppRow): Promise<{ clientKey: string; last4: string }> {
    const now = this.clock.now();
    const fresh = await newClientKey(app, now);
    await this.db.transaction().execute(async (trx) => {
      const repo = new AppsRepo(trx);
      await repo.revokeClientKeys(app.id, now);
      await repo.insertClientKey(fresh.row);
    });
    this.changed(app.id);
    return { clientKey: fresh.secret, last4: fresh.row.last4 };
  }

  /**
   * For scripted deployments (IMKIT_APP_ID / IMKIT_API_KEY / IMKIT_CLIENT_KEY): makes sure the application
   * exists and the given keys work exactly as given. Other live API keys are left alone (so a rotation done
   * with the CLI survives a restart); the given client key becomes the application's only client key.
   */
  async ensureFromEnv(appId: string, apiKey: string | undefined, clientKey: string | undefined): Promise<{ created: boolean; generated: Partial<CreatedApp> }> {
    const now = this.clock.now();
    const result = await this.db.transaction().execute(async (trx) => {
      const repo = new AppsRepo(trx);
      let app = await repo.getApp(appId);
      const created = !app;
      const generated: Partial<CreatedApp> = {};
      if (!app) {
        app = { id: appId, name: appId, rate_limit_per_minute: null, signing_secret: newSigningSecret(), created_at: now, updated_at: now };
        await repo.insertApp(app);
      }
      if (apiKey) {
        const existing = await repo.findApiKeyByDigest(digest(apiKey));
        if (existing && existing.app_id !== appId) throw invalidRequest('IMKIT_API_KEY is already a key of another application');
        if (!existing) await repo.insertApiKey(importedApiKey(appId, apiKey, now));
        else if (!apiKeyIsLive(existing, now)) await repo.updateApiKey(existing.id, { revoked_at: null, expires_at: null });
      } else if (created) {
        const fresh = newApiKey(appId, now);
        await repo.insertApiKey(fresh.row);
        generated.apiKey = fresh.secret;
      }
      if (clientKey) {
        const existing = await repo.findClientKeyByDigest(digest(clientKey));
        if (existing && existing.app_id !== appId) throw invalidRequest('IMKIT_CLIENT_KEY is already the client key of another application');
        await repo.revokeClientKeys(appId, now);
        if (existing) await repo.unrevokeClientKey(existing.id);
        else await repo.insertClientKey(importedClientKey(appId, clientKey, now));
      } else if (created) {
        const fresh = await newClientKey(app, now);
        await repo.insertClientKey(fresh.row);
        generated.clientKey = fresh.secret;
      }
      return { created, generated };
    });
    this.changed(appId);
    return result;
  }

  /** After a committed change to an application, its domains or keys. */
  private changed(appId: string): void {
    this.bus?.emit({ type: 'credentials.changed', appId });
  }

  async isEmpty(): Promise<boolean> {
    return (await this.repo.countApps()) === 0;
  }

  private async freeIdFor(name: string): Promise<string> {
    const slug = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^[-_.]+|[-]+$/g, '').slice(0, 48) || 'app';
    if (!(await this.repo.getApp(slug))) return slug;
    for (;;) {
      const candidate = `${slug}-${Math.random().toString(16).slice(2, 6)}`;
      if (!(await this.repo.getApp(candidate))) return candidate;
    }
  }

  private async summarize(app: AppRow, domains: string[]): Promise<AppSummary> {
    const now = this.clock.now();
    const keys = await this.repo.listApiKeys(app.id);
    const client = await this.repo.liveClientKey(app.id);
    return {
      id: app.id,
      name: app.name,
      domains,
      rateLimitPerMinute: app.rate_limit_per_minute,
      createdAt: iso(app.created_at),
      apiKeys: keys.map((k) => ({
        id: k.id,
        fingerprint: k.fingerprint,
        last4: k.last4,
        status: keyStatus(k, now),
        createdAt: iso(k.created_at),
        expiresAt: k.expires_at === null ? null : iso(k.expires_at),
        revokedAt: k.revoked_at === null ? null : iso(k.revoked_at),
      })),
      clientKey: client ? { id: client.id, last4: client.last4, issued: client.issued === 1, createdAt: iso(client.created_at) } : null,
    };
  }
}

/** A key as lists show it: never its secret or digest, its fingerprint first. */
function renderKey(k: ApiKeyRow, now: number, usage: { last_used_at: number; last_address: string } | undefined): Record<string, unknown> {
  return {
    id: k.id,
    fingerprint: k.fingerprint,
    last4: k.last4,
    name: k.name,
    scopes: k.scopes === null ? null : (JSON.parse(k.scopes) as string[]),
    allowIps: k.allow_ips === null ? null : (JSON.parse(k.allow_ips) as string[]),
    rateLimitPerMinute: k.rate_limit_per_minute,
    status: keyStatus(k, now),
    createdAt: iso(k.created_at),
    expiresAt: k.expires_at === null ? null : iso(k.expires_at),
    revokedAt: k.revoked_at === null ? null : iso(k.revoked_at),
    lastUsedAt: usage ? iso(usage.last_used_at) : null,
    lastAddress: usage?.last_address ?? null,
  };
}

function keyStatus(k: ApiKeyRow, now: number): AppSummary['apiKeys'][number]['status'] {
  if (k.revoked_at !== null) return 'revoked';
  if (k.expires_at === null) return 'live';
  return k.expires_at > now ? 'expiring' : 'expired';
}

export function normalizeDomains(domains: string[]): string[] {
  const out = new Set<string>();
  for (const raw of domains) {
    const d = raw.trim().toLowerCase().replace(/\.$/, '');
    if (!DOMAIN.test(d) || d.length > 253) throw invalidRequest(`domain "${raw}" is not a host name (example: chat.example.com or *.example.com)`);
    out.add(d);
  }
  return [...out];
}
