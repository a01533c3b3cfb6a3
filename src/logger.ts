import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from './config.js';

/** Header names and query parameters whose values are secrets: never logged. */
const SECRET_HEADERS = ['im-api-key', 'api_key', 'im-client-key', 'client_key', 'im-authorization', 'authorization', 'cookie'];
const SECRET_PARAM = /token|key|auth|secret|password|signature/i;

/**
 * The server's logger. Without a destination it writes to stdout: JSON lines, or (IMKIT_LOG_FORMAT=pretty, or auto
 * on a terminal) readable lines through pino-pretty, formatted in this thread (synchronously, so the order of what
 * is printed on stderr and in the log stays as it happened). Redaction applies before either.
 */
export function createLogger(config: Pick<Config, 'logLevel'> & Partial<Pick<Config, 'logFormat'>>, destination?: DestinationStream): Logger {
  const readable = config.logFormat === 'pretty' || (config.logFormat === 'auto' && process.stdout.isTTY === true);
  if (destination === undefined && readable) destination = pretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return pino(
    {
      level: config.logLevel,
      redact: { paths: SECRET_HEADERS.map((h) => `req.headers["${h}"]`), censor: '[redacted]' },
      serializers: {
        req: (req: { method: string; url: string; ip?: string; socket?: { remoteAddress?: string } }) => ({
          method: req.method,
          url: redactUrl(req.url),
          ip: req.ip ?? req.socket?.remoteAddress,
        }),
      },
    },
    destination,
  );
}

/** Keeps the path and parameter names of a URL, replacing the values of secret-looking parameters. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const name of [...params.keys()]) if (SECRET_PARAM.test(name)) params.set(name, '[redacted]');
  return `${url.slice(0, q)}?${params.toString().replace(/%5Bredacted%5D/g, '[redacted]')}`;
}
