import fs from 'node:fs';
import path from 'node:path';
import { parseTrustedProxies, type TrustedProxies } from './lib/client-address.js';
import { parseDuration } from './lib/duration.js';
import { APP_ID_PATTERN } from './lib/ids.js';
import { parseMimeList } from './lib/mime.js';

/** Browser origins allowed by IMKIT_CORS_ORIGINS, besides the applications' domains: any, or these exact origins. */
export type CorsOrigins = '*' | string[];

/**
 * Every setting of the server, in one table: its environment variable, its flag, its default and how it is
 * checked. `--help`, docs/configuration.md and the parser all read this table, so they cannot drift apart.
 */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  databaseSchema: string | undefined;
  /** Cluster mode (docs/cluster.md): the Redis that carries events, presence and rate-limit counters between nodes. */
  redisUrl: string | undefined;
  /** Prefix of every Redis channel and key this cluster uses, so several clusters (or tests) can share one Redis. */
  clusterPrefix: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Bytes written for one socket that may wait unread before the socket is closed (a client that stopped reading). */
  socketSendBufferBytes: number;
  /** How long a graceful shutdown (SIGTERM, SIGINT) may take before the process exits anyway (ms). */
  shutdownTimeoutMs: number;
  /** auto: readable lines when stdout is a terminal, JSON otherwise; json; pretty. */
  logFormat: 'auto' | 'json' | 'pretty';
  appId: string | undefined;
  apiKey: string | undefined;
  clientKey: string | undefined;
  rateLimitPerMinute: number;
  userRateLimitPerMinute: number;
  authFailuresPerMinute: number;
  corsOrigins: CorsOrigins;
  tokenTtlMs: number;
  bodyLimitBytes: number;
  /** A request's headers must have arrived this long after its first byte (ms), else 408 and the connection closes. */
  headersTimeoutMs: number;
  /** A request, headers and body, must have arrived this long after its first byte (ms), else 408 and the connection closes. */
  requestTimeoutMs: number;
  /** An idle keep-alive HTTP connection is closed after this long (ms). */
  keepAliveTimeoutMs: number;
  trustProxy: TrustedProxies;
  /** IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS: webhooks may reach loopback, private, link-local, CGNAT and unique-local addresses. */
  webhookAllowPrivateNetworks: boolean;
  /** Delays between a webhook delivery's attempts (ms): one more attempt after each; then it is marked failed. */
  webhookRetrySchedule: number[];
  /** Longest a webhook request may take, connecting included, before the attempt counts as failed. */
  webhookTimeoutMs: number;
  /** Requests in flight to one webhook target at once. */
  webhookConcurrency: number;
  /** FCM HTTP v1 base URL (messages:send is under it). */
  pushFcmBaseUrl: string;
  /** The OAuth2 token endpoint FCM access tokens come from (also the `aud` of the service account's JWT). */
  pushFcmTokenUrl: string;
  /** APNs base URL (HTTP/2). */
  pushApnsBaseUrl: string;
  /** A PEM file of a CA to trust for APNs besides the system's (a test server); undefined: the system's only. */
  pushApnsCaFile: string | undefined;
  maxJsonDepth: number;
  statementTimeoutMs: number;
  maxMessageBytes: number;
  maxRoomMembers: number;
  maxQueuedMessages: number;
  socketLoginTimeoutMs: number;
  maxSocketsPerIp: number;
  maxSockets: number | undefined;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** The one application whose tokens the legacy socket `auth` event accepts; undefined: the event is refused. */
  legacySocketAuth: string | undefined;
  socketEventsPer10s: number;
  /** The bearer token GET /metrics requires; undefined: /metrics is off (401) and no metric is collected. */
  metricsToken: string | undefined;
  /** How long audit log entries are kept (ms). */
  auditRetentionMs: number;
  /** Key anomaly alerts (docs/security.md): a minute above this many times a key's baseline is a rate jump ... */
  alertRateFactor: number;
  /** ... when it is also above this many requests. */
  alertRateMin: number;
  /** Invalid API keys from one address within 10 minutes that raise an alert. */
  alertInvalidKeys: number;
  /** Where uploaded files' bytes are kept (docs/files.md). */
  fileStorage: 'local' | 's3';
  /** The local storage's directory; undefined: `<dataDir>/files`. */
  fileDir: string | undefined;
  /** Largest upload (bytes); an application may lower it (`featureFlags.maxFileSize`). */
  fileMaxBytes: number;
  /** MIME types uploads may have: types and type-wide patterns (image/*); any type when it holds the pattern for any. */
  fileTypes: string[];
  /** How long a signed file URL works (ms). */
  fileUrlTtlMs: number;
  /** Images up to this size get dimensions and a thumbnail (they are decoded in memory). */
  imageMaxBytes: number;
  /** Images with more pixels than this are not decoded (decompression bombs). */
  imageMaxPixels: number;
  /** The server's address as clients reach it (scheme://host[:port][/path]), for signed file URLs; undefined: from each request. */
  publicUrl: string | undefined;
  s3Bucket: string | undefined;
  s3Region: string;
  s3Endpoint: string | undefined;
  s3AccessKeyId: string | undefined;
  s3SecretAccessKey: string | undefined;
  s3ForcePathStyle: boolean;
  /** IMKIT_ADMIN_EMAIL + IMKIT_ADMIN_PASSWORD: a dashboard operator made sure of at every start. */
  adminEmail: string | undefined;
  adminPassword: string | undefined;
  /** How long a dashboard login lasts (ms). */
  operatorSessionTtlMs: number;
}

interface Setting {
  key: keyof Config;
  env: string;
  flag: string;
  default: string | undefined;
  help: string;
  secret?: boolean;
  parse(raw: string): unknown;
}

class ConfigError extends Error {}

const integer = (min: number, max: number) => (raw: string) => {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return n;
};
const text = (raw: string) => raw;
const nonEmpty = (raw: string) => {
  if (raw.trim() === '') throw new ConfigError('must not be empty');
  return raw;
};
const duration = (raw: string) => {
  const ms = parseDuration(raw);
  if (ms === undefined || ms <= 0) throw new ConfigError(`must be a duration such as 30m, 12h or 7d, got "${raw}"`);
  return ms;
};
const durationBetween = (min: number, max: number) => (raw: string) => {
  const ms = parseDuration(raw);
  if (ms === undefined || ms < min || ms > max) throw new ConfigError(`must be a duration from ${formatMs(min)} to ${formatMs(max)} such as 30s or 5m, got "${raw}"`);
  return ms;
};
const formatMs = (ms: number) => (ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`);
const bytes = (raw: string) => {
  const m = /^(\d+)\s*(b|kb|mb)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`must be a size such as 512kb or 1mb, got "${raw}"`);
  const n = Number(m[1]) * ({ b: 1, kb: 1024, mb: 1024 * 1024 }[(m[2] ?? 'b').toLowerCase() as 'b'] ?? 1);
  if (n < 1024 || n > 64 * 1024 * 1024) throw new ConfigError('must be between 1kb and 64mb');
  return n;
};
/** An http(s) URL without credentials, query or fragment (a provider's base URL, set by the operator). */
const httpUrl = (raw: string) => {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new ConfigError(`must be an http(s) URL, got "${raw}"`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash) throw new ConfigError(`must be an http(s) URL without credentials, query or fragment, got "${raw}"`);
  return url.toString().replace(/\/+$/, '');
};
/** A size with an optional unit (b, kb, mb, gb) between `min` and `max` bytes. */
const size = (min: number, max: number) => (raw: string) => {
  const m = /^(\d+)\s*(b|kb|mb|gb)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`must be a size such as 512kb, 100mb or 2gb, got "${raw}"`);
  const n = Number(m[1]) * { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  if (n < min || n > max) throw new ConfigError(`must be between ${min} bytes and ${max / 1024 ** 3}gb`);
  return n;
};
/** A comma-separated list of MIME types or type/* patterns, or * (any). */
const mimePatterns = (raw: string) => {
  try {
    return parseMimeList(raw);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
};
const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off', ''];
const bool = (raw: string) => {
  const v = raw.trim().toLowerCase();
  if (TRUE_WORDS.includes(v)) return true;
  if (FALSE_WORDS.includes(v)) return false;
  throw new ConfigError(`must be true or false, got "${raw}"`);
};
/** '*', 'none' (only the applications' domains) or a list of origins, each kept as `new URL(o).origin` (scheme://host[:port]). */
const parseCorsOrigins = (raw: string): CorsOrigins => {
  const v = raw.trim();
  if (v === '*') return '*';
  if (v.toLowerCase() === 'none') return [];
  return v.split(',').map((s) => s.trim()).filter(Boolean).map((o) => {
    let url: URL;
    try {
      url = new URL(o);
    } catch {
      throw new ConfigError(`must be *, none or a comma-separated list of origins such as https://app.example.com, got "${o}"`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search || url.hash || url.username) {
      throw new ConfigError(`"${o}" is not an origin (scheme://host[:port], no path), e.g. https://app.example.com`);
    }
    if (url.hostname.includes('*')) {
      throw new ConfigError(`"${o}": list exact origins here; a wildcard (*.example.com) belongs among an application's domains, which are allowed anyway`);
    }
    return url.origin;
  });
};
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export const SETTINGS: Setting[] = [
  { key: 'port', env: 'PORT', flag: 'port', default: '3000', help: 'HTTP port to listen on', parse: integer(0, 65535) },
  { key: 'host', env: 'HOST', flag: 'host', default: '0.0.0.0', help: 'address to listen on', parse: nonEmpty },
  {
    key: 'dataDir', env: 'IMKIT_DATA_DIR', flag: 'data-dir', default: './data',
    help: 'directory holding the embedded SQLite database (imkit.sqlite)', parse: nonEmpty,
  },
  {
    key: 'databaseUrl', env: 'DATABASE_URL', flag: 'database-url', default: undefined, secret: true,
    help: 'postgres://user:pass@host:5432/db to use PostgreSQL instead of SQLite',
    parse: (raw) => {
      if (!/^postgres(ql)?:\/\//.test(raw)) throw new ConfigError('must start with postgres:// or postgresql://');
      return raw;
    },
  },
  {
    key: 'databaseSchema', env: 'IMKIT_DATABASE_SCHEMA', flag: 'database-schema', default: undefined,
    help: 'PostgreSQL schema to keep the tables in (default: the search_path, usually public)',
    parse: (raw) => {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw)) throw new ConfigError('must be a lower-case SQL identifier');
      return raw;
    },
  },
  {
    key: 'redisUrl', env: 'REDIS_URL', flag: 'redis-url', default: undefined, secret: true,
    help: 'redis://host:6379 turns cluster mode on (several nodes on one PostgreSQL; needs DATABASE_URL), docs/cluster.md',
    parse: (raw) => {
      if (!/^rediss?:\/\/[^\s]+$/.test(raw)) throw new ConfigError('must start with redis:// or rediss://');
      return raw;
    },
  },
  {
    key: 'clusterPrefix', env: 'IMKIT_CLUSTER_PREFIX', flag: 'cluster-prefix', default: 'imkit',
    help: 'prefix of the Redis channels and keys of this cluster (nodes with the same REDIS_URL and prefix form one cluster)',
    parse: (raw) => {
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) throw new ConfigError('must be 1 to 64 letters, digits, "_", "." or "-"');
      return raw;
    },
  },
  {
    key: 'shutdownTimeoutMs', env: 'IMKIT_SHUTDOWN_TIMEOUT', flag: 'shutdown-timeout', default: '10s',
    help: 'how long a graceful shutdown (SIGTERM or SIGINT: stop accepting, finish requests, store queued messages, close sockets so clients reconnect) may take before the process exits anyway, e.g. 10s or 1m',
    parse: (raw) => {
      const ms = parseDuration(raw);
      if (ms === undefined || ms < 1000 || ms > 3_600_000) throw new ConfigError(`must be a duration from 1s to 1h such as 10s, got "${raw}"`);
      return ms;
    },
  },
  {
    key: 'logFormat', env: 'IMKIT_LOG_FORMAT', flag: 'log-format', default: 'auto',
    help: 'auto (readable, coloured lines when the log goes to a terminal, one JSON object per line otherwise), json or pretty',
    parse: (raw) => {
      if (!['auto', 'json', 'pretty'].includes(raw)) throw new ConfigError('must be auto, json or pretty');
      return raw;
    },
  },
  {
    key: 'logLevel', env: 'LOG_LEVEL', flag: 'log-level', default: 'info', help: `${LOG_LEVELS.join('|')} (debug adds one line per HTTP request)`,
    parse: (raw) => {
      if (!LOG_LEVELS.includes(raw)) throw new ConfigError(`must be one of ${LOG_LEVELS.join(', ')}`);
      return raw;
    },
  },
  {
    key: 'appId', env: 'IMKIT_APP_ID', flag: 'app-id', default: undefined,
    help: 'with IMKIT_API_KEY/IMKIT_CLIENT_KEY: the application to create or update at start (default "default")',
    parse: (raw) => {
      if (!APP_ID_PATTERN.test(raw)) throw new ConfigError('must be 1-64 letters, digits, "_", "." or "-"');
      return raw;
    },
  },
  {
    key: 'apiKey', env: 'IMKIT_API_KEY', flag: 'api-key', default: undefined, secret: true,
    help: 'make sure this API key is live for IMKIT_APP_ID (stored as a digest)',
    parse: (raw) => {
      if (raw.length < 16) throw new ConfigError('must be at least 16 characters');
      return raw;
    },
  },
  {
    key: 'clientKey', env: 'IMKIT_CLIENT_KEY', flag: 'client-key', default: undefined, secret: true,
    help: "make this the client key of IMKIT_APP_ID (replaces the application's client key)",
    parse: (raw) => {
      if (raw.length < 16) throw new ConfigError('must be at least 16 characters');
      return raw;
    },
  },
  {
    key: 'rateLimitPerMinute', env: 'IMKIT_RATE_LIMIT', flag: 'rate-limit', default: '1000',
    help: 'requests per sliding minute per API key (an application may override it)', parse: integer(1, 10_000_000),
  },
  {
    key: 'userRateLimitPerMinute', env: 'IMKIT_USER_RATE_LIMIT', flag: 'user-rate-limit', default: '1000',
    help: 'requests per sliding minute per user token', parse: integer(1, 10_000_000),
  },
  {
    key: 'authFailuresPerMinute', env: 'IMKIT_AUTH_FAILURE_LIMIT', flag: 'auth-failure-limit', default: '60',
    help: 'failed credential checks per sliding minute per client address, and per presented credential, before further failing attempts get 429 (a valid credential always passes)',
    parse: integer(1, 10_000_000),
  },
  {
    key: 'corsOrigins', env: 'IMKIT_CORS_ORIGINS', flag: 'cors-origins', default: '*',
    help: 'browser origins allowed besides the domains of the applications: * (any), none, or a comma-separated list such as https://app.example.com (never with credentials)',
    parse: parseCorsOrigins,
  },
  {
    key: 'tokenTtlMs', env: 'IMKIT_TOKEN_TTL', flag: 'token-ttl', default: '7d',
    help: 'lifetime of user tokens issued by POST /admin/clients (e.g. 12h, 7d, 30d)', parse: duration,
  },
  {
    key: 'bodyLimitBytes', env: 'IMKIT_BODY_LIMIT', flag: 'body-limit', default: '1mb',
    help: 'largest request body accepted (larger gets 413)', parse: bytes,
  },
  {
    key: 'headersTimeoutMs', env: 'IMKIT_HEADERS_TIMEOUT', flag: 'headers-timeout', default: '20s',
    help: 'a request\'s headers must arrive within this time of its first byte, else 408 and the connection is closed (slow clients holding connections open); checked every second; at most IMKIT_REQUEST_TIMEOUT',
    parse: durationBetween(1000, 600_000),
  },
  {
    key: 'requestTimeoutMs', env: 'IMKIT_REQUEST_TIMEOUT', flag: 'request-timeout', default: '5m',
    help: 'a whole request, headers and body, must arrive within this time of its first byte, else 408 and the connection is closed (a stalled or trickled upload); raise it with IMKIT_FILE_MAX_SIZE for large uploads over slow links. The time the server takes to answer does not count',
    parse: durationBetween(1000, 24 * 3_600_000),
  },
  {
    key: 'keepAliveTimeoutMs', env: 'IMKIT_KEEP_ALIVE_TIMEOUT', flag: 'keep-alive-timeout', default: '72s',
    help: 'an idle keep-alive HTTP connection is closed after this time; keep it longer than the idle timeout of a load balancer in front (60 s on many), so that the balancer, not the server, closes idle connections',
    parse: durationBetween(1000, 3_600_000),
  },
  {
    key: 'maxMessageBytes', env: 'IMKIT_MAX_MESSAGE_BYTES', flag: 'max-message-bytes', default: '65536',
    help: 'largest message (its JSON, media fields included) a room accepts; larger gets 413 MESSAGE_TOO_LARGE', parse: integer(256, 16 * 1024 * 1024),
  },
  {
    key: 'maxRoomMembers', env: 'IMKIT_MAX_ROOM_MEMBERS', flag: 'max-room-members', default: '1000',
    help: 'most members one room may have (400 TOO_MANY_MEMBERS beyond)', parse: integer(2, 1_000_000),
  },
  {
    key: 'maxQueuedMessages', env: 'IMKIT_MAX_QUEUED_MESSAGES', flag: 'max-queued-messages', default: '20000',
    help: 'users\' messages waiting to be stored at most; beyond, sends get 503 SERVICE_UNAVAILABLE (overload)', parse: integer(1, 10_000_000),
  },
  {
    key: 'socketLoginTimeoutMs', env: 'IMKIT_SOCKET_LOGIN_TIMEOUT', flag: 'socket-login-timeout', default: '10s',
    help: 'a socket that has not logged in (auth2/auth) this long after connecting is closed', parse: duration,
  },
  {
    key: 'maxSocketsPerIp', env: 'IMKIT_MAX_SOCKETS_PER_IP', flag: 'max-sockets-per-ip', default: '1000',
    help: 'open sockets one client address may hold (0: no cap); raise it when many users share one address (carrier NAT)', parse: integer(0, 10_000_000),
  },
  {
    key: 'maxSockets', env: 'IMKIT_MAX_SOCKETS', flag: 'max-sockets', default: undefined,
    help: 'open sockets in all; beyond, new ones are refused (default: 80% of the open-file limit, leaving the rest to HTTP and the database)', parse: integer(1, 100_000_000),
  },
  {
    key: 'pingIntervalMs', env: 'IMKIT_PING_INTERVAL', flag: 'ping-interval', default: '10s',
    help: 'Socket.IO ping interval (5s or less keeps legacy EIO 3 clients from flapping)', parse: duration,
  },
  {
    key: 'pingTimeoutMs', env: 'IMKIT_PING_TIMEOUT', flag: 'ping-timeout', default: '10s',
    help: 'Socket.IO ping timeout: a socket silent this long after a ping is closed', parse: duration,
  },
  {
    key: 'legacySocketAuth', env: 'IMKIT_LEGACY_SOCKET_AUTH', flag: 'legacy-socket-auth', default: undefined,
    help: 'the application whose user tokens the legacy socket `auth` event accepts (a token without a client key or domain check); unset: the event is refused',
    parse: (raw) => {
      const v = raw.trim();
      if (FALSE_WORDS.includes(v.toLowerCase())) return undefined;
      // The old boolean setting: "true" named no application, and guessing one would bind every tenant's tokens to it.
      if (TRUE_WORDS.includes(v.toLowerCase())) throw new ConfigError('now names the one application whose tokens it accepts (e.g. default), not true');
      if (!APP_ID_PATTERN.test(v)) throw new ConfigError('must be an application id (1-64 letters, digits, "_", "." or "-") or off');
      return v;
    },
  },
  {
    key: 'socketSendBufferBytes', env: 'IMKIT_SOCKET_SEND_BUFFER', flag: 'socket-send-buffer', default: '4mb',
    help: 'what may wait in memory, unread, for one socket (a client that stopped reading); past it the socket is closed and the client reconnects and reads what it missed over REST, e.g. 4mb',
    parse: size(64 * 1024, 1024 ** 3),
  },
  {
    key: 'socketEventsPer10s', env: 'IMKIT_SOCKET_EVENT_LIMIT', flag: 'socket-event-limit', default: '100',
    help: 'events one socket may send per 10 seconds; beyond: error acks, then a disconnect', parse: integer(1, 1_000_000),
  },
  {
    key: 'trustProxy', env: 'IMKIT_TRUST_PROXY', flag: 'trust-proxy', default: 'false',
    help: 'reverse proxies whose X-Forwarded-For is believed: false, true (loopback and private ranges) or a list of addresses/CIDRs; the client is the rightmost untrusted hop',
    parse: (raw) => {
      try {
        return parseTrustedProxies(raw);
      } catch (err) {
        throw new ConfigError(`must be true, false or a comma-separated list of addresses and CIDRs (${(err as Error).message})`);
      }
    },
  },
  {
    key: 'webhookAllowPrivateNetworks', env: 'IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS', flag: 'webhook-allow-private-networks', default: 'false',
    help: 'let webhooks reach loopback, private, link-local, CGNAT and unique-local addresses (receivers on this host or network); cloud metadata, multicast and broadcast addresses stay refused (docs/webhooks.md)',
    parse: bool,
  },
  {
    key: 'webhookRetrySchedule', env: 'IMKIT_WEBHOOK_RETRY_SCHEDULE', flag: 'webhook-retry-schedule', default: '5s,30s,2m,10m,1h,6h,24h,24h,24h',
    help: 'delays before each retry of a webhook delivery that got no 2xx (comma-separated durations); after the last one it is marked failed (docs/webhooks.md)',
    parse: (raw: string) => {
      const delays = raw.split(',').map((d) => parseDuration(d));
      if (delays.length === 0 || delays.length > 50 || delays.some((d) => d === undefined)) throw new ConfigError(`must be a comma-separated list of 1-50 durations such as 5s,30s,2m, got "${raw}"`);
      return delays as number[];
    },
  },
  {
    key: 'webhookTimeoutMs', env: 'IMKIT_WEBHOOK_TIMEOUT', flag: 'webhook-timeout', default: '10s',
    help: 'longest a webhook request may take (connection, answer and its body) before the attempt counts as failed',
    parse: (raw: string) => {
      const ms = parseDuration(raw);
      if (ms === undefined || ms < 100 || ms > 120_000) throw new ConfigError(`must be a duration between 100ms and 120s, got "${raw}"`);
      return ms;
    },
  },
  {
    key: 'webhookConcurrency', env: 'IMKIT_WEBHOOK_CONCURRENCY', flag: 'webhook-concurrency', default: '4',
    help: 'webhook requests in flight to one endpoint (or room webhook URL) at once; a slow receiver holds up only its own deliveries', parse: integer(1, 256),
  },
  {
    key: 'pushFcmBaseUrl', env: 'IMKIT_PUSH_FCM_URL', flag: 'push-fcm-url', default: 'https://fcm.googleapis.com',
    help: 'base URL of Firebase Cloud Messaging (HTTP v1: /v1/projects/<project>/messages:send is under it; docs/push.md)', parse: httpUrl,
  },
  {
    key: 'pushFcmTokenUrl', env: 'IMKIT_PUSH_FCM_TOKEN_URL', flag: 'push-fcm-token-url', default: 'https://oauth2.googleapis.com/token',
    help: "OAuth2 token endpoint for FCM access tokens (the service account's JWT names it as audience; a service account's own token_uri is not used)", parse: httpUrl,
  },
  {
    key: 'pushApnsBaseUrl', env: 'IMKIT_PUSH_APNS_URL', flag: 'push-apns-url', default: 'https://api.push.apple.com',
    help: 'base URL of the Apple Push Notification service (HTTP/2; https://api.sandbox.push.apple.com for development builds)', parse: httpUrl,
  },
  {
    key: 'pushApnsCaFile', env: 'IMKIT_PUSH_APNS_CA_FILE', flag: 'push-apns-ca-file', default: undefined,
    help: "a PEM file of a certificate authority to trust for APNs besides the system's (a local test server); unset: the system's only",
    parse: (raw: string) => {
      if (!fs.existsSync(raw)) throw new ConfigError(`no such file: "${raw}"`);
      return raw;
    },
  },
  {
    key: 'maxJsonDepth', env: 'IMKIT_MAX_JSON_DEPTH', flag: 'max-json-depth', default: '32',
    help: 'deepest nesting of arrays and objects a JSON body or socket payload may have (deeper gets 400 INVALID_REQUEST)', parse: integer(2, 1000),
  },
  {
    key: 'statementTimeoutMs', env: 'IMKIT_STATEMENT_TIMEOUT', flag: 'statement-timeout', default: '10s',
    help: 'PostgreSQL: longest a request\'s SQL statement may run before it is cancelled and the request gets 503 SERVICE_UNAVAILABLE (e.g. 10s, 500ms; 0 = no limit)',
    parse: (raw: string) => {
      const ms = parseDuration(raw);
      if (ms === undefined) throw new ConfigError(`must be a duration such as 10s or 500ms (0 = no limit), got "${raw}"`);
      return ms;
    },
  },
  {
    key: 'auditRetentionMs', env: 'IMKIT_AUDIT_RETENTION', flag: 'audit-retention', default: '90d',
    help: 'how long audit log entries (what API keys and operators did, docs/security.md) are kept, e.g. 90d or 365d',
    parse: (raw: string) => {
      const ms = parseDuration(raw);
      if (ms === undefined || ms < 3_600_000) throw new ConfigError(`must be a duration of at least 1h such as 90d, got "${raw}"`);
      return ms;
    },
  },
  {
    key: 'alertRateFactor', env: 'IMKIT_ALERT_RATE_FACTOR', flag: 'alert-rate-factor', default: '10',
    help: "key anomaly alert: a minute in which an API key makes more than this many times its baseline (its mean requests per minute over the last hour, once it has 10 minutes of history) and more than IMKIT_ALERT_RATE_MIN requests",
    parse: integer(2, 1_000_000),
  },
  {
    key: 'alertRateMin', env: 'IMKIT_ALERT_RATE_MIN', flag: 'alert-rate-min', default: '100',
    help: 'key anomaly alert: the fewest requests in a minute that can be a rate jump (quiet keys that go from 1 to 20 a minute are not alerted)',
    parse: integer(1, 100_000_000),
  },
  {
    key: 'alertInvalidKeys', env: 'IMKIT_ALERT_INVALID_KEYS', flag: 'alert-invalid-keys', default: '20',
    help: 'key anomaly alert: invalid API keys from one address (one /64 for IPv6) within 10 minutes that raise a server alert (and one in each application whose revoked or expired keys were among them)',
    parse: integer(1, 10_000_000),
  },
  {
    key: 'metricsToken', env: 'IMKIT_METRICS_TOKEN', flag: 'metrics-token', default: undefined, secret: true,
    help: 'turns on GET /metrics (Prometheus text format), which then requires "Authorization: Bearer <this token>"; unset: /metrics answers 401 and no metric is collected',
    parse: (raw) => {
      if (raw.trim().length < 16) throw new ConfigError('must be at least 16 characters (a scraper sends it with every request: use a random string)');
      return raw.trim();
    },
  },
  {
    key: 'fileStorage', env: 'IMKIT_FILE_STORAGE', flag: 'file-storage', default: 'local',
    help: 'where uploaded files are kept: local (a directory; in a cluster one that every node mounts) or s3 (S3-compatible object storage; see IMKIT_S3_*)',
    parse: (raw) => {
      if (raw !== 'local' && raw !== 's3') throw new ConfigError('must be local or s3');
      return raw;
    },
  },
  { key: 'fileDir', env: 'IMKIT_FILE_DIR', flag: 'file-dir', default: undefined, help: 'the local file storage\'s directory (default: files/ in the data directory)', parse: (raw) => path.resolve(nonEmpty(raw)) },
  {
    key: 'fileMaxBytes', env: 'IMKIT_FILE_MAX_SIZE', flag: 'file-max-size', default: '100mb',
    help: 'largest file an upload may carry (413 FILE_TOO_LARGE beyond); an application may lower it with featureFlags.maxFileSize', parse: size(1, 1024 ** 4),
  },
  {
    key: 'fileTypes', env: 'IMKIT_FILE_TYPES', flag: 'file-types', default: '*',
    help: 'MIME types uploads may have: * or a comma-separated list such as image/*,video/mp4,application/pdf (an application may narrow it with featureFlags.allowedFileTypes)', parse: mimePatterns,
  },
  { key: 'fileUrlTtlMs', env: 'IMKIT_FILE_URL_TTL', flag: 'file-url-ttl', default: '1h', help: 'how long a signed file URL (GET /files/:bucket/:id?signedUrlOnly=1) works', parse: duration },
  {
    key: 'imageMaxBytes', env: 'IMKIT_IMAGE_MAX_SIZE', flag: 'image-max-size', default: '25mb',
    help: 'uploaded images up to this size get width, height and a thumbnail (they are decoded in memory); larger ones are stored without', parse: size(1024, 1024 ** 3),
  },
  {
    key: 'imageMaxPixels', env: 'IMKIT_IMAGE_MAX_PIXELS', flag: 'image-max-pixels', default: '50000000',
    help: 'images of more pixels are not decoded (no dimensions, no thumbnail): a guard against decompression bombs', parse: integer(1, 1_000_000_000),
  },
  {
    key: 'publicUrl', env: 'IMKIT_PUBLIC_URL', flag: 'public-url', default: undefined,
    help: 'the server\'s address as clients reach it, e.g. https://chat.example.com (signed file URLs start with it; default: the scheme and host of each request)',
    parse: (raw) => {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new ConfigError(`must be an http(s) URL such as https://chat.example.com, got "${raw}"`);
      }
      if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username) throw new ConfigError('must be an http(s) URL without query, fragment or credentials');
      return url.href.replace(/\/$/, '');
    },
  },
  { key: 's3Bucket', env: 'IMKIT_S3_BUCKET', flag: 's3-bucket', default: undefined, help: 'with IMKIT_FILE_STORAGE=s3: the bucket files are kept in', parse: nonEmpty },
  { key: 's3Region', env: 'IMKIT_S3_REGION', flag: 's3-region', default: 'us-east-1', help: 'the S3 region (requests are signed for it)', parse: nonEmpty },
  {
    key: 's3Endpoint', env: 'IMKIT_S3_ENDPOINT', flag: 's3-endpoint', default: undefined,
    help: 'an S3-compatible server\'s URL, e.g. http://minio:9000 (default: AWS S3 of the region)',
    parse: (raw) => {
      if (!/^https?:\/\/[^\s]+$/.test(raw)) throw new ConfigError('must be an http(s) URL');
      return raw;
    },
  },
  { key: 's3AccessKeyId', env: 'IMKIT_S3_ACCESS_KEY_ID', flag: 's3-access-key-id', default: undefined, help: 'the S3 access key id (default: the AWS SDK\'s credential chain: AWS_* variables, roles)', parse: nonEmpty },
  { key: 's3SecretAccessKey', env: 'IMKIT_S3_SECRET_ACCESS_KEY', flag: 's3-secret-access-key', default: undefined, secret: true, help: 'the S3 secret access key', parse: nonEmpty },
  { key: 's3ForcePathStyle', env: 'IMKIT_S3_FORCE_PATH_STYLE', flag: 's3-force-path-style', default: 'false', help: 'address buckets as http://host/bucket instead of http://bucket.host (most self-hosted S3-compatible servers need true)', parse: bool },
  {
    key: 'adminEmail', env: 'IMKIT_ADMIN_EMAIL', flag: 'admin-email', default: undefined,
    help: 'with IMKIT_ADMIN_PASSWORD: a dashboard operator with this email and password, made sure of at every start (docs/dashboard.md)',
    parse: nonEmpty,
  },
  {
    key: 'adminPassword', env: 'IMKIT_ADMIN_PASSWORD', flag: 'admin-password', default: undefined, secret: true,
    help: 'the password of IMKIT_ADMIN_EMAIL (12 characters or more; prefer the environment variable or .env to the flag, which other users can see in the process list)',
    parse: (raw) => {
      if (raw.length < 12) throw new ConfigError('must be at least 12 characters');
      return raw;
    },
  },
  {
    key: 'operatorSessionTtlMs', env: 'IMKIT_OPERATOR_SESSION_TTL', flag: 'operator-session-ttl', default: '12h',
    help: 'how long a dashboard login lasts before the operator must log in again, e.g. 12h or 30m', parse: duration,
  },
];

export { ConfigError };

/**
 * Builds the Config from flags, then the environment (which dotenv has filled from ./.env without
 * overriding real variables), then defaults. Throws ConfigError with one line naming the setting.
 */
export function loadConfig(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): Config {
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const fromFlag = flags[s.flag];
    const fromEnv = env[s.env];
    const raw = fromFlag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined) ?? s.default;
    if (raw === undefined) {
      out[s.key] = undefined;
      continue;
    }
    try {
      out[s.key] = s.parse(raw);
    } catch (err) {
      const source = fromFlag !== undefined ? `--${s.flag}` : fromEnv !== undefined ? s.env : `default of ${s.env}`;
      throw new ConfigError(`Invalid ${source}: ${(err as Error).message}`);
    }
  }
  const config = out as unknown as Config;
  config.dataDir = path.resolve(config.dataDir);
  if (config.headersTimeoutMs > config.requestTimeoutMs) throw new ConfigError('IMKIT_HEADERS_TIMEOUT must not be longer than IMKIT_REQUEST_TIMEOUT');
  // Several nodes cannot share a SQLite file: cluster mode is PostgreSQL's.
  if (config.redisUrl !== undefined && config.databaseUrl === undefined) {
    throw new ConfigError('REDIS_URL (cluster mode) needs DATABASE_URL to be PostgreSQL: SQLite is one process\'s file');
  }
  return config;
}

/** A config for tests and embedding: defaults, overridden by the given values. */
export function defaultConfig(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}, {}), ...overrides };
}

export function settingsHelp(): string {
  const rows = SETTINGS.map((s) => {
    const def = s.default !== undefined ? ` (default ${s.default})` : '';
    return `  --${s.flag.padEnd(20)} ${s.env.padEnd(26)} ${s.help}${def}`;
  });
  return ['Settings (flag, environment variable; a .env file in the working directory is read too):', ...rows].join('\n');
}
