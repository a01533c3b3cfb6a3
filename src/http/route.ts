import type { Readable } from 'node:stream';
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
  /** The body is multipart/form-data, read part by part through `RouteRequest.parts`; any other body is 415. */
  multipart?: boolean;
  /**
   * A request whose query carries `signature` is let through without credentials (`actor` undefined): the handler
   * checks the signed URL instead (file downloads, docs/files.md).
   */
  signedAccess?: boolean;
  handler(req: RouteRequest): Promise<unknown>;
  /**
   * A route that sends a message, retried with the Idempotency-Key of a first try that stored its message but lost
   * its answer (a crash between the two): the answer for that message, as `handler` gave it (docs/reliability.md).
   * With it, the message a request stores records its id on the key in its own transaction.
   */
  recoverSent?(req: RouteRequest, messageId: string): Promise<unknown>;
}

/** One part of a multipart body, in the order sent. A file part's bytes are still arriving: read or resume them. */
export type Part =
  | { type: 'field'; name: string; value: string; truncated: boolean }
  | { type: 'file'; name: string; filename: string | undefined; mimeType: string | undefined; stream: Readable };

export interface RouteRequest {
  /** Undefined only on public routes. */
  actor: Actor;
  body: any;
  query: any;
  params: any;
  ip: string;
  headers: Record<string, string | string[] | undefined>;
  method: string;
  /** scheme://host[:port][/path] of this server as the client reached it (IMKIT_PUBLIC_URL when set). */
  origin: string;
  /** Set on multipart routes: the parts of the body. */
  parts?: AsyncIterable<Part>;
}

/** An answer that is a file: these headers and the bytes as they stream (not wrapped in the envelope). */
export class FileReply {
  constructor(
    readonly headers: Record<string, string | number>,
    readonly body: Readable,
  ) {}
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
