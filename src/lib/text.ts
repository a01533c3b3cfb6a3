/**
 * Text as PostgreSQL can store it: a text column refuses the NUL character ("invalid byte sequence for encoding
 * UTF8: 0x00") where SQLite keeps it. For text a caller supplied that is recorded rather than looked up (the audit
 * log's route and target), NUL becomes U+FFFD on both dialects, so the record is the same everywhere.
 */
export function storableText(s: string): string;
export function storableText(s: string | undefined): string | undefined;
export function storableText(s: string | undefined): string | undefined {
  return s === undefined || !s.includes('\u0000') ? s : s.replaceAll('\u0000', '\ufffd');
}
