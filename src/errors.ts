/**
 * The one error type. Services throw it; both transports (HTTP now, sockets later) render it as
 * {"RC":status,"RM":message,"error":code,"message":message}. RC equals the HTTP status on the wire, so the
 * status is part of the error's meaning and lives in this table, once.
 */
export const ERROR_STATUS = {
  // credentials (texts of the seed documents, word for word, are in CredentialErrors below)
  MISSING_API_KEY: 401,
  INVALID_API_KEY: 401,
  RATE_LIMIT_EXCEEDED: 429,
  INSUFFICIENT_PERMISSIONS: 403,
  MISSING_CLIENT_KEY: 401,
  INVALID_CLIENT_KEY: 403,
  CLIENT_KEY_MISMATCH: 403,
  INVALID_TOKEN: 401,
  IP_NOT_ALLOWED: 403,
  // requests
  INVALID_REQUEST: 400,
  INVALID_JSON: 400,
  INVALID_QUERY: 400,
  PAYLOAD_TOO_LARGE: 413,
  RESULT_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  HEADERS_TOO_LARGE: 431,
  // users and tokens
  CLIENT_NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  TOKEN_CONFLICT: 409,
  // chat
  ROOM_NOT_FOUND: 404,
  MESSAGE_NOT_FOUND: 404,
  INVITATION_NOT_FOUND: 404,
  NOT_ROOM_MEMBER: 403,
  ROOM_FROZEN: 403,
  ROOM_CLOSED: 403,
  ROOM_EXISTS: 409,
  MESSAGE_TOO_LARGE: 413,
  TOO_MANY_MEMBERS: 400,
  INVALID_SEARCH_TYPE: 400,
  INVALID_ROOM_TAGS: 400,
  INVALID_TAGS: 400,
  BATCH_NOT_FOUND: 404,
  GROUP_ALREADY_EXISTS: 409,
  MISSING_PARAMETER: 400,
  PREF_NOT_FOUND: 404,
  // moderation and runtime config
  MESSAGE_CENSORED: 400,
  USER_BLOCKED: 403,
  USER_BANNED: 403,
  SELF_BLOCK_FORBIDDEN: 400,
  USER_ALREADY_BLOCKED: 409,
  BLOCK_NOT_FOUND: 404,
  ROOM_OR_USER_NOT_FOUND: 404,
  ROOM_NOT_MUTED: 400,
  INVALID_CONFIG_FORMAT: 400,
  INVALID_BODY: 400,
  CONFIG_NOT_FOUND: 404,
  ALERT_NOT_FOUND: 404,
  IDEMPOTENCY_KEY_REUSED: 422,
  IDEMPOTENCY_KEY_IN_USE: 409,
  // webhooks
  WEBHOOK_URL_NOT_ALLOWED: 400,
  WEBHOOK_NOT_FOUND: 404,
  DELIVERY_NOT_FOUND: 404,
  WEBHOOK_KEY_TAKEN: 409,
  DELIVERY_NOT_RETRYABLE: 409,
  TOO_MANY_WEBHOOKS: 400,
  // push notifications
  INVALID_PUSH_CREDENTIALS: 400,
  PUSH_CREDENTIALS_NOT_FOUND: 404,
  INVALID_DEVICE_TOKEN: 400,
  // files
  FILE_NOT_FOUND: 404,
  FILE_TOO_LARGE: 413,
  FILE_TYPE_NOT_ALLOWED: 400,
  FILE_SHARING_DISABLED: 403,
  SIGNED_URL_INVALID: 403,
  SIGNED_URL_EXPIRED: 403,
  FILE_STORAGE_UNAVAILABLE: 503,
  // applications
  APP_NOT_FOUND: 404,
  APP_EXISTS: 409,
  DOMAIN_TAKEN: 409,
  KEY_NOT_FOUND: 404,
  KEY_AMBIGUOUS: 409,
  // dashboard operators (docs/dashboard.md)
  INVALID_SESSION: 401,
  CSRF_TOKEN_INVALID: 403,
  INVALID_LOGIN: 401,
  INVALID_SETUP_TOKEN: 401,
  OPERATOR_EXISTS: 409,
  OPERATOR_NOT_FOUND: 404,
  // anything unexpected
  SERVICE_UNAVAILABLE: 503,
  INTERNAL_ERROR: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly status: number;
  /** The live API key a refusal concerns (the audit log records it); never part of the answer. */
  keyRef?: { appId: string; keyId: string; fingerprint: string | null; last4: string };
  /** Set on RATE_LIMIT_EXCEEDED so a transport can send the X-RateLimit-* headers. */
  rate?: { limit: number; remaining: number; resetAt: number };
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'AppError';
    this.status = ERROR_STATUS[code];
  }

  toBody(): Record<string, unknown> {
    return { RC: this.status, RM: this.message, error: this.code, message: this.message, ...this.extra };
  }
}

/** The credential errors of the seed documents; their texts must stay word for word. */
export const CredentialErrors = {
  missingApiKey: () => new AppError('MISSING_API_KEY', 'IM-API-KEY header is required'),
  invalidApiKey: () => new AppError('INVALID_API_KEY', 'The provided API key is invalid or expired'),
  rateLimited: (retryAfter: number, rate?: AppError['rate']) => {
    const err = new AppError('RATE_LIMIT_EXCEEDED', 'Too many requests, please try again later', { retryAfter });
    err.rate = rate;
    return err;
  },
  insufficientPermissions: (message = 'API key does not have permission for this operation') =>
    new AppError('INSUFFICIENT_PERMISSIONS', message),
  missingClientKey: () => new AppError('MISSING_CLIENT_KEY', 'Client key is required for SDK initialization'),
  invalidClientKey: () => new AppError('INVALID_CLIENT_KEY', 'The provided client key is invalid or expired'),
  clientKeyMismatch: () => new AppError('CLIENT_KEY_MISMATCH', 'Client key does not match the specified domain'),
  invalidToken: (message: string) => new AppError('INVALID_TOKEN', message),
  tokenRevoked: () => new AppError('INVALID_TOKEN', 'The provided user token is invalid or has been revoked'),
  tokenExpired: () => new AppError('INVALID_TOKEN', 'The provided user token has expired'),
};

/** Codes that mean "this credential was wrong": counted against the caller's IP for brute-force protection. */
export const CREDENTIAL_FAILURE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'INVALID_API_KEY',
  'INVALID_CLIENT_KEY',
  'CLIENT_KEY_MISMATCH',
  'INVALID_TOKEN',
  'INVALID_SESSION',
]);

export function invalidRequest(message: string, extra: Record<string, unknown> = {}): AppError {
  return new AppError('INVALID_REQUEST', message, extra);
}

/** PostgreSQL cancelled the statement: it ran past `statement_timeout` (IMKIT_STATEMENT_TIMEOUT). */
export function isStatementTimeout(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '57014';
}

/**
 * The one place where a store failure that means something to the caller becomes an AppError (every transport
 * asks it); anything else stays an internal error. A cancelled statement is the server protecting the other
 * tenants from one slow request: 503, the server itself is fine.
 */
export function fromStoreError(err: unknown): AppError | undefined {
  if (isStatementTimeout(err)) {
    return new AppError('SERVICE_UNAVAILABLE', 'The database took too long to answer this request and cancelled it (statement timeout): narrow the query, or retry later');
  }
  // PostgreSQL refuses the NUL character in any text it is given (22021, "invalid byte sequence for encoding UTF8:
  // 0x00"), in an id looked up as in a value written: the caller's text, not the server, is at fault (found by the
  // fuzzer). SQLite keeps such text.
  if ((err as { code?: unknown } | null)?.code === '22021') return new AppError('INVALID_REQUEST', 'Text may not contain the NUL character (\\u0000)');
  if (isStoreUnreachable(err)) return new AppError('SERVICE_UNAVAILABLE', 'The database cannot be reached right now: retry later', { retryAfter: 1 });
  return undefined;
}

/** Connection-level codes: the socket's (refused, reset, timed out) and PostgreSQL's classes 08 and 57P (shutting down). */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', '57P01', '57P02', '57P03', '53300']);

/**
 * True when the database could not be asked at all (PostgreSQL stopped, restarting, or out of connections): the
 * request gets 503 and can be retried; nothing was changed by it.
 */
export function isStoreUnreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e) return false;
  if (typeof e.code === 'string' && (UNREACHABLE_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  // pg reports a connection that ended mid-query without a code.
  return typeof e.message === 'string' && /^Connection terminated|connection error|Client was closed|timeout exceeded when trying to connect/i.test(e.message);
}
