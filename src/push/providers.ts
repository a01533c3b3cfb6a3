import { createHash, createPublicKey } from 'node:crypto';
import fs from 'node:fs';
import http2 from 'node:http2';
import tls from 'node:tls';
import { importPKCS8, SignJWT } from 'jose';
import webpush from 'web-push';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import { createAgents, describeNetworkError, post } from '../webhooks/dispatcher.js';
import { signatureHeader } from '../webhooks/signing.js';
import { checkWebhookUrl, type VettedUrl } from '../webhooks/ssrf.js';
import type { Notice } from './notice.js';

type Json = Record<string, unknown>;

/** How an attempt ended. `invalid`: the provider says the token is dead, and the device is removed. */
export type PushResult =
  | { outcome: 'delivered'; status: number }
  | { outcome: 'retry'; status: number | null; error: string }
  | { outcome: 'failed'; status: number | null; error: string }
  | { outcome: 'invalid'; status: number; error: string };

/** Where one push goes: a device's token (web: its subscription as JSON) and what it was subscribed as. */
export interface PushTarget {
  token: string;
  type: string;
  userId: string | null;
  deviceId: string | null;
}

export type ProviderName = 'fcm' | 'apns' | 'web' | 'hook';
export const PROVIDERS: readonly ProviderName[] = ['fcm', 'apns', 'web', 'hook'];

/** One push service behind one interface: credentials are checked once when set, then used for every send. */
export interface PushProvider {
  /** Checks credentials as an administrator gives them; answers what is stored (`data`, secret) and shown (`info`). */
  checkCredentials(input: Json): Promise<{ data: Json; info: Json }>;
  send(appId: string, creds: Json, target: PushTarget, notice: Notice, deliveryId: string): Promise<PushResult>;
  close(): void;
}

export type ProviderSettings = Pick<Config, 'pushFcmBaseUrl' | 'pushFcmTokenUrl' | 'pushApnsBaseUrl' | 'pushApnsCaFile' | 'webhookTimeoutMs' | 'webhookAllowPrivateNetworks'>;

const bad = (message: string) => new AppError('INVALID_PUSH_CREDENTIALS', message);
const str = (v: unknown, max = 10_000): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
/** Retry on rate limits and server errors, fail on any other refusal. */
const byStatus = (status: number, error: string): PushResult => (status === 429 || status >= 500 ? { outcome: 'retry', status, error } : { outcome: 'failed', status, error });

// ------------------------------------------------------------------------------------------------ FCM HTTP v1

/**
 * Firebase Cloud Messaging, HTTP v1 API: an OAuth2 access token obtained with a JWT signed by the service account's
 * key (RS256, grant type jwt-bearer), kept until a minute before it expires; one POST per message to
 * `<base>/v1/projects/<project>/messages:send`. The token endpoint is the setting, never the service account's
 * own `token_uri` (a tenant's file must not choose where this server sends signed assertions).
 */
export class FcmProvider implements PushProvider {
  static readonly SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
  private readonly tokens = new Map<string, { token: string; until: number }>();

  constructor(private readonly s: ProviderSettings, private readonly clock: Clock) {}

  async checkCredentials(input: Json): Promise<{ data: Json; info: Json }> {
    const sa = (typeof input.serviceAccount === 'object' && input.serviceAccount !== null ? input.serviceAccount : input) as Json;
    if (!str(sa.project_id, 200) || !/^[a-z0-9-]+$/i.test(sa.project_id)) throw bad('fcm: project_id is required (the service account JSON from the Firebase console)');
    if (!str(sa.client_email, 320)) throw bad('fcm: client_email is required');
    if (!str(sa.private_key, 10_000)) throw bad('fcm: private_key is required (PEM, PKCS#8)');
    try {
      await importPKCS8(sa.private_key, 'RS256');
    } catch {
      throw bad('fcm: private_key is not an RSA private key in PKCS#8 PEM');
    }
    const keyId = str(sa.private_key_id, 200) ? sa.private_key_id : null;
    return {
      data: { project_id: sa.project_id, client_email: sa.client_email, private_key: sa.private_key, private_key_id: keyId },
      info: { projectId: sa.project_id, clientEmail: sa.client_email, privateKeyId: keyId },
    };
  }

  private async accessToken(appId: string, c: Json): Promise<string> {
    const key = `${appId}\u0000${c.client_email as string}\u0000${digest(c.private_key as string)}`;
    const now = this.clock.now();
    const cached = this.tokens.get(key);
    if (cached && cached.until > now) return cached.token;
    const iat = Math.floor(now / 1000);
    const assertion = await new SignJWT({ scope: FcmProvider.SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(c.private_key_id ? { kid: c.private_key_id as string } : {}) })
      .setIssuer(c.client_email as string)
      .setAudience(this.s.pushFcmTokenUrl)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(await importPKCS8(c.private_key as string, 'RS256'));
    const res = await fetch(this.s.pushFcmTokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
      signal: AbortSignal.timeout(this.s.webhookTimeoutMs),
    });
    const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; expires_in?: unknown };
    if (!res.ok || typeof body.access_token !== 'string') throw Object.assign(new Error(`the token endpoint answered ${res.status}`), { status: res.status });
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 120 ? body.expires_in : 3600;
    this.tokens.set(key, { token: body.access_token, until: now + (ttl - 60) * 1000 });
    return body.access_token;
  }

  async send(appId: string, c: Json, target: PushTarget, n: Notice): Promise<PushResult> {
    let access: string;
    try {
      access = await this.accessToken(appId, c);
    } catch (err) {
      const status = (err as { status?: number }).status ?? null;
      // A refused assertion (400/401: a revoked key) will not get better by itself; anything else may.
      if (status === 400 || status === 401 || status === 403) return { outcome: 'failed', status, error: `fcm: access token refused (${status})` };
      return { outcome: 'retry', status, error: `fcm: access token: ${(err as Error).message}` };
    }
    const url = `${this.s.pushFcmBaseUrl.replace(/\/+$/, '')}/v1/projects/${encodeURIComponent(c.project_id as string)}/messages:send`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${access}`, 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify({ message: fcmMessage(target.token, n, this.clock.now()) }),
        signal: AbortSignal.timeout(this.s.webhookTimeoutMs),
      });
    } catch (err) {
      return { outcome: 'retry', status: null, error: `fcm: ${describeNetworkError((err as { cause?: unknown }).cause ?? err)}` };
    }
    const text = await res.text().catch(() => '');
    if (res.ok) return { outcome: 'delivered', status: res.status };
    let error: { status?: string; message?: string; details?: Array<{ errorCode?: string; fieldViolations?: Array<{ field?: string }> }> } = {};
    try {
      error = (JSON.parse(text) as { error?: typeof error }).error ?? {};
    } catch {
      // not JSON: judged by the status alone
    }
    const codes = (error.details ?? []).map((d) => d.errorCode).filter(Boolean);
    const fields = (error.details ?? []).flatMap((d) => (d.fieldViolations ?? []).map((f) => f.field ?? ''));
    const said = `fcm: ${res.status} ${codes[0] ?? error.status ?? ''}`.trim();
    if (res.status === 404 || codes.includes('UNREGISTERED')) return { outcome: 'invalid', status: res.status, error: said };
    if (res.status === 403 && codes.includes('SENDER_ID_MISMATCH')) return { outcome: 'invalid', status: res.status, error: said };
    if (res.status === 400 && (fields.some((f) => /token/i.test(f)) || /registration token|message\.token/i.test(error.message ?? ''))) {
      return { outcome: 'invalid', status: res.status, error: said };
    }
    if (res.status === 401) {
      // The access token was refused: the next attempt gets a new one.
      this.tokens.clear();
      return { outcome: 'retry', status: 401, error: said };
    }
    return byStatus(res.status, said);
  }

  close(): void {
    this.tokens.clear();
  }
}

/** An FCM v1 `message` (data values must be strings; `ttl` a duration in seconds). */
export function fcmMessage(token: string, n: Notice, now: number): Json {
  const alert = typeof n.alert === 'object' ? n.alert : undefined;
  const body = n.body ?? (typeof n.alert === 'string' ? n.alert : undefined);
  const ttl = n.expiry !== undefined ? Math.max(0, n.expiry - Math.floor(now / 1000)) : undefined;
  const androidNotification: Json = {
    ...(n.icon !== undefined ? { icon: n.icon } : {}),
    ...(n.sound !== undefined ? { sound: n.sound } : {}),
    ...(n.clickAction !== undefined ? { click_action: n.clickAction } : {}),
    ...(alert?.['loc-key'] !== undefined ? { body_loc_key: alert['loc-key'] } : {}),
    ...(alert?.['loc-args'] !== undefined ? { body_loc_args: alert['loc-args'] } : {}),
    ...(n.badge !== undefined ? { notification_count: n.badge } : {}),
  };
  const data: Record<string, string> = { ...(n.data ?? {}) };
  if (n.type !== undefined) data.type = n.type;
  return {
    token,
    ...(n.title !== undefined || body !== undefined ? { notification: { ...(n.title !== undefined ? { title: n.title } : {}), ...(body !== undefined ? { body } : {}) } } : {}),
    android: {
      priority: 'high',
      ...(ttl !== undefined ? { ttl: `${ttl}s` } : {}),
      ...(n.collapseKey !== undefined ? { collapse_key: n.collapseKey } : {}),
      ...(Object.keys(androidNotification).length ? { notification: androidNotification } : {}),
    },
    ...(n.badge !== undefined || n.sound !== undefined ? { apns: { payload: { aps: { ...(n.badge !== undefined ? { badge: n.badge } : {}), ...(n.sound !== undefined ? { sound: n.sound } : {}) } } } } : {}),
    ...(Object.keys(data).length ? { data } : {}),
  };
}

// ------------------------------------------------------------------------------------------------ APNs

/**
 * Apple Push Notification service: HTTP/2 (node:http2), token-based authentication (an ES256 JWT from the .p8 key,
 * `kid` the key id, `iss` the team id, renewed every 40 minutes: Apple refuses one older than an hour and one
 * renewed more often than every 20 minutes). One HTTP/2 session per base URL carries every application's
 * requests (the JWT travels per request). IMKIT_PUSH_APNS_CA_FILE adds a CA to trust (a test server).
 */
export class ApnsProvider implements PushProvider {
  private session: http2.ClientHttp2Session | undefined;
  private readonly jwts = new Map<string, { jwt: string; until: number }>();
  private readonly ca: string[] | undefined;

  constructor(private readonly s: ProviderSettings, private readonly clock: Clock) {
    this.ca = s.pushApnsCaFile ? [...tls.rootCertificates, fs.readFileSync(s.pushApnsCaFile, 'utf8')] : undefined;
  }

  async checkCredentials(input: Json): Promise<{ data: Json; info: Json }> {
    if (!str(input.keyId, 64) || !/^[A-Z0-9]+$/i.test(input.keyId)) throw bad('apns: keyId is required (the 10-character Key ID of the .p8 key)');
    if (!str(input.teamId, 64) || !/^[A-Z0-9]+$/i.test(input.teamId)) throw bad('apns: teamId is required (the 10-character Team ID)');
    if (!str(input.bundleId, 200) || !/^[A-Za-z0-9.-]+$/.test(input.bundleId)) throw bad('apns: bundleId is required (the app\'s bundle id, the apns-topic)');
    if (!str(input.key, 10_000)) throw bad('apns: key is required (the contents of the .p8 file)');
    try {
      await importPKCS8(input.key, 'ES256');
    } catch {
      throw bad('apns: key is not a P-256 private key in PKCS#8 PEM (the .p8 file)');
    }
    return {
      data: { keyId: input.keyId, teamId: input.teamId, bundleId: input.bundleId, key: input.key },
      info: { keyId: input.keyId, teamId: input.teamId, bundleId: input.bundleId },
    };
  }

  private async jwt(c: Json): Promise<string> {
    const key = `${c.teamId as string}\u0000${c.keyId as string}\u0000${digest(c.key as string)}`;
    const now = this.clock.now();
    const cached = this.jwts.get(key);
    if (cached && cached.until > now) return cached.jwt;
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: c.keyId as string })
      .setIssuer(c.teamId as string)
      .setIssuedAt(Math.floor(now / 1000))
      .sign(await importPKCS8(c.key as string, 'ES256'));
    this.jwts.set(key, { jwt, until: now + 40 * 60_000 });
    return jwt;
  }

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = http2.connect(this.s.pushApnsBaseUrl, this.ca ? { ca: this.ca } : {});
    s.on('error', () => undefined);
    s.on('goaway', () => s.close());
    s.on('close', () => {
      if (this.session === s) this.session = undefined;
    });
    s.setTimeout(60_000, () => s.close());
    this.session = s;
    return s;
  }

  async send(_appId: string, c: Json, target: PushTarget, n: Notice): Promise<PushResult> {
    const jwt = await this.jwt(c);
    const headers: http2.OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': `/3/device/${encodeURIComponent(target.token)}`,
      authorization: `bearer ${jwt}`,
      'apns-topic': n.topic ?? (c.bundleId as string),
      'apns-push-type': 'alert',
      'apns-priority': '10',
      'content-type': 'application/json',
      ...(n.expiry !== undefined ? { 'apns-expiration': String(n.expiry) } : {}),
      ...(n.collapseKey !== undefined ? { 'apns-collapse-id': n.collapseKey.slice(0, 64) } : {}),
    };
    let res: { status: number; body: string };
    try {
      res = await this.request(headers, JSON.stringify(apnsPayload(n)));
    } catch (err) {
      return { outcome: 'retry', status: null, error: `apns: ${describeNetworkError(err)}` };
    }
    if (res.status === 200) return { outcome: 'delivered', status: 200 };
    let reason = '';
    try {
      reason = String((JSON.parse(res.body) as { reason?: unknown }).reason ?? '');
    } catch {
      // no reason given
    }
    const said = `apns: ${res.status} ${reason}`.trim();
    if (res.status === 410 || (res.status === 400 && ['BadDeviceToken', 'Unregistered', 'DeviceTokenNotForTopic'].includes(reason))) return { outcome: 'invalid', status: res.status, error: said };
    if (res.status === 403 && (reason === 'ExpiredProviderToken' || reason === 'InvalidProviderToken')) {
      this.jwts.clear();
      return { outcome: 'retry', status: 403, error: said };
    }
    return byStatus(res.status, said);
  }

  private request(headers: http2.OutgoingHttpHeaders, body: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = this.connect().request(headers);
      } catch (err) {
        reject(err);
        return;
      }
      let status = 0;
      const chunks: Buffer[] = [];
      req.setTimeout(this.s.webhookTimeoutMs, () => req.close(http2.constants.NGHTTP2_CANCEL));
      req.on('response', (h) => (status = Number(h[':status'] ?? 0)));
      req.on('data', (c: Buffer) => {
        if (chunks.length < 64) chunks.push(c);
      });
      req.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString('utf8') }));
      req.on('close', () => (status === 0 ? reject(new Error('the stream closed without an answer')) : undefined));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}

/** The APNs JSON: `aps` (alert, badge, sound, category = the notice's type), the string data beside it. */
export function apnsPayload(n: Notice): Json {
  let alert: unknown;
  if (typeof n.alert === 'string') alert = n.alert;
  else if (n.alert || n.title !== undefined || n.body !== undefined) {
    alert = { ...(n.title !== undefined ? { title: n.title } : {}), ...(n.body !== undefined ? { body: n.body } : {}), ...(n.alert ?? {}) };
  }
  return {
    ...(n.data ?? {}),
    aps: {
      ...(alert !== undefined ? { alert } : {}),
      ...(n.badge !== undefined ? { badge: n.badge } : {}),
      ...(n.sound !== undefined ? { sound: n.sound } : {}),
      ...(n.type !== undefined ? { category: n.type } : {}),
    },
  };
}

// ------------------------------------------------------------------------------------------------ Web Push

/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and the aes128gcm payload encryption (RFC 8291), both done by the
 * `web-push` package (generateRequestDetails); the request itself goes out through the webhooks' HTTP client, to
 * the address the SSRF guard vetted: a subscription's endpoint is a URL a user gave.
 */
export class WebPushProvider implements PushProvider {
  private readonly agents = createAgents();

  constructor(private readonly s: ProviderSettings, private readonly clock: Clock) {}

  async checkCredentials(input: Json): Promise<{ data: Json; info: Json }> {
    if (!str(input.subject, 500) || !/^(mailto:|https:\/\/)/.test(input.subject)) throw bad('web: subject is required: a mailto: or https: URL the push services may contact');
    let publicKey = input.publicKey;
    let privateKey = input.privateKey;
    if (publicKey === undefined && privateKey === undefined) ({ publicKey, privateKey } = webpush.generateVAPIDKeys());
    if (!str(publicKey, 200) || !isP256Point(publicKey)) throw bad('web: publicKey must be a VAPID public key (base64url, 65 bytes)');
    if (!str(privateKey, 200) || b64url(privateKey)?.length !== 32) throw bad('web: privateKey must be a VAPID private key (base64url, 32 bytes)');
    return { data: { subject: input.subject, publicKey, privateKey }, info: { subject: input.subject, publicKey } };
  }

  async send(_appId: string, c: Json, target: PushTarget, n: Notice): Promise<PushResult> {
    const sub = parseSubscription(target.token);
    if (!sub) return { outcome: 'invalid', status: 400, error: 'web: the stored subscription is not usable' };
    let vetted: VettedUrl;
    try {
      vetted = await checkWebhookUrl(sub.endpoint, { allowPrivate: this.s.webhookAllowPrivateNetworks, field: 'endpoint' });
    } catch (err) {
      const message = err instanceof AppError ? err.message : String(err);
      if (/could not be resolved right now/.test(message)) return { outcome: 'retry', status: null, error: `web: ${message}` };
      return { outcome: 'failed', status: null, error: `web: refused: ${message}` };
    }
    const ttl = n.expiry !== undefined ? Math.max(0, n.expiry - Math.floor(this.clock.now() / 1000)) : 3600;
    const details = webpush.generateRequestDetails(sub, JSON.stringify(webNotification(n)), {
      vapidDetails: { subject: c.subject as string, publicKey: c.publicKey as string, privateKey: c.privateKey as string },
      TTL: ttl,
      contentEncoding: 'aes128gcm',
      urgency: 'high',
    });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(details.headers)) if (k.toLowerCase() !== 'content-length') headers[k.toLowerCase()] = String(v);
    let res: { status: number };
    try {
      res = await post(vetted, details.body as Buffer, headers, this.s.webhookTimeoutMs, this.agents);
    } catch (err) {
      return { outcome: 'retry', status: null, error: `web: ${describeNetworkError(err)}` };
    }
    if (res.status >= 200 && res.status < 300) return { outcome: 'delivered', status: res.status };
    if (res.status === 404 || res.status === 410) return { outcome: 'invalid', status: res.status, error: `web: ${res.status} (subscription gone)` };
    return byStatus(res.status, `web: ${res.status}`);
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/** What a service worker receives (the JSON the page's `push` event decrypts to). */
export function webNotification(n: Notice): Json {
  const alert = typeof n.alert === 'string' ? n.alert : undefined;
  return {
    ...(n.title !== undefined ? { title: n.title } : {}),
    ...(n.body !== undefined || alert !== undefined ? { body: n.body ?? alert } : {}),
    ...(n.icon !== undefined ? { icon: n.icon } : {}),
    ...(n.badge !== undefined ? { badge: n.badge } : {}),
    ...(n.collapseKey !== undefined ? { tag: n.collapseKey } : {}),
    ...(n.type !== undefined ? { type: n.type } : {}),
    data: n.data ?? {},
  };
}

export interface WebSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** A PushSubscription (its toJSON(): endpoint and keys), as an object or JSON text; undefined when malformed. */
export function parseSubscription(value: unknown): WebSubscription | undefined {
  let v = value;
  if (typeof v === 'string') {
    if (v.length > 4096) return undefined;
    try {
      v = JSON.parse(v);
    } catch {
      return undefined;
    }
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as { endpoint?: unknown; keys?: { p256dh?: unknown; auth?: unknown } };
  if (!str(o.endpoint, 2048) || typeof o.keys !== 'object' || o.keys === null) return undefined;
  const { p256dh, auth } = o.keys;
  if (!str(p256dh, 200) || !isP256Point(p256dh) || !str(auth, 100) || b64url(auth)?.length !== 16) return undefined;
  return { endpoint: o.endpoint, keys: { p256dh, auth } };
}

function b64url(s: string): Buffer | undefined {
  return /^[A-Za-z0-9_-]+={0,2}$/.test(s) ? Buffer.from(s, 'base64url') : undefined;
}

/** An uncompressed P-256 point that is on the curve (node:crypto checks it). */
function isP256Point(s: string): boolean {
  const raw = b64url(s);
  if (!raw || raw.length !== 65 || raw[0] !== 4) return false;
  try {
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') }, format: 'jwk' });
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------------------------------------ custom hook

/**
 * The application's own push gateway: every push for a device whose provider has no credentials is POSTed as JSON
 * to this URL, signed like a webhook (Standard Webhooks headers, the application's webhook secret), through the
 * SSRF guard. 2xx delivers; 410 says the token is dead; 429 and 5xx are retried.
 */
export class HookProvider implements PushProvider {
  private readonly agents = createAgents();

  constructor(
    private readonly s: ProviderSettings,
    private readonly clock: Clock,
    private readonly secrets: (appId: string) => Promise<string[]>,
  ) {}

  async checkCredentials(input: Json): Promise<{ data: Json; info: Json }> {
    if (!str(input.url, 2048)) throw bad('hook: url is required');
    await checkWebhookUrl(input.url, { allowPrivate: this.s.webhookAllowPrivateNetworks, field: 'url' });
    return { data: { url: input.url }, info: { url: input.url } };
  }

  async send(appId: string, c: Json, target: PushTarget, n: Notice, deliveryId: string): Promise<PushResult> {
    let vetted: VettedUrl;
    try {
      vetted = await checkWebhookUrl(c.url as string, { allowPrivate: this.s.webhookAllowPrivateNetworks, field: 'url' });
    } catch (err) {
      const message = err instanceof AppError ? err.message : String(err);
      if (/could not be resolved right now/.test(message)) return { outcome: 'retry', status: null, error: `hook: ${message}` };
      return { outcome: 'failed', status: null, error: `hook: refused: ${message}` };
    }
    const body = JSON.stringify({ id: deliveryId, appID: appId, type: target.type, token: target.token, deviceId: target.deviceId, userId: target.userId, payload: n });
    const ts = Math.floor(this.clock.now() / 1000);
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'imkit-server-push/1',
      'webhook-id': deliveryId,
      'webhook-timestamp': String(ts),
      'webhook-signature': signatureHeader(await this.secrets(appId), deliveryId, ts, body),
    };
    let res: { status: number };
    try {
      res = await post(vetted, body, headers, this.s.webhookTimeoutMs, this.agents);
    } catch (err) {
      return { outcome: 'retry', status: null, error: `hook: ${describeNetworkError(err)}` };
    }
    if (res.status >= 200 && res.status < 300) return { outcome: 'delivered', status: res.status };
    if (res.status === 410) return { outcome: 'invalid', status: 410, error: 'hook: 410 (token gone)' };
    return byStatus(res.status, `hook: ${res.status}`);
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/** The four providers of a server (or of a CLI command, which only checks credentials). */
export function createPushProviders(s: ProviderSettings, clock: Clock, hookSecrets: (appId: string) => Promise<string[]>): Record<ProviderName, PushProvider> {
  return { fcm: new FcmProvider(s, clock), apns: new ApnsProvider(s, clock), web: new WebPushProvider(s, clock), hook: new HookProvider(s, clock, hookSecrets) };
}

function digest(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}
