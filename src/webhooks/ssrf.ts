import dns from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { AppError } from '../errors.js';

/**
 * Where a webhook may point (issue 16, SSRF guard). A webhook makes this server send requests to addresses a
 * tenant chose; without this guard a tenant could aim them at the server's own network: its loopback services,
 * the database, the cloud metadata service that hands out credentials. The guard runs twice: when a URL is
 * configured (`checkWebhookUrl`, 400 WEBHOOK_URL_NOT_ALLOWED) and again at delivery time, on the addresses the
 * name resolves to then (a name can be re-pointed after it was checked: DNS rebinding). See docs/webhooks.md.
 */

/** The class an address falls in. Only `public` is allowed by default. */
export type AddressKind =
  | 'public'
  | 'loopback'
  | 'private'
  | 'linkLocal'
  | 'carrierGradeNat'
  | 'uniqueLocal'
  | 'siteLocal'
  | 'reserved'
  | 'metadata'
  | 'multicast'
  | 'broadcast'
  | 'unspecified'
  | 'invalid';

export interface AddressClass {
  kind: AddressKind;
  /** "a loopback address": for error messages. */
  description: string;
  /**
   * True for the classes IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS opens (an operator whose receivers live on the
   * same host or network). Metadata, multicast, broadcast, unspecified and invalid stay refused whatever the
   * setting: none of them is ever a webhook receiver, and the metadata service hands out cloud credentials.
   */
  privateNetwork: boolean;
}

const DESCRIPTIONS: ReadonlyMap<AddressKind, string> = new Map<AddressKind, string>([
  ['public', 'a public address'],
  ['loopback', 'a loopback address'],
  ['private', 'a private network address'],
  ['linkLocal', 'a link-local address'],
  ['carrierGradeNat', 'a carrier-grade NAT (shared) address'],
  ['uniqueLocal', 'a unique-local IPv6 address'],
  ['siteLocal', 'a site-local IPv6 address'],
  ['reserved', 'a reserved or non-routable address'],
  ['metadata', 'a cloud metadata service address'],
  ['multicast', 'a multicast address'],
  ['broadcast', 'a broadcast address'],
  ['unspecified', 'an unspecified address (0.0.0.0 or ::)'],
  ['invalid', 'not an IP address'],
]);
const NEVER_ALLOWED: ReadonlySet<AddressKind> = new Set<AddressKind>(['metadata', 'multicast', 'broadcast', 'unspecified', 'invalid']);

function verdict(kind: AddressKind): AddressClass {
  return { kind, description: DESCRIPTIONS.get(kind)!, privateNetwork: kind !== 'public' && !NEVER_ALLOWED.has(kind) };
}

// The metadata services of the big clouds. AWS, GCP, Azure, DigitalOcean and others answer at 169.254.169.254
// (link-local anyway), AWS on IPv6 at fd00:ec2::254 (unique-local anyway); Oracle's 192.0.0.192 is in a reserved
// range and Alibaba's 100.100.100.200 in CGNAT. They are named apart so that the private-networks setting, which
// opens link-local and unique-local, never opens them.
const METADATA_V4 = [ipaddr.IPv4.parse('169.254.169.254'), ipaddr.IPv4.parse('169.254.170.2'), ipaddr.IPv4.parse('192.0.0.192'), ipaddr.IPv4.parse('100.100.100.200')];
const METADATA_V6 = [ipaddr.IPv6.parse('fd00:ec2::254')];

// ipaddr.js range names -> our classes. Names missing here are public unicast that ipaddr.js happens to name
// (as112: anycast DNS sinks; amt: multicast tunnelling relays): allowed.
const V4_RANGES: ReadonlyMap<string, AddressKind> = new Map<string, AddressKind>([
  ['unspecified', 'unspecified'],
  ['broadcast', 'broadcast'],
  ['multicast', 'multicast'],
  ['linkLocal', 'linkLocal'],
  ['loopback', 'loopback'],
  ['carrierGradeNat', 'carrierGradeNat'],
  ['private', 'private'],
  ['reserved', 'reserved'],
]);
const V6_RANGES: ReadonlyMap<string, AddressKind> = new Map<string, AddressKind>([
  ['unspecified', 'unspecified'],
  ['linkLocal', 'linkLocal'],
  ['multicast', 'multicast'],
  ['loopback', 'loopback'],
  ['uniqueLocal', 'uniqueLocal'],
  ['deprecatedSiteLocal', 'siteLocal'],
  ['discard', 'reserved'],
  ['benchmarking', 'reserved'],
  ['deprecatedOrchid', 'reserved'],
  ['orchid2', 'reserved'],
  ['droneRemoteIdProtocolEntityTags', 'reserved'],
  ['segmentRouting', 'reserved'],
  ['reserved', 'reserved'],
]);

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parse('2000::');
const LOCAL_NAT64 = ipaddr.IPv6.parse('64:ff9b:1::');

function classifyV4(addr: ipaddr.IPv4): AddressKind {
  if (METADATA_V4.some((m) => addr.match(m, 32))) return 'metadata';
  return V4_RANGES.get(addr.range()) ?? 'public';
}

function v4From(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

function classifyV6(addr: ipaddr.IPv6): AddressKind {
  if (METADATA_V6.some((m) => addr.match(m, 128))) return 'metadata';
  const p = addr.parts;
  const range = addr.range();
  // Forms that carry an IPv4 address in their last 32 bits are what that address is: the kernel (IPv4-mapped
  // sockets) or a translator (NAT64) delivers them to it. ::ffff:127.0.0.1 is loopback, not "unicast".
  if (range === 'ipv4Mapped' || range === 'rfc6145') return classifyV4(v4From(p[6]!, p[7]!));
  if (range === 'rfc6052') {
    // 64:ff9b::/96 embeds the address at the end; the local-use prefix 64:ff9b:1::/48 may embed it anywhere the
    // network chose, so it cannot be read, and it only exists inside a network anyway.
    if (addr.match(LOCAL_NAT64, 48)) return 'reserved';
    return classifyV4(v4From(p[6]!, p[7]!));
  }
  if (range === '6to4') return classifyV4(v4From(p[1]!, p[2]!));
  if (range === 'teredo') {
    // Both the Teredo server (bits 32-63) and the client (the last 32 bits, inverted) must be public.
    const server = classifyV4(v4From(p[2]!, p[3]!));
    if (server !== 'public') return server;
    return classifyV4(v4From(~p[6]! & 0xffff, ~p[7]! & 0xffff));
  }
  const named = V6_RANGES.get(range);
  if (named) return named;
  // IPv4-compatible ::a.b.c.d (::/96, deprecated) and anything else outside 2000::/3: nothing public is routed
  // there today. The IPv4-compatible form is reported as its IPv4 address when that is refused, for a clearer message.
  if (!addr.match(GLOBAL_UNICAST_V6, 3)) {
    if (p.slice(0, 6).every((x) => x === 0)) {
      const inner = classifyV4(v4From(p[6]!, p[7]!));
      if (inner !== 'public') return inner;
    }
    return 'reserved';
  }
  return 'public';
}

/**
 * The class of one IP address (IPv4 or IPv6, with or without brackets, an IPv6 zone is refused as link-local).
 * Forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo) are
 * classified by the IPv4 address they reach.
 */
export function classifyAddress(ip: string): AddressClass {
  let text = ip.trim();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  // A zone (fe80::1%eth0) only exists for link-local scopes; ipaddr.js would parse it and drop the meaning.
  if (text.includes('%')) return verdict('linkLocal');
  // net.isIP first: ipaddr.IPv4.isValid takes the legacy short and octal forms ("127.1"); an address reaching
  // here comes from the URL parser (already dotted quad) or the resolver, so anything else is not an address.
  const family = net.isIP(text);
  if (family === 4) return verdict(classifyV4(ipaddr.IPv4.parse(text)));
  // The WHATWG parser writes an embedded dotted quad in hex first: ipaddr.js reads "::1.2.3.4" (IPv4-compatible)
  // as the IPv4-mapped ::ffff:1.2.3.4.
  if (family === 6) return verdict(classifyV6(ipaddr.IPv6.parse(new URL(`http://[${text}]/`).hostname.slice(1, -1))));
  return verdict('invalid');
}

/** Whether an address may receive webhooks under the given setting. */
export function isAllowedAddress(ip: string, allowPrivate: boolean): boolean {
  return allowed(classifyAddress(ip), allowPrivate);
}

function allowed(c: AddressClass, allowPrivate: boolean): boolean {
  return c.kind === 'public' || (allowPrivate && c.privateNetwork);
}

export interface VettedAddress {
  address: string;
  family: 4 | 6;
}

export interface VettedUrl {
  url: URL;
  /** The addresses the host resolved to, every one allowed. Connect to one of these, never resolve again. */
  addresses: VettedAddress[];
}

export type Lookup = (hostname: string) => Promise<VettedAddress[]>;

export interface CheckOptions {
  /** IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS */
  allowPrivate: boolean;
  /** The request field named in errors (default "webhook"). */
  field?: string;
  /** Resolver (default: node:dns lookup with all: true, which follows /etc/hosts like any client on the host). */
  lookup?: Lookup;
  /** Longest a resolution may take (default 5 s); getaddrinfo has no timeout of its own. */
  lookupTimeoutMs?: number;
}

const systemLookup: Lookup = async (hostname) => {
  const found = await dns.promises.lookup(hostname, { all: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

function refused(field: string, why: string): AppError {
  // The URL itself is never repeated: it may carry a token in its path or query.
  return new AppError('WEBHOOK_URL_NOT_ALLOWED', `Invalid field ${field}: ${why}`, { field });
}

function refusalFor(c: AddressClass, allowPrivate: boolean, subject: string): string {
  if (c.privateNetwork && !allowPrivate) return `${subject} ${c.description}; webhooks may only reach public addresses unless IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`;
  return `${subject} ${c.description}, which never receives webhooks`;
}

/**
 * Resolves a host name and checks every address it resolves to (one refused address refuses the name: a client
 * may pick any of them). Used by `checkWebhookUrl`, and by the dispatcher at delivery time.
 */
export async function resolveAndVet(hostname: string, options: CheckOptions): Promise<VettedAddress[]> {
  const field = options.field ?? 'webhook';
  const lookup = options.lookup ?? systemLookup;
  let addresses: VettedAddress[];
  let timer: NodeJS.Timeout | undefined;
  try {
    addresses = await Promise.race([
      lookup(hostname),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('lookup timed out'), { code: 'ETIMEOUT' })), options.lookupTimeoutMs ?? 5_000);
        timer.unref();
      }),
    ]);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EAI_NONAME' || code === 'EAI_NODATA') {
      throw refused(field, 'the URL\'s host name does not resolve (no such host); a webhook must point to a name that resolves to a public address');
    }
    throw refused(field, `the URL's host name could not be resolved right now (${typeof code === 'string' ? code : 'DNS error'}); try again`);
  } finally {
    clearTimeout(timer);
  }
  if (addresses.length === 0) throw refused(field, 'the URL\'s host name does not resolve to any address');
  for (const a of addresses) {
    const c = classifyAddress(a.address);
    if (!allowed(c, options.allowPrivate)) throw refused(field, refusalFor(c, options.allowPrivate, 'the URL\'s host name resolves to'));
  }
  return addresses;
}

/**
 * Checks a webhook URL and returns the addresses it may be delivered to. Refused (400 WEBHOOK_URL_NOT_ALLOWED,
 * naming the field, saying why): not a URL; a scheme other than http: or https:; a user name or password in the
 * URL; an IP literal (in any form the WHATWG URL parser reads: decimal, hex, octal, short, bracketed IPv6) of a
 * refused class; `localhost` and `*.localhost` (RFC 6761: always this host, whatever DNS says); a name that does
 * not resolve, or that resolves to any refused address.
 *
 * The dispatcher must connect to one of `addresses` (e.g. an undici Agent whose `connect.lookup` answers with
 * them) instead of resolving the name again: a second resolution may answer differently (DNS rebinding).
 */
export async function checkWebhookUrl(raw: string, options: CheckOptions): Promise<VettedUrl> {
  const field = options.field ?? 'webhook';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refused(field, 'not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw refused(field, `only http: and https: URLs are allowed, not ${url.protocol}`);
  // Credentials in a URL would be stored in clear, shown to every member who reads the room, and sent as Basic
  // auth to whoever the name points to; webhook requests are authenticated by their signature instead. Refusing
  // them also removes the "https://trusted.example@10.0.0.1/" disguise.
  if (url.username !== '' || url.password !== '') throw refused(field, 'a webhook URL must not contain a user name or password (user:pass@); receivers verify the signature instead');
  const host = url.hostname;
  const literal = host.startsWith('[') ? host.slice(1, -1) : host;
  const family = net.isIP(literal);
  if (family !== 0) {
    const c = classifyAddress(literal);
    if (!allowed(c, options.allowPrivate)) throw refused(field, refusalFor(c, options.allowPrivate, 'the URL\'s host is'));
    return { url, addresses: [{ address: literal, family: family === 6 ? 6 : 4 }] };
  }
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name === 'localhost' || name.endsWith('.localhost')) {
    if (!options.allowPrivate) throw refused(field, 'the URL\'s host is localhost, a loopback address; webhooks may only reach public addresses unless IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true');
  }
  return { url, addresses: await resolveAndVet(name, { ...options, field }) };
}

/**
 * The room `webhook` field holds either a URL or the key of an application-level endpoint. Anything the WHATWG
 * parser reads as an absolute URL (any `scheme:...`) is a URL and must pass `checkWebhookUrl`, so that a value
 * the dispatcher could ever fetch has been vetted; anything else is a key, looked up and never fetched.
 */
export function isWebhookUrl(value: string): boolean {
  return URL.canParse(value);
}

/**
 * A `lookup` for node:net/http/https (`http.request(url, { lookup })`, or the `connect` options of an undici
 * Agent) that answers with the vetted addresses and never asks DNS: the connection goes to an address the guard
 * checked, whatever the name points to by then. Any other host name is an error (a redirect, say, which the
 * dispatcher must not follow anyway).
 */
export function pinnedLookup(vetted: VettedUrl): net.LookupFunction {
  const expected = vetted.url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return (hostname, options, callback) => {
    const asked = hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
    const family = options.family === 4 || options.family === 6 ? options.family : undefined;
    const usable = vetted.addresses.filter((a) => family === undefined || a.family === family);
    if (asked !== expected || usable.length === 0) {
      const err = Object.assign(new Error(`not a vetted webhook host: ${hostname}`), { code: 'ENOTFOUND' });
      callback(err as NodeJS.ErrnoException, '', 0);
      return;
    }
    if (options.all) callback(null, usable.map((a) => ({ address: a.address, family: a.family })));
    else callback(null, usable[0]!.address, usable[0]!.family);
  };
}

/** The rule for a room's `webhook` field: a URL must pass the guard, a key is kept as it is. */
export async function checkRoomWebhook(value: string | undefined, allowPrivate: boolean): Promise<void> {
  if (value !== undefined && isWebhookUrl(value)) await checkWebhookUrl(value, { allowPrivate, field: 'webhook' });
}
