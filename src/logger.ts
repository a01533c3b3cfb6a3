import pino, { type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

/** Header names and query parameters whose values are secrets: never logged. */
const SECRET_HEADERS = ['im-api-key', 'api_key', 'im-client-key', 'client_key', 'im-authorization', 'authorization', 'cookie'];
const SECRET_PARAM = /token|key|auth|secret|password|signature/i;

export function createLogger(config: Pick<Config, 'logLevel'>, destination?: DestinationStream): Logger {
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
