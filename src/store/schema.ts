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
  /** The first 10 hex characters of the key's SHA-256 digest: what lists and logs show (migration 0017). */
  fingerprint: string | null;
  name: string | null;
  /** JSON array of scopes; null: full permissions (IMKIT's keys). */
  scopes: string | null;
  /** JSON array of CIDRs the key may be used from; null: any address. */
  allow_ips: string | null;
  /** Requests per minute of this key; null: the application's limit. */
  rate_limit_per_minute: number | null;
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

export interface RoomsTable {
  app_id: string;
  id: string;
  name: string | null;
  cover: string | null;
  description: string | null;
  /** 'direct' or 'group'. */
  room_type: string;
  room_tags: string;
  webhook: string | null;
  bot_mode: number;
  bot_state: string | null;
  encrypted: number;
  ext_params: string | null;
  /** 1 active, 0 frozen. */
  status: number;
  /** 1 open for join and invitations, 0 closed. */
  opening: number;
  owner: string | null;
  extra: string;
  last_message_id: string | null;
  /** How many messages the room holds (history's totalCount), kept by every path that adds or deletes messages. */
  message_count: number;
  created_at: Ms;
  updated_at: Ms;
}

export interface RoomTagsTable {
  app_id: string;
  room_id: string;
  tag: string;
}

export interface RoomMembersTable {
  app_id: string;
  room_id: string;
  user_id: string;
  /** 'admin' (a manager) or 'member'; the owner is rooms.owner. */
  role: string;
  badge: number;
  last_read: string | null;
  properties: string;
  joined_at: Ms;
  /** Set when this row exists because the user is in a user group that is a member: the group's id. */
  via: string | null;
}

export interface UserGroupsTable {
  app_id: string;
  id: string;
  nickname: string;
  avatar_url: string | null;
  created_at: Ms;
  updated_at: Ms;
}

export interface GroupMembersTable {
  app_id: string;
  group_id: string;
  user_id: string;
}

export interface MessagesTable {
  app_id: string;
  id: string;
  room_id: string;
  sender_id: string | null;
  message_type: string;
  /** The message value as JSON (any JSON value). */
  message: string;
  /** Every other field the sender sent (media, extra, mentions, member...), JSON object text. */
  fields: string;
  reply_id: string | null;
  pinned: number;
  edited_at: Ms | null;
  message_time: Ms;
  created_at: Ms;
  updated_at: Ms;
}

export interface MessageReactionsTable {
  app_id: string;
  message_id: string;
  user_id: string;
  reaction: string;
  created_at: Ms;
}

export interface UserDeletedMessagesTable {
  app_id: string;
  user_id: string;
  room_id: string;
  message_id: string;
  created_at: Ms;
}

export interface RoomPrefsTable {
  app_id: string;
  user_id: string;
  room_id: string;
  /** '' for the room's own preference, or a room tag for /roomPrefs/:id/group/:tag. */
  scope: string;
  /** {tags, tagColors, folder, hidden, sticky} as JSON. */
  data: string;
  muted: number;
  updated_at: Ms;
}

export interface UserPrefsTable {
  app_id: string;
  user_id: string;
  key: string;
  data: string;
  updated_at: Ms;
}

export interface InvitationsTable {
  app_id: string;
  room_id: string;
  invitee: string;
  inviter: string | null;
  created_at: Ms;
}

export interface AppConfigTable {
  app_id: string;
  /** A top-level config key (announcement, censorship, featureFlags, anything else). */
  key: string;
  /** The value as JSON text. */
  value: string;
  updated_at: Ms;
}

export interface AppConfigVersionsTable {
  app_id: string;
  version: number;
}

export interface UserBlocksTable {
  app_id: string;
  blocker: string;
  blockee: string;
  created_at: Ms;
  updated_at: Ms;
}

export interface RoomBansTable {
  app_id: string;
  room_id: string;
  user_id: string;
  /** Who banned (null: the platform administrator without IM-CLIENT-ID). */
  banned_by: string | null;
  /** The ban ends at this time; null: until lifted. */
  unblock_at: Ms | null;
  created_at: Ms;
  updated_at: Ms;
}

export interface BatchJobsTable {
  app_id: string;
  id: string;
  sender: string | null;
  /** The message body to send, with $placeholders$ (JSON). */
  template: string;
  total: number;
  /** 'running' or 'done'. */
  status: string;
  created_at: Ms;
  updated_at: Ms;
  finished_at: Ms | null;
}

export interface BatchItemsTable {
  app_id: string;
  batch_id: string;
  idx: number;
  /** The recipient's para: {room} or {receiver} and placeholder values (JSON). */
  params: string;
  /** 'pending', 'claimed', 'sent' or 'failed'. */
  status: string;
  claimed_by: string | null;
  claimed_at: Ms | null;
  message_id: string | null;
  error: string | null;
}

/** Requests made with one API key during one minute (`minute`: its start, epoch ms); see src/monitoring/usage.ts. */
export interface ApiKeyUsageTable {
  app_id: string;
  key_id: string;
  minute: Ms;
  requests: number;
  /** Of `requests`, those refused by the key's rate limit (429). */
  refused: number;
  last_used_at: Ms;
  last_address: string;
}

export interface WebhookEndpointsTable {
  app_id: string;
  id: string;
  url: string;
  /** JSON array of event types; ["*"] is every type. */
  events: string;
  key: string | null;
  description: string | null;
  secret: string;
  previous_secret: string | null;
  previous_expires_at: Ms | null;
  created_at: Ms;
  updated_at: Ms;
}

export interface AppWebhookSecretsTable {
  app_id: string;
  secret: string;
  previous_secret: string | null;
  previous_expires_at: Ms | null;
  created_at: Ms;
}

export interface WebhookEventsTable {
  id: string;
  app_id: string;
  type: string;
  room_id: string | null;
  /** JSON: the event's facts (see webhooks/outbox.ts). */
  data: string;
  state: 'new' | 'done';
  created_at: Ms;
  /** The dispatcher rendering it (PostgreSQL, several nodes), and since when; null while nobody has it. */
  claimed_by?: string | null;
  claimed_at?: Ms | null;
}

/** Periodic work of a cluster done by one node per period (migration 0027). */
export interface LeasesTable {
  name: string;
  holder: string;
  expires_at: Ms;
}

export type DeliveryStatus = 'pending' | 'sending' | 'delivered' | 'failed' | 'refused';

export interface WebhookDeliveriesTable {
  id: string;
  app_id: string;
  event_id: string;
  event_type: string;
  /**
   * 'room': a room's `webhook` (IMKIT payload, bot replies); 'endpoint': an application-level endpoint; 'push': a
   * push notification to one device (docs/push.md), `payload` the notice, `device_id` the device.
   */
  kind: 'room' | 'endpoint' | 'push';
  endpoint_id: string | null;
  room_id: string | null;
  target: string;
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Ms | null;
  last_status: number | null;
  last_error: string | null;
  claimed_by: string | null;
  claimed_at: Ms | null;
  created_at: Ms;
  updated_at: Ms;
  /** Push deliveries (migration 0022): the message notified of (null for push2clients / push2tokens) and the device. */
  message_id: string | null;
  device_id: string | null;
}

/** A device registered for push notifications (POST /me/subscribe, docs/push.md). */
export interface PushDevicesTable {
  app_id: string;
  id: string;
  user_id: string;
  /** As subscribed: ios, apns, android, fcm or web. */
  type: string;
  /** Who delivers to it: apns, fcm or web. */
  provider: 'apns' | 'fcm' | 'web';
  /** The client's own name for the device (SDKs send one), or null. */
  device_id: string | null;
  /** The provider's token; for web the subscription object as JSON. */
  token: string;
  /** SHA-256 (hex) of `token`: unique per application and provider. */
  token_key: string;
  created_at: Ms;
  updated_at: Ms;
}

/** An application's credentials for one push provider; `data` is secret (never listed), `info` is what may be shown. */
export interface PushCredentialsTable {
  app_id: string;
  provider: 'apns' | 'fcm' | 'web' | 'hook';
  data: string;
  info: string;
  created_at: Ms;
  updated_at: Ms;
}

export interface AuditLogTable {
  app_id: string;
  id: string;
  at: Ms;
  actor_type: 'apiKey' | 'operator' | 'system';
  actor_id: string;
  actor_fingerprint: string | null;
  actor_last4: string | null;
  ip: string | null;
  action: string;
  route: string | null;
  target: string | null;
  outcome: 'ok' | 'denied' | 'error';
}

/** imkit-server import: what was copied from a source server, per entity (migration 0019). */
export interface ImportCheckpointsTable {
  app_id: string;
  source: string;
  entity: string;
  state: string;
  updated_at: Ms;
}

export interface ImportIdsTable {
  app_id: string;
  source: string;
  /** 'user', 'message', 'config' or 'webhook'. */
  kind: string;
  /** A message's room; '' for the other kinds. */
  scope: string;
  id: string;
}

export interface ApiKeyAddressesTable {
  app_id: string;
  key_id: string;
  address: string;
  first_seen_at: Ms;
}

export interface KeyAlertsTable {
  /** `*` for an alert of the whole server (invalid keys name no application). */
  app_id: string;
  id: string;
  at: Ms;
  kind: string;
  key_id: string | null;
  key_fingerprint: string | null;
  key_last4: string | null;
  ip: string | null;
  /** JSON object: what the alert measured (never a secret). */
  detail: string;
  acknowledged_at: Ms | null;
  acknowledged_by: string | null;
}

export interface FilesTable {
  app_id: string;
  id: string;
  bucket: string;
  filename: string;
  mime_type: string;
  size: number;
  md5: string;
  room_id: string | null;
  uploader_id: string | null;
  /** JSON object: the upload's `extra` as sent. */
  extra: string;
  storage_key: string;
  width: number | null;
  height: number | null;
  duration_ms: number | null;
  thumbnail_id: string | null;
  thumbnail_of: string | null;
  created_at: Ms;
}

export interface FileUrlKeysTable {
  app_id: string;
  secret: string;
  created_at: Ms;
}

/** Dashboard operators, their sessions, the first-run setup token (migration 0023). */
export interface OperatorsTable {
  id: string;
  email: string;
  password_hash: string;
  created_at: Ms;
  updated_at: Ms;
  last_login_at: Ms | null;
  last_login_ip: string | null;
}

export interface OperatorSessionsTable {
  digest: string;
  operator_id: string;
  created_at: Ms;
  expires_at: Ms;
  ip: string | null;
}

export interface OperatorSetupTokensTable {
  digest: string;
  created_at: Ms;
  expires_at: Ms;
}

export interface IdempotencyKeysTable {
  app_id: string;
  subject: string;
  key: string;
  fingerprint: string;
  /** Null while the first request with this key runs. */
  status: number | null;
  body: string | null;
  created_at: Ms;
  /**
   * The message the first request stored, written in that message's own transaction: a retry finds it even when
   * the answer was never written (a crash between the two), and is answered with it instead of sending again.
   */
  message_id: string | null;
}

export interface Database {
  leases: LeasesTable;
  idempotency_keys: IdempotencyKeysTable;
  api_key_addresses: ApiKeyAddressesTable;
  key_alerts: KeyAlertsTable;
  files: FilesTable;
  file_url_keys: FileUrlKeysTable;
  operators: OperatorsTable;
  operator_sessions: OperatorSessionsTable;
  operator_setup_tokens: OperatorSetupTokensTable;
  audit_log: AuditLogTable;
  import_checkpoints: ImportCheckpointsTable;
  import_ids: ImportIdsTable;
  webhook_endpoints: WebhookEndpointsTable;
  app_webhook_secrets: AppWebhookSecretsTable;
  webhook_events: WebhookEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  push_devices: PushDevicesTable;
  push_credentials: PushCredentialsTable;
  api_key_usage: ApiKeyUsageTable;
  apps: AppsTable;
  app_domains: AppDomainsTable;
  api_keys: ApiKeysTable;
  client_keys: ClientKeysTable;
  users: UsersTable;
  user_tokens: UserTokensTable;
  rooms: RoomsTable;
  room_tags: RoomTagsTable;
  room_members: RoomMembersTable;
  messages: MessagesTable;
  message_reactions: MessageReactionsTable;
  user_deleted_messages: UserDeletedMessagesTable;
  room_prefs: RoomPrefsTable;
  user_prefs: UserPrefsTable;
  invitations: InvitationsTable;
  app_config: AppConfigTable;
  app_config_versions: AppConfigVersionsTable;
  user_blocks: UserBlocksTable;
  room_bans: RoomBansTable;
  batch_jobs: BatchJobsTable;
  batch_items: BatchItemsTable;
  user_groups: UserGroupsTable;
  group_members: GroupMembersTable;
}
