/** A MIME type (type/subtype) or a type/* pattern, lower case. */
const PATTERN = /^[a-z0-9!#$&^_.+-]+\/(\*|[a-z0-9!#$&^_.+-]+)$/;

/**
 * A comma-separated list of MIME types and type/* patterns (`*` or `*\/*` alone: any), lower-cased; throws an Error
 * naming the first entry that is neither.
 */
export function parseMimeList(raw: string): string[] {
  const list = raw.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (list.length === 0) throw new Error('must be * or a comma-separated list of MIME types such as image/*,video/mp4,application/pdf');
  if (list.includes('*') || list.includes('*/*')) return ['*/*'];
  for (const t of list) if (!PATTERN.test(t)) throw new Error(`"${t.slice(0, 100)}" is not a MIME type or type/* pattern`);
  return list;
}

/** Whether a MIME type (its parameters ignored) is one of the patterns. */
export function mimeAllowed(type: string, patterns: readonly string[]): boolean {
  const t = type.split(';')[0]!.trim().toLowerCase();
  return patterns.some((p) => p === '*/*' || p === t || (p.endsWith('/*') && t.startsWith(p.slice(0, -1))));
}

/** A declared content type when it is a well-formed type/subtype, else application/octet-stream. */
export function cleanMimeType(declared: string | undefined): string {
  const t = (declared ?? '').split(';')[0]!.trim().toLowerCase();
  return /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(t) && t.length <= 255 ? t : 'application/octet-stream';
}
