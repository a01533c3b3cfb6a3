import { createHash, randomBytes } from 'node:crypto';

/** SHA-256 hex digest: how every API key, imported client key and user token is stored. */
export function digest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Last four characters, the only part of a secret that is ever shown again. */
export function last4(secret: string): string {
  return secret.slice(-4);
}

/**
 * API keys look like the seed's example: the Base64 of the Base64 text of 32 random bytes
 * ("MjJZcFlIRGFRbElRbERTdlZMQ0xMbzJNUHpGZlZtOWpZcHh3MnZ1QnJtaz0=").
 */
export function generateApiKey(): string {
  return Buffer.from(randomBytes(32).toString('base64'), 'utf8').toString('base64');
}

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}
