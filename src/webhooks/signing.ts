import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** A Standard Webhooks secret: "whsec_" and the base64 of 32 random bytes (the key the HMAC uses). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * The `webhook-signature` header of one request: "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per live secret,
 * separated by spaces (two during a rotation, so a receiver may check with either). The HMAC is the
 * `standardwebhooks` package's, the scheme's reference implementation for JavaScript.
 */
export function signatureHeader(secrets: string[], id: string, timestampSec: number, body: string): string {
  return secrets.map((s) => new Webhook(s).sign(id, new Date(timestampSec * 1000), body)).join(' ');
}

/** The secrets that sign now: the current one, and the previous one while it has not expired. */
export function liveSecrets(row: { secret: string; previous_secret: string | null; previous_expires_at: number | null }, now: number): string[] {
  return row.previous_secret !== null && row.previous_expires_at !== null && row.previous_expires_at > now ? [row.secret, row.previous_secret] : [row.secret];
}
