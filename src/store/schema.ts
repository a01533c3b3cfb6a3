import type { ColumnType, Generated } from 'kysely';

/** Times are epoch milliseconds; booleans are 0/1 integers; JSON is text. The same on SQLite and Postgres. */
type Ms = number;

export interface AppsTable {
  id: string;
  name: string;
  rate_limit_per_minute: number | null;
  /** HMAC secret that signs this application's client key and user tokens; never leaves the server. */
  signing_secret: string;
  created_at: Ms;
  updated_at: Ms;
}

export interface AppDomainsTable {
  domain: string;
  app_id: string;
}

export interface ApiKeysTable {
  id: string;
  app_id: string;
  digest: string;
  last4: string;
  created_at: Ms;
  expires_at: Ms | null;
  revoked_at: Ms | null;
}

export interface ClientKeysTable {
  id: string;
  app_id: string;
  digest: string;
  last4: string;
  /** 1 when this server signed it (then the JWT signature is checked too), 0 when imported. */
  issued: number;
  created_at: Ms;
  revoked_at: Ms | null;
}

export interface UsersTable {
  app_id: string;
  id: string;
  nickname: string | null;
  avatar_url: string | null;
  description: string | null;
  is_robot: number;
  /** Custom fields the caller sent (JSON object text). */
  extra: string;
  address: string | null;
  user_agent: string | null;
  last_login_at: Ms | null;
  created_at: Ms;
  updated_at: Ms;
}

export interface UserTokensTable {
  app_id: string;
  digest: string;
  user_id: string;
  /** 'issued' (a JWT this server signed) or 'custom' (bound by the customer's backend). */
  kind: string;
  last4: string;
  created_at: Ms;
  expires_at: Ms | null;
}

export interface Database {
  apps: AppsTable;
  app_domains: AppDomainsTable;
  api_keys: ApiKeysTable;
  client_keys: ClientKeysTable;
  users: UsersTable;
  user_tokens: UserTokensTable;
}

// Re-exported so repositories can name generated columns if a later table needs them.
export type { ColumnType, Generated };
