import { AppError } from '../errors.js';
import { parseMimeList } from '../lib/mime.js';
import { ConfigRepo } from '../store/config-repo.js';
import { Censor } from './censor.js';
import type { ChatContext } from './chat-context.js';
import type { Caller } from './policy.js';

type Json = Record<string, unknown>;

export type CensorMode = 'mask' | 'reject';

export const MAX_CONFIG_KEY_LENGTH = 256;
export const MAX_KEYWORDS = 100_000;
export const MAX_KEYWORD_LENGTH = 256;
/** How long a process trusts its cached censorship before asking the store whether the config changed. */
export const CONFIG_RECHECK_MS = 1000;

interface CensorEntry {
  version: number;
  checkedAt: number;
  filter: { censor: Censor; mode: CensorMode } | null;
}

/**
 * Runtime config of an application (`GET/POST /config`, `DELETE /config/:key`, spec §3.9) and the censorship it
 * drives. POST replaces each key it sends and keeps the others. The keys `announcement`, `featureFlags` and
 * `censorship` are checked; any other key holds any JSON value.
 *
 * The censorship automaton is built once per config version and cached per application. A change made by
 * this process drops the cache at once; a change made by another process (another node, the CLI) is noticed by
 * comparing the stored version, which a send asks for at most once per second per application.
 */
export class AppConfigService {
  private readonly censors = new Map<string, CensorEntry>();
  /** Raised on every local invalidation, so a load that started before a change cannot store a stale entry. */
  private readonly generations = new Map<string, number>();
  private readonly loading = new Map<string, Promise<CensorEntry>>();

  constructor(private readonly ctx: ChatContext) {
    // Another node's change (cluster mode) drops the automaton at once, not at the next version check.
    ctx.bus.on((e, remote) => {
      if (remote && e.type === 'config.changed') this.invalidate(e.appId);
    });
  }

  /** `GET /config`: every key and value. */
  async get(caller: Caller): Promise<Json> {
    const rows = await new ConfigRepo(this.ctx.db).all(caller.appId);
    const out: Json = {};
    for (const r of rows) out[r.key] = JSON.parse(r.value) as unknown;
    return out;
  }

  /** The application's `featureFlags` ({} when unset): file uploads read maxFileSize, allowedFileTypes and enableFileSharing. */
  async featureFlags(appId: string): Promise<Json> {
    const row = await new ConfigRepo(this.ctx.db).get(appId, 'featureFlags');
    const value = row ? (JSON.parse(row.value) as unknown) : undefined;
    return isObject(value) ? value : {};
  }

  /** `POST /config`: each key sent replaces the stored value of that key; returns the whole config. */
  async update(caller: Caller, body: unknown): Promise<Json> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AppError('INVALID_BODY', 'Request body must be a valid JSON object');
    const entries = Object.entries(body as Json);
    for (const [key, value] of entries) checkEntry(key, value);
    const now = this.ctx.clock.now();
    if (entries.length) {
      await this.ctx.db.transaction().execute(async (trx) => {
        const repo = new ConfigRepo(trx);
        for (const [key, value] of entries) await repo.upsert({ app_id: caller.appId, key, value: JSON.stringify(value), updated_at: now });
        await repo.bumpVersion(caller.appId);
      });
      this.invalidate(caller.appId);
      this.ctx.bus.emit({ type: 'config.changed', appId: caller.appId, keys: entries.map(([k]) => k), deleted: false });
    }
    return this.get(caller);
  }

  /** `DELETE /config/:key`. Deleting `censorship` turns filtering off. */
  async delete(caller: Caller, key: string): Promise<Json> {
    const deleted = await this.ctx.db.transaction().execute(async (trx) => {
      const repo = new ConfigRepo(trx);
      if (!(await repo.delete(caller.appId, key))) return false;
      await repo.bumpVersion(caller.appId);
      return true;
    });
    if (!deleted) throw new AppError('CONFIG_NOT_FOUND', `The config key ${key} does not exist`);
    this.invalidate(caller.appId);
    this.ctx.bus.emit({ type: 'config.changed', appId: caller.appId, keys: [key], deleted: true });
    return {};
  }

  /**
   * A message value as it may be stored: string values (the message itself, or strings anywhere inside an
   * object/array message) with keywords masked, or MESSAGE_CENSORED in `reject` mode. Keys, other fields of the
   * message and `encrypted` messages are never touched.
   */
  async censorMessage(appId: string, messageType: string, message: unknown): Promise<unknown> {
    if (messageType === 'encrypted') return message;
    const filter = (await this.censorEntry(appId)).filter;
    if (!filter) return message;
    if (filter.mode === 'reject') {
      if (containsKeyword(message, filter.censor)) throw new AppError('MESSAGE_CENSORED', 'The message contains a censored keyword');
      return message;
    }
    return maskValue(message, filter.censor);
  }

  private invalidate(appId: string): void {
    this.generations.set(appId, (this.generations.get(appId) ?? 0) + 1);
    this.censors.delete(appId);
    this.loading.delete(appId);
  }

  private async censorEntry(appId: string): Promise<CensorEntry> {
    const now = this.ctx.clock.now();
    const cached = this.censors.get(appId);
    if (cached && now - cached.checkedAt < CONFIG_RECHECK_MS && now >= cached.checkedAt) return cached;
    const pending = this.loading.get(appId);
    if (pending) return pending;
    const load = this.load(appId, cached, now);
    this.loading.set(appId, load);
    try {
      return await load;
    } finally {
      if (this.loading.get(appId) === load) this.loading.delete(appId);
    }
  }

  private async load(appId: string, cached: CensorEntry | undefined, now: number): Promise<CensorEntry> {
    const generation = this.generations.get(appId) ?? 0;
    const repo = new ConfigRepo(this.ctx.db);
    const version = await repo.version(appId);
    let entry: CensorEntry;
    if (cached && cached.version === version) {
      entry = { ...cached, checkedAt: now };
    } else {
      const row = await repo.get(appId, 'censorship');
      const value = row ? (JSON.parse(row.value) as { keywords?: string[]; mode?: CensorMode }) : undefined;
      const keywords = (value?.keywords ?? []).filter((k) => typeof k === 'string' && k.length > 0);
      entry = { version, checkedAt: now, filter: keywords.length ? { censor: new Censor(keywords), mode: value?.mode ?? 'mask' } : null };
    }
    if ((this.generations.get(appId) ?? 0) === generation) this.censors.set(appId, entry);
    return entry;
  }
}

function checkEntry(key: string, value: unknown): void {
  if (key.length === 0 || key.length > MAX_CONFIG_KEY_LENGTH || ['__proto__', 'constructor', 'prototype'].includes(key)) {
    throw invalidConfig(`A config key is 1-${MAX_CONFIG_KEY_LENGTH} characters (got ${JSON.stringify(key.slice(0, 40))})`);
  }
  if (key === 'censorship') checkCensorship(value);
  else if (key === 'announcement') checkAnnouncement(value);
  else if (key === 'featureFlags') checkFeatureFlags(value);
}

function checkCensorship(value: unknown): void {
  if (!isObject(value)) throw invalidConfig('censorship must be an object {keywords: string[], mode?: "mask" | "reject"}');
  for (const k of Object.keys(value)) if (k !== 'keywords' && k !== 'mode') throw invalidConfig(`censorship.${k} is not a censorship setting (use keywords and mode)`);
  const { keywords, mode } = value;
  if (!Array.isArray(keywords)) throw invalidConfig('censorship.keywords must be an array of strings');
  if (keywords.length > MAX_KEYWORDS) throw invalidConfig(`censorship.keywords may hold at most ${MAX_KEYWORDS} keywords`);
  for (const k of keywords) {
    if (typeof k !== 'string' || k.length === 0 || k.length > MAX_KEYWORD_LENGTH) {
      throw invalidConfig(`censorship.keywords must be non-empty strings of at most ${MAX_KEYWORD_LENGTH} characters (got ${JSON.stringify(k)})`);
    }
  }
  if (mode !== undefined && mode !== 'mask' && mode !== 'reject') throw invalidConfig('censorship.mode must be "mask" or "reject"');
}

function checkAnnouncement(value: unknown): void {
  if (!isObject(value)) throw invalidConfig('announcement must be an object {text: string, pin?: boolean}');
  if (typeof value.text !== 'string') throw invalidConfig('announcement.text must be a string');
  if (value.pin !== undefined && typeof value.pin !== 'boolean') throw invalidConfig('announcement.pin must be a boolean');
}

function checkFeatureFlags(value: unknown): void {
  if (!isObject(value)) throw invalidConfig('featureFlags must be an object of flag name -> boolean, number or string');
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'boolean' && typeof v !== 'number' && typeof v !== 'string') throw invalidConfig(`featureFlags.${k} must be a boolean, number or string`);
  }
  // The flags file uploads obey (docs/files.md).
  if (value.maxFileSize !== undefined && (!Number.isSafeInteger(value.maxFileSize) || (value.maxFileSize as number) < 1)) throw invalidConfig('featureFlags.maxFileSize must be a whole number of bytes, at least 1');
  if (value.enableFileSharing !== undefined && typeof value.enableFileSharing !== 'boolean') throw invalidConfig('featureFlags.enableFileSharing must be a boolean');
  if (value.allowedFileTypes !== undefined) {
    if (typeof value.allowedFileTypes !== 'string') throw invalidConfig('featureFlags.allowedFileTypes must be a string such as "image/*,video/mp4"');
    try {
      parseMimeList(value.allowedFileTypes);
    } catch (err) {
      throw invalidConfig(`featureFlags.allowedFileTypes ${(err as Error).message}`);
    }
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalidConfig(message: string): AppError {
  return new AppError('INVALID_CONFIG_FORMAT', message);
}

function maskValue(value: unknown, censor: Censor): unknown {
  if (typeof value === 'string') return censor.mask(value);
  if (Array.isArray(value)) return value.map((v) => maskValue(v, censor));
  // fromEntries defines own properties, so a "__proto__" key stays a plain key.
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskValue(v, censor)]));
  return value;
}

function containsKeyword(value: unknown, censor: Censor): boolean {
  if (typeof value === 'string') return censor.matches(value);
  if (Array.isArray(value)) return value.some((v) => containsKeyword(v, censor));
  if (isObject(value)) return Object.values(value).some((v) => containsKeyword(v, censor));
  return false;
}
