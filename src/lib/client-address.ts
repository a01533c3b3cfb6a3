import type { IncomingMessage } from 'node:http';
import proxyaddr from '@fastify/proxy-addr';

/**
 * The caller's address, one way for every transport (HTTP requests and Socket.IO handshakes). Behind reverse
 * proxies, `X-Forwarded-For` is read from the right: each hop is believed only while the address that handed
 * it over is a trusted proxy, so the answer is the rightmost address no trusted proxy vouches for. A stranger who
 * writes their own `X-Forwarded-For` entries only adds entries to the left of the one the proxy appends, and
 * none of them is read. (proxy-addr implements exactly this walk; Fastify uses it for `request.ip`.)
 */
export type TrustedProxies = string[] | false;

/** What `IMKIT_TRUST_PROXY` takes: false, true (loopback and private ranges), or a list of addresses and CIDRs. */
export function parseTrustedProxies(raw: string): TrustedProxies {
  const v = raw.trim().toLowerCase();
  if (['', '0', 'false', 'no', 'off'].includes(v)) return false;
  if (['1', 'true', 'yes', 'on'].includes(v)) return ['loopback', 'linklocal', 'uniquelocal', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];
  const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
  proxyaddr.compile(list); // throws TypeError on a malformed entry
  return list;
}

/**
 * Whether the hop that handed a request over is a trusted proxy: Fastify takes it as `trustProxy` (for
 * `request.ip`), and `addressResolver` walks the same way for sockets, so both transports read one answer.
 */
export function trustFunction(trusted: TrustedProxies): (address: string, hop: number) => boolean {
  if (trusted === false) return () => false;
  return proxyaddr.compile(trusted);
}

/** Builds the resolver once per server (compiling the trust list is not free). */
export function addressResolver(trusted: TrustedProxies): (req: IncomingMessage) => string {
  if (trusted === false) return (req) => req.socket.remoteAddress ?? '';
  const trust = trustFunction(trusted);
  return (req) => proxyaddr(req, trust);
}

/**
 * An API key's address allowlist (docs/security.md): addresses and CIDRs, IPv4 and IPv6 (an IPv4-mapped IPv6
 * address matches its IPv4 entry), matched by proxy-addr's compiled matcher. Throws TypeError on a malformed entry.
 */
export function compileAllowlist(list: string[]): (ip: string) => boolean {
  const match = proxyaddr.compile(list);
  return (ip) => match(ip, 0);
}
