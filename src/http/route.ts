import type { Actor, AuthMode } from '../auth/guard.js';
import type { Scope } from '../auth/scopes.js';

/**
 * A route as this project declares it: who may call it, its JSON schemas (validation and docs from one
 * source) and a handler that calls a service and returns the `result` of the success envelope.
 */
export interface RouteDef {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  auth: AuthMode | 'public';
  /**
   * What an API key limited to scopes must hold to call this route (docs/security.md); every non-public route
   * declares one (a test checks). Unscoped keys, user tokens and public routes are not concerned.
   */
  scope?: Scope;
  summary: string;
  /** A one-line curl example for docs/api.md ($BASE, $API_KEY, $CLIENT_KEY, $TOKEN are substituted by the reader). */
  example?: string;
  schema?: { body?: object; querystring?: object; params?: object };
  /** Send the handler's return value as is (no success envelope) with this content type. */
  raw?: { contentType: string };
  handler(req: RouteRequest): Promise<unknown>;
}

export interface RouteRequest {
  /** Undefined only on public routes. */
  actor: Actor;
  body: any;
  query: any;
  params: any;
  ip: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * A result whose envelope carries a sentence instead of "OK" as RM (the IMKIT pages do this for deletions:
 * "Message deleted successfully").
 */
export class Described {
  constructor(
    readonly message: string,
    readonly result: unknown,
  ) {}
}

export function defineRoutes(routes: RouteDef[]): RouteDef[] {
  return routes;
}
