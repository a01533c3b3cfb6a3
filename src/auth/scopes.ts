/**
 * The scopes an API key may be limited to (docs/security.md), exactly these strings. A key without scopes has
 * every permission (IMKIT's keys); a key with scopes may call a route only when it holds the route's scope, which
 * the route declares (RouteDef.scope). Routes that declare none (managing API keys) need a key without scopes.
 */
export const SCOPES = [
  'users:read', 'users:write', 'tokens:write',
  'rooms:read', 'rooms:write',
  'messages:read', 'messages:write',
  'moderation:write',
  'config:read', 'config:write',
  'webhooks:write', 'push:write',
  'stats:read', 'audit:read',
] as const;

export type Scope = (typeof SCOPES)[number];

const KNOWN: ReadonlySet<string> = new Set(SCOPES);

export function isScope(value: string): value is Scope {
  return KNOWN.has(value);
}

/** Whether a key with these scopes (null: unscoped, full permissions) may call a route that needs `need`. */
export function scopeAllows(scopes: readonly string[] | null, need: Scope | undefined): boolean {
  if (scopes === null) return true;
  return need !== undefined && scopes.includes(need);
}
