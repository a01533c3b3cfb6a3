import { RE2JS } from 're2js';

/**
 * Regular expressions from users run in RE2 (re2js, a port of RE2 to JavaScript): matching takes time linear in
 * the text whatever the pattern, where V8's backtracking engine can take exponential time on a pattern such as
 * a*a*a*a*a*a*a*a*b (21 s against 40 characters, on the event loop every tenant shares).
 */
const cache = new Map<string, RE2JS>();

/** The compiled pattern (flags: '' or 'i'); throws RE2's syntax error for what RE2 does not take. */
export function compileRe2(pattern: string, flags: string): RE2JS {
  const key = `${flags}/${pattern}`;
  let re = cache.get(key);
  if (!re) {
    re = RE2JS.compile(pattern, flags.includes('i') ? RE2JS.CASE_INSENSITIVE : 0);
    if (cache.size >= 100) cache.delete(cache.keys().next().value!);
    cache.set(key, re);
  }
  return re;
}
