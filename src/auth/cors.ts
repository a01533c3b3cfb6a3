import type { Config } from '../config.js';
import type { Guard } from './guard.js';
import { hostnameOf, patternsFor } from './guard.js';

/** The callback form both @fastify/cors and Socket.IO (the `cors` package) take for a dynamic origin. */
export type OriginCallback = (err: Error | null, allow: boolean) => void;

/**
 * The one answer to "may a page on this Origin read our responses", for HTTP and Socket.IO alike: yes when the
 * Origin's host is a domain of an application (an entry `*.example.com` covers its sub-domains), else when
 * IMKIT_CORS_ORIGINS allows it (`*`, or the exact origin). No Origin: no CORS headers (not a browser).
 *
 * CORS only decides what a browser lets a page read; it is not what keeps a client key on its domains (the guard's
 * domain binding does that, from the same Origin). Credentials are never allowed: the API authenticates with
 * headers, not cookies, so no page needs a browser's credentials sent along, and `*` stays safe as a default.
 */
export function originDecision(guard: Guard, allowed: Config['corsOrigins']): (origin: string | undefined) => Promise<boolean> {
  const listed = new Set(allowed === '*' ? [] : allowed);
  return async (origin) => {
    if (origin === undefined || origin === '') return false;
    if (allowed === '*') return true;
    const name = hostnameOf(origin, true);
    if (name === undefined) return false;
    if (listed.has(normalized(origin))) return true;
    const patterns = patternsFor(name);
    const domains = await guard.credentials.domainsFor(patterns);
    return patterns.some((p) => domains.ownerOf(p) !== undefined);
  };
}

/** Declared with method syntax so that both libraries' callback types are accepted for `origin`. */
export interface CorsOptions {
  origin(origin: string | undefined, cb: OriginCallback): void;
  credentials: false;
}

/** Options for @fastify/cors and for Socket.IO's `cors`, both deciding with `originDecision`. */
export function corsOptions(guard: Guard, config: Pick<Config, 'corsOrigins'>): CorsOptions {
  const decide = originDecision(guard, config.corsOrigins);
  return {
    origin(origin, cb) {
      // A store error while reading the domains answers "not allowed": the request itself still runs (and fails
      // or not on its own), only the browser is not told it may read the answer.
      decide(origin).then(
        (allow) => cb(null, allow),
        () => cb(null, false),
      );
    },
    credentials: false,
  };
}

function normalized(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin;
  }
}
