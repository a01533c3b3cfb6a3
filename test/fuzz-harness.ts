import net from 'node:net';
import fc from 'fast-check';
import type { RouteDef } from '../src/http/route.js';

/**
 * The protocol fuzzer of issue #21 (docs/operations.md, Fuzzing): requests for every route of the route table and
 * arguments for every client event of the gateway, generated from the routes' JSON schemas with fast-check, plus
 * mutations (wrong types, huge strings, deep nesting, prototype keys, invalid UTF-8, duplicate headers, unknown
 * fields, hostile ids). fast-check has no JSON-schema reader, so the few keywords the routes use are mapped here.
 * Used by test/fuzz.test.ts (a bounded run in `npm test`, a long one through `npm run fuzz`).
 */

/** An HTTP request the fuzzer sends: headers as pairs so that one may repeat. */
export interface FuzzRequest {
  method: string;
  /** Path and query, as sent on the wire. */
  url: string;
  headers: Array<[string, string]>;
  body?: Buffer;
  /** Send over a real socket even in process (a URL or headers that inject would refuse or merge). */
  raw?: boolean;
}

export interface FuzzAnswer {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  raw: string;
}

/** Percent-encodes a string's UTF-8 bytes (encodeURIComponent throws on a lone surrogate). */
export function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += /[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** Where requests go: Fastify's inject (in-process) or a real socket (a child process, duplicate headers). */
export interface FuzzTarget {
  send(req: FuzzRequest): Promise<FuzzAnswer>;
}

/** Ids that exist in the fuzzed application; the arrays may change while a run goes on (a repair). */
export interface Pools {
  users: string[];
  rooms: string[];
  messages: string[];
  files: string[];
  batches: string[];
  webhooks: string[];
  keys: string[];
  tags: string[];
}

export interface Creds {
  apiKey: string;
  clientKey: string;
  /** The token of `userId`, a member of the fixture room. */
  token: string;
  userId: string;
}

export interface FuzzContext {
  pools: Pools;
  creds: Creds;
  maxJsonDepth: number;
  bodyLimitBytes: number;
}

/** Strings that have broken servers: prototype names, traversal, encodings, injection, numbers as text. */
export const HOSTILE_STRINGS = [
  '',
  ' ',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '../../../../etc/passwd',
  '..',
  '.',
  '/',
  '\\',
  '%00',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\uffff',
  '😀',
  '\u202e',
  'null',
  'undefined',
  'NaN',
  'true',
  '-1',
  '0',
  '1e309',
  '99999999999999999999999999',
  '-9223372036854775809',
  "' or 1=1 --",
  '"; drop table users; --',
  '(a+)+$',
  '[',
  '{',
  '*',
  '{"$gt":""}',
  '[]',
  '{}',
  '000000000000000000000000',
  'ffffffffffffffffffffffff',
  'zzzzzzzzzzzzzzzzzzzzzzzz',
  '_all',
  'x'.repeat(129),
  'x'.repeat(513),
  '<script>alert(1)</script>',
  '\r\nX-Injected: 1',
];

/** Any string: hostile ones, ordinary ones, any code unit (lone surrogates included). */
export const anyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 3, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 8 }) },
);

const specialNumbers = fc.constantFrom(0, -0, -1, 1, 0.5, -1.5, 2 ** 31, 2 ** 31 - 1, -(2 ** 31), 2 ** 53, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1e20, 1e308, -1e308, 5e-324, 1780000000000);

export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 2, arbitrary: anyString },
  { weight: 1, arbitrary: specialNumbers },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}, [null], { '': '' }) },
);

/** Which pool an id-like field or parameter takes its existing ids from, by name. */
function poolFor(name: string, pools: Pools): string[] | undefined {
  switch (name) {
    case 'uid':
    case 'client':
    case 'blockee':
    case 'sender':
    case 'owner':
    case 'invitee':
    case 'invitees':
    case 'members':
    case 'managers':
    case 'mentions':
    case 'userId':
    case 'user':
    case 'clients':
    case '_id':
      return pools.users;
    case 'room':
    case 'roomID':
    case 'roomId':
    case 'rooms':
      return pools.rooms;
    case 'messageId':
    case 'messageID':
    case 'replyTo':
      return pools.messages;
    case 'batchID':
      return pools.batches;
    case 'key':
      return pools.keys;
    case 'tag':
    case 'roomTags':
      return pools.tags;
    case 'id':
      return [...pools.rooms, ...pools.users, ...pools.messages, ...pools.webhooks, ...pools.files];
    default:
      return undefined;
  }
}

/** A member of a pool read when the value is generated (so a repaired pool is seen), or a hostile string. */
function fromPool(pool: () => string[] | undefined): fc.Arbitrary<string> {
  return fc.nat().map((i) => {
    const p = pool();
    return p && p.length ? p[i % p.length]! : 'none';
  });
}

type Schema = Record<string, any>;

/**
 * A JSON-schema-to-arbitrary for the keywords the route table uses: type (one or several), properties, required,
 * enum, minimum/maximum, minLength/maxLength, pattern, items, minItems/maxItems, anyOf/oneOf. Values respect the
 * schema most of the time; id-like names take existing ids from the pools.
 */
export function fromSchema(s: Schema | undefined, ctx: FuzzContext, name = '', depth = 0): fc.Arbitrary<unknown> {
  if (!s || typeof s !== 'object' || Object.keys(s).length === 0) return anyJson;
  if (Array.isArray(s.enum)) return fc.constantFrom(...s.enum);
  if ('const' in s) return fc.constant(s.const);
  const alts = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
  if (alts) return fc.oneof(...alts.map((a) => fromSchema(a, ctx, name, depth)));
  const types: string[] | undefined = Array.isArray(s.type) ? s.type : s.type ? [s.type] : undefined;
  if (!types) return s.properties ? objectOf(s, ctx, depth) : anyJson;
  return fc.oneof(...types.map((t) => ofType(t, s, ctx, name, depth)));
}

function ofType(type: string, s: Schema, ctx: FuzzContext, name: string, depth: number): fc.Arbitrary<unknown> {
  switch (type) {
    case 'string':
      return stringOf(s, ctx, name);
    case 'integer': {
      const min = s.minimum ?? -1000;
      const max = s.maximum ?? Math.max(min + 1000, 1000);
      return fc.oneof({ weight: 4, arbitrary: fc.integer({ min, max }) }, { weight: 1, arbitrary: fc.constantFrom(min, max) }, { weight: 1, arbitrary: specialNumbers.filter((n) => Number.isInteger(n) && n >= min && n <= max) });
    }
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true, min: s.minimum ?? -1e9, max: s.maximum ?? 1e9 });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = depth > 4 ? fc.constant('x') : fromSchema(s.items, ctx, name, depth + 1);
      const minLength = s.minItems ?? 0;
      return fc.array(items, { minLength, maxLength: Math.max(minLength, Math.min(s.maxItems ?? 4, 4)) });
    }
    case 'object':
      return objectOf(s, ctx, depth);
    default:
      return anyJson;
  }
}

function stringOf(s: Schema, ctx: FuzzContext, name: string): fc.Arbitrary<string> {
  const min = s.minLength ?? 0;
  const max = s.maxLength ?? 64;
  const fits = (v: string) => v.length >= min && v.length <= max;
  const options: Array<fc.WeightedArbitrary<string>> = [];
  if (s.pattern) options.push({ weight: 4, arbitrary: fc.stringMatching(new RegExp(s.pattern)).filter(fits) });
  else options.push({ weight: 3, arbitrary: fc.string({ minLength: min, maxLength: Math.min(max, Math.max(min, 24)) }) });
  const pool = poolFor(name, ctx.pools);
  if (pool) options.push({ weight: 6, arbitrary: fromPool(() => poolFor(name, ctx.pools)) });
  options.push({ weight: 1, arbitrary: anyString.filter(fits) });
  if (s.maxLength !== undefined) options.push({ weight: 1, arbitrary: fc.constant('y'.repeat(max)) });
  return fc.oneof(...options);
}

function objectOf(s: Schema, ctx: FuzzContext, depth: number): fc.Arbitrary<Record<string, unknown>> {
  if (depth > 4) return fc.constant({});
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [k, v] of Object.entries(props)) model[k] = fromSchema(v, ctx, k, depth + 1);
  const required = ((s.required ?? []) as string[]).filter((k) => k in model);
  for (const k of s.required ?? []) if (!(k in model)) model[k] = anyJson;
  return fc.record(model, { requiredKeys: [...new Set([...required, ...((s.required ?? []) as string[])])] }) as fc.Arbitrary<Record<string, unknown>>;
}

/** Every maxLength a schema declares: huge strings are sent at and just over them. */
function maxLengths(s: unknown, out = new Set<number>()): Set<number> {
  if (s && typeof s === 'object') {
    const o = s as Schema;
    if (typeof o.maxLength === 'number') out.add(o.maxLength);
    for (const v of Object.values(o)) if (v && typeof v === 'object') maxLengths(v, out);
  }
  return out;
}

/** `levels` nested arrays and objects around a string. */
export function nested(levels: number): unknown {
  let v: unknown = 'deep';
  for (let i = 0; i < levels; i++) v = i % 2 ? { d: v } : [v];
  return v;
}

/** Marks where raw JSON text or raw bytes go into a body (after JSON.stringify). */
const RAW = '\u0001raw\u0001';
const RAW_JSON = JSON.stringify(RAW);

const PROTO_FRAGMENTS = [
  '{"__proto__":{"polluted":"yes","isAdmin":true}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '{"prototype":{"polluted":"yes"}}',
  '{"__proto__":[1,2]}',
  '{"__proto__":null}',
  '{"a":1,"a":{"__proto__":{"x":1}}}',
];

/** Bytes that are not UTF-8: a lone continuation, a truncated sequence, overlong forms, an encoded surrogate, 0xFF. */
const BAD_UTF8: number[][] = [[0xff], [0x80], [0xc3, 0x28], [0xe2, 0x82], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xfe, 0xfe, 0xff, 0xff]];

type BodyMutation =
  | { kind: 'none' }
  | { kind: 'wrongType'; at: number; value: unknown }
  | { kind: 'huge'; at: number; length: number }
  | { kind: 'deep'; at: number; levels: number }
  | { kind: 'proto'; at: number; fragment: string; top: boolean }
  | { kind: 'unknown'; extra: Record<string, unknown> }
  | { kind: 'utf8'; at: number; bytes: number[] }
  | { kind: 'top'; value: unknown }
  | { kind: 'text'; text: string; contentType: string | undefined };

function bodyMutation(route: RouteDef, ctx: FuzzContext): fc.Arbitrary<BodyMutation> {
  const limits = [...maxLengths(route.schema?.body)];
  const lengths = [...limits.flatMap((l) => [l, l + 1]), 70_000, ctx.bodyLimitBytes - 64, ctx.bodyLimitBytes + 1];
  const d = ctx.maxJsonDepth;
  return fc.oneof(
    { weight: 10, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('wrongType' as const), at: fc.nat(), value: anyJson }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('huge' as const), at: fc.nat(), length: fc.constantFrom(...lengths) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('deep' as const), at: fc.nat(), levels: fc.constantFrom(d - 2, d - 1, d, d + 1, 1000) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('proto' as const), at: fc.nat(), fragment: fc.constantFrom(...PROTO_FRAGMENTS), top: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('unknown' as const), extra: fc.dictionary(fc.oneof(anyString, fc.constantFrom('toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'then')), anyJson, { maxKeys: 4 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('utf8' as const), at: fc.nat(), bytes: fc.constantFrom(...BAD_UTF8) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('top' as const), value: anyJson }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('text' as const),
        text: fc.oneof(fc.constantFrom('', '{', '{"a":', 'null', '"x"', '[1,', '{"a":1}}', 'a=1&b=2', '\u0000', '{"a":1e999999}', '{"a":-}', ' '.repeat(100)), fc.string({ maxLength: 40 })),
        contentType: fc.constantFrom(undefined, 'application/json', 'application/json; charset=latin1', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/JSON', 'application/json, text/plain'),
      }),
    },
  );
}

/** Applies a mutation to a generated body; returns the bytes and the content type to send. */
function encodeBody(value: unknown, m: BodyMutation): { bytes: Buffer | undefined; contentType: string | undefined } {
  const json = (v: unknown) => ({ bytes: Buffer.from(JSON.stringify(v) ?? 'null'), contentType: 'application/json' });
  const obj = value && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : undefined;
  const keyAt = (at: number) => {
    const keys = Object.keys(obj ?? {});
    return keys.length && at % 3 !== 0 ? keys[at % keys.length]! : ['message', 'custom', 'extra', 'data', '_id', 'name'][at % 6]!;
  };
  switch (m.kind) {
    case 'none':
      return value === undefined ? { bytes: undefined, contentType: undefined } : json(value);
    case 'wrongType':
      return json(obj ? { ...obj, [keyAt(m.at)]: m.value } : m.value);
    case 'huge':
      return json({ ...(obj ?? {}), [keyAt(m.at)]: 'h'.repeat(m.length) });
    case 'deep':
      return json({ ...(obj ?? {}), [keyAt(m.at)]: nested(m.levels) });
    case 'proto': {
      if (m.top) return { bytes: Buffer.from(m.fragment.replace(/^\{/, obj && Object.keys(obj).length ? `${JSON.stringify(obj).slice(0, -1)},` : '{')), contentType: 'application/json' };
      const text = JSON.stringify({ ...(obj ?? {}), [keyAt(m.at)]: RAW }).replace(RAW_JSON, m.fragment);
      return { bytes: Buffer.from(text), contentType: 'application/json' };
    }
    case 'unknown':
      return json({ ...(obj ?? {}), ...m.extra });
    case 'utf8': {
      const [before, after] = JSON.stringify({ ...(obj ?? {}), [keyAt(m.at)]: `a${RAW}b` }).split(RAW_JSON.slice(1, -1));
      return { bytes: Buffer.concat([Buffer.from(before!), Buffer.from(m.bytes), Buffer.from(after ?? '')]), contentType: 'application/json' };
    }
    case 'top':
      return json(m.value);
    case 'text':
      return { bytes: Buffer.from(m.text), contentType: m.contentType };
  }
}

/** A multipart body for upload routes: an `extra` field (JSON or not) and a file, well or badly formed. */
const multipartArb: fc.Arbitrary<{ bytes: Buffer; contentType: string }> = fc
  .record({
    boundary: fc.constantFrom('fuzzb', 'x', '----WebKitFormBoundary7MA4YWxkTrZu0gW', ''),
    declared: fc.constantFrom('same', 'other', 'none'),
    extra: fc.option(fc.oneof(anyJson.map((v) => JSON.stringify(v) ?? 'null'), anyString, fc.constantFrom(...PROTO_FRAGMENTS), fc.constant(JSON.stringify(nested(40))))),
    filename: fc.option(fc.oneof(fc.constantFrom('a.txt', '../../etc/passwd', 'a\u0000.png', '', '.htaccess', 'x'.repeat(300) + '.jpg', 'é.gif'), anyString)),
    mime: fc.constantFrom('text/plain', 'image/png', 'image/svg+xml', 'video/mp4', 'application/octet-stream', '', 'text/html; charset=utf-7'),
    file: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), new Uint8Array([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70]), new Uint8Array([0xff, 0xd8, 0xff, 0xe0]))),
    truncated: fc.boolean(),
    fields: fc.integer({ min: 0, max: 12 }),
  })
  .map((p) => {
    const b = p.boundary;
    const parts: Buffer[] = [];
    for (let i = 0; i < p.fields; i++) parts.push(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nv\r\n`));
    if (p.extra !== null) parts.push(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="extra"\r\n\r\n${p.extra}\r\n`));
    const fn = p.filename === null ? '' : `; filename="${p.filename}"`;
    parts.push(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="file"${fn}\r\nContent-Type: ${p.mime}\r\n\r\n`), Buffer.from(p.file));
    if (!p.truncated) parts.push(Buffer.from(`\r\n--${b}--\r\n`));
    const declared = p.declared === 'same' ? `; boundary=${b}` : p.declared === 'other' ? '; boundary=elsewhere' : '';
    return { bytes: Buffer.concat(parts), contentType: `multipart/form-data${declared}` };
  });

type QueryMutation =
  | { kind: 'none' }
  | { kind: 'repeat'; at: number }
  | { kind: 'wrong'; at: number; value: string }
  | { kind: 'deep'; at: number; levels: number }
  | { kind: 'raw'; text: string };

function queryMutation(ctx: FuzzContext): fc.Arbitrary<QueryMutation> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('repeat' as const), at: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('wrong' as const), at: fc.nat(), value: fc.oneof(anyString, fc.constantFrom('{"a":1}', '[1,2]', '{"__proto__":{"x":1}}', '{"$where":"1"}', 'x'.repeat(5000), '1.5', '-5', '1e400')) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('deep' as const), at: fc.nat(), levels: fc.constantFrom(ctx.maxJsonDepth, ctx.maxJsonDepth + 1, 2000) }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('raw' as const), text: fc.constantFrom('%', '%ZZ', 'a=%FF%FE', 'a=%C0%AF', 'a=%ED%A0%80', '__proto__[x]=1', 'constructor[prototype][x]=1', '__proto__=1', 'a[b][c][d]=1', '&&&=&', 'q=%00', 'a=1&a=2&a=3', ';a=1') }),
    },
  );
}

function encodeQuery(value: Record<string, unknown> | undefined, m: QueryMutation): string {
  const entries: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(value ?? {})) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) entries.push([k, typeof x === 'string' ? x : JSON.stringify(x)]);
    else entries.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  const key = (at: number) => (entries.length ? entries[at % entries.length]![0] : ['q', 'limit', 'skip', 'where', 'before'][at % 5]!);
  switch (m.kind) {
    case 'repeat':
      if (entries.length) entries.push(entries[m.at % entries.length]!);
      break;
    case 'wrong':
      entries.push([key(m.at), m.value]);
      break;
    case 'deep':
      entries.push([key(m.at), JSON.stringify(nested(m.levels))]);
      break;
    default:
      break;
  }
  const text = entries.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&');
  const raw = m.kind === 'raw' ? m.text : '';
  const q = [text, raw].filter(Boolean).join('&');
  return q ? `?${q}` : '';
}

/** Path parameter values: existing ids, schema-generated ones, hostile ones (encoded, or raw on the wire). */
function paramArb(name: string, s: Schema | undefined, ctx: FuzzContext): fc.Arbitrary<string> {
  const pool = poolFor(name, ctx.pools);
  return fc.oneof(
    { weight: pool ? 6 : 0, arbitrary: fromPool(() => poolFor(name, ctx.pools)).map(pct) },
    { weight: 3, arbitrary: fromSchema(s, ctx, name).map((v) => pct(typeof v === 'string' ? v : String(v))) },
    { weight: 2, arbitrary: anyString.filter((v) => v.length > 0).map(pct) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%ZZ', '..%2F..%2Fetc', '%2e%2e', '%00', '%FF', '%C0%AF', '%ED%A0%80', 'a%2Fb', 'x'.repeat(600), '__proto__', 'constructor', '%E2%80%AE') },
  );
}

type CredKind = 'apiKey' | 'apiKeyAs' | 'token' | 'none' | 'forged' | 'wrongKey' | 'asStranger' | 'mixed' | 'dupKey' | 'hugeHeader' | 'lowerCase';

function credArb(auth: RouteDef['auth']): fc.Arbitrary<CredKind> {
  const bad = fc.constantFrom<CredKind>('none', 'forged', 'wrongKey', 'asStranger', 'mixed', 'dupKey', 'hugeHeader', 'lowerCase');
  const w = (apiKey: number, as: number, token: number, badW: number) =>
    fc.oneof(
      { weight: apiKey, arbitrary: fc.constant<CredKind>('apiKey') },
      { weight: as, arbitrary: fc.constant<CredKind>('apiKeyAs') },
      { weight: token, arbitrary: fc.constant<CredKind>('token') },
      { weight: badW, arbitrary: bad },
    );
  switch (auth) {
    case 'admin':
      return w(8, 1, 0, 2);
    case 'user':
      return w(0, 4, 5, 2);
    case 'public':
      return w(1, 0, 1, 6);
    default:
      return w(4, 2, 4, 2);
  }
}

function credHeaders(kind: CredKind, c: Creds): Array<[string, string]> {
  switch (kind) {
    case 'apiKey':
      return [['IM-API-KEY', c.apiKey]];
    case 'apiKeyAs':
      return [['IM-API-KEY', c.apiKey], ['IM-CLIENT-ID', c.userId]];
    case 'token':
      return [['IM-CLIENT-KEY', c.clientKey], ['IM-Authorization', c.token]];
    case 'none':
      return [];
    case 'forged':
      return [['IM-CLIENT-KEY', c.clientKey], ['IM-Authorization', `eyJhbGciOiJub25lIn0.eyJzdWIiOiIke2MudXNlcklkfSJ9.${c.token.slice(0, 8)}`]];
    case 'wrongKey':
      return [['IM-API-KEY', `${c.apiKey.slice(0, -2)}zz`]];
    case 'asStranger':
      return [['IM-API-KEY', c.apiKey], ['IM-CLIENT-ID', '__proto__']];
    case 'mixed':
      return [['IM-API-KEY', c.apiKey], ['IM-CLIENT-KEY', c.clientKey], ['IM-Authorization', c.token], ['IM-CLIENT-ID', 'nobody']];
    case 'dupKey':
      return [['IM-API-KEY', c.apiKey], ['IM-API-KEY', 'second-key'], ['IM-CLIENT-KEY', c.clientKey], ['IM-CLIENT-KEY', c.clientKey], ['IM-Authorization', c.token], ['IM-Authorization', 'x']];
    case 'hugeHeader':
      return [['IM-API-KEY', 'k'.repeat(9000)]];
    case 'lowerCase':
      return [['im-api-key', c.apiKey], ['Authorization', `Bearer ${c.token}`], ['CLIENT_KEY', c.clientKey]];
  }
}

type HeaderMutation = 'none' | 'dupContentType' | 'dupContentLength' | 'badContentLength' | 'latin1' | 'xff' | 'origin' | 'hostless' | 'chunked';

const headerMutation: fc.Arbitrary<HeaderMutation> = fc.oneof(
  { weight: 12, arbitrary: fc.constant<HeaderMutation>('none') },
  { weight: 1, arbitrary: fc.constantFrom<HeaderMutation>('dupContentType', 'dupContentLength', 'badContentLength', 'latin1', 'xff', 'origin', 'hostless', 'chunked') },
);

export interface HttpCase {
  /** "METHOD /pattern" of the route. */
  route: string;
  label: string;
  request: FuzzRequest;
  /** Sent over a real socket: duplicate or malformed headers that inject would merge or refuse. */
  raw: boolean;
}

/** One request for one route of the table, with its credentials, parameters, query, body and mutations. */
export function httpCaseArb(routes: RouteDef[], ctx: FuzzContext): fc.Arbitrary<HttpCase> {
  const perRoute = routes.map((route) => {
    const paramNames = [...route.url.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]!);
    const paramSchemas = ((route.schema?.params as Schema | undefined)?.properties ?? {}) as Record<string, Schema>;
    const params = paramNames.length ? fc.tuple(...paramNames.map((n) => paramArb(n, paramSchemas[n], ctx))) : fc.constant([] as string[]);
    const query = route.schema?.querystring ? (fromSchema(route.schema.querystring as Schema, ctx) as fc.Arbitrary<Record<string, unknown>>) : fc.constant(undefined);
    const hasBody = route.method !== 'GET';
    const body = hasBody && route.schema?.body ? fromSchema(route.schema.body as Schema, ctx) : hasBody ? fc.option(anyJson, { nil: undefined }) : fc.constant(undefined);
    const signed = route.signedAccess ? fc.option(fc.record({ signature: anyString, expires: fc.oneof(anyString, specialNumbers.map(String)) }), { nil: undefined }) : fc.constant(undefined);
    return fc
      .record({
        params,
        query,
        qm: queryMutation(ctx),
        body,
        bm: bodyMutation(route, ctx),
        multipart: route.multipart ? fc.option(multipartArb, { freq: 3, nil: undefined }) : fc.constant(undefined),
        cred: credArb(route.auth),
        hm: headerMutation,
        signed,
      })
      .map((g): HttpCase => {
        let i = 0;
        const path = route.url.replace(/:([A-Za-z_]+)/g, () => g.params[i++]!);
        const query = g.signed ? { ...(g.query ?? {}), ...g.signed } : g.query;
        const url = path + encodeQuery(query, g.qm);
        const enc = route.multipart && g.multipart ? { bytes: g.multipart.bytes, contentType: g.multipart.contentType } : route.method === 'GET' && g.bm.kind === 'none' ? { bytes: undefined, contentType: undefined } : encodeBody(g.body, g.bm);
        const headers: Array<[string, string]> = [...credHeaders(g.cred, ctx.creds)];
        if (enc.contentType !== undefined) headers.push(['content-type', enc.contentType]);
        let raw = g.cred === 'dupKey' || g.cred === 'hugeHeader';
        switch (g.hm) {
          case 'dupContentType':
            headers.push(['content-type', 'text/plain']);
            raw = true;
            break;
          case 'dupContentLength':
            headers.push(['content-length', String(enc.bytes?.length ?? 0)], ['content-length', String((enc.bytes?.length ?? 0) + 1)]);
            raw = true;
            break;
          case 'badContentLength':
            headers.push(['content-length', '-1']);
            raw = true;
            break;
          case 'latin1':
            headers.push(['X-Note', 'caf\xe9 \xff']);
            raw = true;
            break;
          case 'xff':
            headers.push(['X-Forwarded-For', '1.2.3.4, not-an-ip, ::1, 999.1.1.1'], ['X-Forwarded-For', '10.0.0.1']);
            raw = true;
            break;
          case 'origin':
            headers.push(['Origin', 'null'], ['Origin', 'https://evil.example']);
            raw = true;
            break;
          case 'hostless':
            headers.push(['Host', ''], ['Host', 'a']);
            raw = true;
            break;
          case 'chunked':
            headers.push(['transfer-encoding', 'chunked']);
            raw = true;
            break;
          default:
            break;
        }
        if (/%(?![0-9A-Fa-f]{2})|[^\x21-\x7e]/.test(url)) raw = true;
        return {
          route: `${route.method} ${route.url}`,
          label: `${route.method} ${url.length > 200 ? `${url.slice(0, 200)}…` : url} cred=${g.cred} body=${g.multipart ? 'multipart' : g.bm.kind} query=${g.qm.kind} headers=${g.hm}`,
          request: { method: route.method, url, headers, body: enc.bytes, raw },
          raw,
        };
      });
  });
  return fc.oneof(...perRoute);
}

/** What is wrong with an answer (undefined when nothing): a 5xx, an error outside the envelope, a leaked key. */
export function checkAnswer(c: HttpCase, a: FuzzAnswer, ctx: FuzzContext): string | undefined {
  if (a.status >= 500) return `${a.status}: ${a.raw.slice(0, 300)}`;
  if (a.raw.includes(ctx.creds.apiKey)) return `the answer carries the API key: ${a.raw.slice(0, 300)}`;
  const type = String(a.headers['content-type'] ?? '');
  if (a.status >= 400 && type.includes('application/json')) {
    let body: any;
    try {
      body = JSON.parse(a.raw);
    } catch {
      return `a ${a.status} whose JSON body does not parse: ${a.raw.slice(0, 300)}`;
    }
    if (body?.RC !== a.status || typeof body?.error !== 'string' || typeof body?.RM !== 'string') return `a ${a.status} outside the error envelope: ${a.raw.slice(0, 300)}`;
  }
  void c;
  return undefined;
}

/**
 * Sends a request over a fresh TCP connection exactly as given (repeated headers, raw bytes), and reads the
 * status line, headers and body of the answer. Hand-written because every HTTP client merges or refuses what the
 * fuzzer means to send.
 */
export function rawHttp(host: string, port: number, req: FuzzRequest): Promise<FuzzAnswer> {
  return new Promise((resolve, reject) => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    const names = new Set(req.headers.map(([k]) => k.toLowerCase()));
    if (!names.has('host')) lines.push(`Host: ${host}:${port}`);
    for (const [k, v] of req.headers) lines.push(`${k}: ${v}`);
    const chunked = req.headers.some(([k, v]) => k.toLowerCase() === 'transfer-encoding' && v === 'chunked');
    if (!names.has('content-length') && !chunked) lines.push(`Content-Length: ${req.body?.length ?? 0}`);
    lines.push('Connection: close', '', '');
    let body: Buffer = req.body ?? Buffer.alloc(0);
    if (chunked) body = Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
    const head = Buffer.from(lines.join('\r\n'), 'latin1');
    const socket = new net.Socket();
    const chunks: Buffer[] = [];
    socket.setTimeout(20_000, () => socket.destroy(new Error(`no answer to ${req.method} ${req.url}`)));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (err: Error & { code?: string }) => {
      // The server may close the connection after answering (a refused header): what was read counts.
      if (chunks.length) return;
      reject(err);
    });
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const text = all.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) {
        if (chunks.length === 0) reject(new Error(`the connection closed without an answer to ${req.method} ${req.url}`));
        else reject(new Error(`no status line in ${JSON.stringify(text.slice(0, 100))}`));
        return;
      }
      const headers: Record<string, string> = {};
      for (const line of text.slice(0, end).split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      let rawBody: Buffer = all.subarray(end + 4);
      if (headers['transfer-encoding'] === 'chunked') rawBody = dechunk(rawBody);
      resolve({ status: Number(m[1]), headers, raw: rawBody.toString('utf8') });
    });
    socket.connect(port, host, () => {
      socket.write(Buffer.concat([head, body]));
    });
  });
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) break;
    const n = parseInt(b.subarray(i, eol).toString('latin1'), 16);
    if (!n) break;
    out.push(b.subarray(eol + 2, eol + 2 + n));
    i = eol + 2 + n + 2;
  }
  return Buffer.concat(out);
}

/** A target that sends over real sockets only (a child process). */
export function socketTarget(host: string, port: number): FuzzTarget {
  return { send: (req) => rawHttp(host, port, req) };
}

