/**
 * Per-socket payload encoding (realtime spec §2.2): after `conf {encoding:"base64"}` (or "custom") every
 * server->client event carries the Base64 of the UTF-8 JSON text as one string; otherwise the plain value.
 */
export type Encoding = 'base64' | 'plain';

export function encodingFrom(conf: unknown): Encoding {
  const e = typeof conf === 'object' && conf !== null ? (conf as { encoding?: unknown }).encoding : undefined;
  return e === 'base64' || e === 'custom' ? 'base64' : 'plain';
}

export function encode(payload: unknown, encoding: Encoding): unknown {
  return encoding === 'base64' ? Buffer.from(JSON.stringify(payload), 'utf8').toString('base64') : payload;
}

/** Text the client may send raw or base64 (typing text): decode when it round-trips, else keep it. */
export function maybeBase64(text: unknown): unknown {
  if (typeof text !== 'string' || text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return text;
  const decoded = Buffer.from(text, 'base64').toString('utf8');
  return Buffer.from(decoded, 'utf8').toString('base64') === text ? decoded : text;
}
