import { SignJWT } from 'jose';
import { digest, generateApiKey, last4, randomHex } from '../lib/secrets.js';
import type { ApiKeyRow, AppRow, ClientKeyRow } from '../store/apps-repo.js';

/**
 * Making and checking the application credentials. Nothing here stores anything: callers put the rows
 * these functions build into the store.
 */
export function newSigningSecret(): string {
  return randomHex(32);
}

/** What an API key may be limited to (docs/security.md); absent fields: none of that limit. */
export interface ApiKeySettings {
  name?: string;
  scopes?: string[];
  allowIps?: string[];
  expiresAt?: number;
  rateLimitPerMinute?: number;
}

export function newApiKey(appId: string, now: number, settings: ApiKeySettings = {}): { secret: string; row: ApiKeyRow } {
  const secret = generateApiKey();
  return { secret, row: apiKeyRow(appId, secret, now, settings) };
}

/** An API key the operator chose (IMKIT_API_KEY): kept byte for byte, stored as its digest. */
export function importedApiKey(appId: string, secret: string, now: number): ApiKeyRow {
  return apiKeyRow(appId, secret, now, {});
}

function apiKeyRow(appId: string, secret: string, now: number, s: ApiKeySettings): ApiKeyRow {
  const d = digest(secret);
  return {
    id: `ak_${randomHex(8)}`,
    app_id: appId,
    digest: d,
    last4: last4(secret),
    fingerprint: fingerprintOf(d),
    created_at: now,
    expires_at: s.expiresAt ?? null,
    revoked_at: null,
    name: s.name ?? null,
    scopes: s.scopes ? JSON.stringify(s.scopes) : null,
    allow_ips: s.allowIps ? JSON.stringify(s.allowIps) : null,
    rate_limit_per_minute: s.rateLimitPerMinute ?? null,
  };
}

/**
 * A key's short identifier: the first 10 hex characters of its SHA-256 digest. It tells keys apart (the last 4
 * characters of this key format do not: their Base64 padding leaves 16 values), and whoever holds a key can compute
 * it (`printf %s "$KEY" | sha256sum | cut -c1-10`) to find it in lists and logs. It reveals nothing usable.
 */
export function fingerprintOf(keyDigest: string): string {
  return keyDigest.slice(0, 10);
}

export function apiKeyIsLive(row: ApiKeyRow, now: number): boolean {
  return row.revoked_at === null && (row.expires_at === null || row.expires_at > now);
}

/**
 * The client key is a JWT (HS256) signed with the application's own secret. Its claims name the
 * application, the key id and the creation time; it carries no secret (unlike the vendor's example, which
 * embedded the API key).
 */
export async function newClientKey(app: Pick<AppRow, 'id' | 'signing_secret'>, now: number): Promise<{ secret: string; row: ClientKeyRow }> {
  const kid = `ck_${randomHex(8)}`;
  const secret = await new SignJWT({ appID: app.id, kid, createAt: now })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid })
    .sign(secretBytes(app.signing_secret));
  return {
    secret,
    row: { id: kid, app_id: app.id, digest: digest(secret), last4: last4(secret), issued: 1, created_at: now, revoked_at: null },
  };
}

/**
 * An issued client key again, from its row: the JWT is signed (HS256, deterministic) over the same claims and header,
 * so the same text comes out. A client key is no secret (it ships inside every web and mobile app), so the dashboard
 * shows it again; an imported one (IMKIT_CLIENT_KEY) was never made here and cannot be.
 */
export async function issuedClientKey(app: Pick<AppRow, 'id' | 'signing_secret'>, row: ClientKeyRow): Promise<string | undefined> {
  if (row.issued !== 1) return undefined;
  const secret = await new SignJWT({ appID: app.id, kid: row.id, createAt: row.created_at })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: row.id })
    .sign(secretBytes(app.signing_secret));
  return digest(secret) === row.digest ? secret : undefined;
}

export function importedClientKey(appId: string, secret: string, now: number): ClientKeyRow {
  return { id: `ck_${randomHex(8)}`, app_id: appId, digest: digest(secret), last4: last4(secret), issued: 0, created_at: now, revoked_at: null };
}

/**
 * Server-issued user tokens are JWTs too: the IMKIT Vue SDK reads the user id from the `id` claim. They are
 * still checked by digest (so revocation is immediate); the signature only proves where they came from.
 */
export async function newUserToken(app: Pick<AppRow, 'id' | 'signing_secret'>, userId: string, now: number, expiresAt: number): Promise<string> {
  return new SignJWT({ id: userId, _id: userId, appID: app.id })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(Math.floor(expiresAt / 1000))
    .setJti(randomHex(12))
    .sign(secretBytes(app.signing_secret));
}

function secretBytes(hex: string): Uint8Array {
  return Buffer.from(hex, 'hex');
}
