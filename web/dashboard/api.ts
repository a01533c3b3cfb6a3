import { request } from '../common';

/** The session's CSRF token, sent with every call that changes something (docs/dashboard.md). */
let csrfToken = '';
export function setCsrf(token: string): void {
  csrfToken = token;
}

/** A dashboard call (/dashboard/api/...) or an admin route acting on `app` (X-IMKIT-APP) with the session cookie. */
export function api<T = any>(method: string, url: string, body?: unknown, app?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  if (app !== undefined) headers['X-IMKIT-APP'] = app;
  return request<T>(method, url, { body, headers });
}

export interface Operator {
  id: string;
  email: string;
}
