import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../src/errors.js';
import { type AddressKind, checkRoomWebhook, checkWebhookUrl, classifyAddress, isAllowedAddress, type Lookup, pinnedLookup, resolveAndVet } from '../src/webhooks/ssrf.js';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

// No test here sends traffic off this machine: "public" addresses are IP literals (no DNS), names are resolved
// only when they are localhost or go through a fake resolver.

describe('classifyAddress', () => {
  const table: Array<[string, AddressKind]> = [
    // IPv4, each range with its edges
    ['93.184.216.34', 'public'],
    ['8.8.8.8', 'public'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.255', 'loopback'],
    ['126.255.255.255', 'public'],
    ['128.0.0.0', 'public'],
    ['10.0.0.0', 'private'],
    ['10.255.255.255', 'private'],
    ['9.255.255.255', 'public'],
    ['11.0.0.0', 'public'],
    ['172.15.255.255', 'public'],
    ['172.16.0.0', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.0', 'public'],
    ['192.167.255.255', 'public'],
    ['192.168.0.0', 'private'],
    ['192.168.255.255', 'private'],
    ['192.169.0.0', 'public'],
    ['100.63.255.255', 'public'],
    ['100.64.0.0', 'carrierGradeNat'],
    ['100.127.255.255', 'carrierGradeNat'],
    ['100.128.0.0', 'public'],
    ['169.253.255.255', 'public'],
    ['169.254.0.0', 'linkLocal'],
    ['169.254.255.255', 'linkLocal'],
    ['169.255.0.0', 'public'],
    ['169.254.169.254', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['192.0.0.192', 'metadata'],
    ['0.0.0.0', 'unspecified'],
    ['0.255.255.255', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.255', 'multicast'],
    ['223.255.255.255', 'public'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    // IPv6
    ['2606:2800:220:1:248:1893:25c8:1946', 'public'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'linkLocal'],
    ['febf:ffff::1', 'linkLocal'],
    ['fec0::1', 'siteLocal'],
    ['fe80::1%eth0', 'linkLocal'],
    ['fc00::1', 'uniqueLocal'],
    ['fdff:ffff::1', 'uniqueLocal'],
    ['fd00:ec2::254', 'metadata'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'reserved'],
    ['100::1', 'reserved'],
    ['4000::1', 'reserved'],
    // IPv4-mapped, -compatible, -translated
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:100.64.0.1', 'carrierGradeNat'],
    ['::ffff:93.184.216.34', 'public'],
    ['::127.0.0.1', 'loopback'],
    ['::7f00:1', 'loopback'],
    ['::a9fe:a9fe', 'metadata'],
    ['::93.184.216.34', 'reserved'],
    ['::ffff:0:127.0.0.1', 'loopback'],
    // NAT64, 6to4, Teredo: the IPv4 address they carry
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['64:ff9b::93.184.216.34', 'public'],
    ['64:ff9b:1::1', 'reserved'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:c0a8:101::1', 'private'],
    ['2002:5db8:d822::1', 'public'],
    ['2001:0:4136:e378::80ff:fffe', 'loopback'], // client 127.0.0.1, inverted
    ['2001:0:a00:1::a247:27dd', 'private'], // server 10.0.0.1
    ['2001:0:4136:e378::a247:27dd', 'public'], // client 93.184.216.34
    // not addresses
    ['example.com', 'invalid'],
    ['127.1', 'invalid'],
    ['', 'invalid'],
  ];
  it.each(table)('%s is %s', (ip, kind) => {
    expect(classifyAddress(ip).kind).toBe(kind);
  });

  it('the private-networks setting opens private classes, never metadata, multicast, broadcast or unspecified', () => {
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.0.1', '192.168.1.1', '100.64.0.1', '169.254.1.1', '::1', 'fe80::1', 'fd12::1', '::ffff:127.0.0.1']) {
      expect([ip, isAllowedAddress(ip, false)]).toEqual([ip, false]);
      expect([ip, isAllowedAddress(ip, true)]).toEqual([ip, true]);
    }
    for (const ip of ['169.254.169.254', 'fd00:ec2::254', '::ffff:169.254.169.254', '224.0.0.1', 'ff02::1', '255.255.255.255', '0.0.0.0', '::', 'nonsense']) {
      expect([ip, isAllowedAddress(ip, true)]).toEqual([ip, false]);
    }
    expect(isAllowedAddress('93.184.216.34', false)).toBe(true);
  });
});

/** Runs the check and returns the AppError it threw (or fails the test). */
async function refusal(url: string, options: Parameters<typeof checkWebhookUrl>[1] = { allowPrivate: false }): Promise<AppError> {
  try {
    await checkWebhookUrl(url, options);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error(`${url} was accepted`);
}

/** A resolver that never leaves the process, and remembers what it was asked. */
function fakeLookup(answers: Record<string, string[]>): Lookup & { asked: string[] } {
  const asked: string[] = [];
  const fn = async (hostname: string) => {
    asked.push(hostname);
    const list = Object.hasOwn(answers, hostname) ? answers[hostname]! : undefined;
    if (!list) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return list.map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as 4 | 6 }));
  };
  return Object.assign(fn, { asked });
}

describe('checkWebhookUrl', () => {
  it('the URL parser turns decimal, hex, octal and short IPv4 forms into dotted quads, and they are refused', async () => {
    for (const url of ['http://2130706433/', 'http://0x7f.1/', 'http://0x7f000001/', 'http://0177.0.0.1/', 'http://127.1/', 'http://017700000001/', 'http://%31%32%37.0.0.1/']) {
      expect(new URL(url).hostname).toBe('127.0.0.1');
      const err = await refusal(url);
      expect([url, err.status, err.code]).toEqual([url, 400, 'WEBHOOK_URL_NOT_ALLOWED']);
      expect(err.message).toContain('webhook');
      expect(err.message).toContain('loopback');
    }
    expect((await refusal('http://0xa9fea9fe/latest/meta-data/')).message).toContain('metadata');
    expect((await refusal('http://0/')).message).toContain('unspecified');
  });

  it('IPv6 literals, mapped forms included, are refused by class', async () => {
    expect((await refusal('http://[::1]/')).message).toContain('loopback');
    expect((await refusal('http://[::ffff:7f00:1]/')).message).toContain('loopback');
    expect((await refusal('http://[::ffff:127.0.0.1]:8080/x')).message).toContain('loopback');
    expect((await refusal('https://[fd00:ec2::254]/')).message).toContain('metadata');
    expect((await refusal('http://[fe80::1]/')).message).toContain('link-local');
    expect((await refusal('http://[64:ff9b::10.0.0.1]/')).message).toContain('private');
  });

  it('refuses other schemes, user info, localhost names and non-URLs, without echoing the URL', async () => {
    const ftp = await refusal('ftp://93.184.216.34/');
    expect(ftp.message).toContain('only http: and https:');
    expect((await refusal('file:///etc/passwd')).message).toContain('only http: and https:');
    expect((await refusal('gopher://93.184.216.34/')).message).toContain('only http: and https:');
    const creds = await refusal('https://alice:s3cret-token@93.184.216.34/hook');
    expect(creds.message).toContain('user name or password');
    expect(creds.message).not.toContain('s3cret-token');
    expect(creds.toBody()).toMatchObject({ RC: 400, error: 'WEBHOOK_URL_NOT_ALLOWED', field: 'webhook' });
    expect((await refusal('https://93.184.216.34@10.0.0.1/')).message).toContain('user name or password');
    const lookup = fakeLookup({});
    for (const url of ['http://localhost/', 'http://LOCALHOST./x', 'http://api.localhost:8080/']) {
      expect((await refusal(url, { allowPrivate: false, lookup })).message).toContain('localhost');
    }
    expect(lookup.asked).toEqual([]);
    expect((await refusal('not a url')).message).toContain('not a valid absolute URL');
    const named = await refusal('http://127.0.0.1/secret-path?token=abc', { allowPrivate: false, field: 'url' });
    expect(named.message).toMatch(/^Invalid field url: /);
    expect(named.message).not.toContain('secret-path');
    expect(named.message).not.toContain('abc');
  });

  it('a public IP literal is allowed without any DNS lookup, and its address is returned', async () => {
    const lookup = fakeLookup({});
    const v4 = await checkWebhookUrl('https://93.184.216.34:8443/hook?x=1', { allowPrivate: false, lookup });
    expect(v4.addresses).toEqual([{ address: '93.184.216.34', family: 4 }]);
    expect(v4.url.port).toBe('8443');
    const v6 = await checkWebhookUrl('http://[2606:2800:220:1:248:1893:25c8:1946]/', { allowPrivate: false, lookup });
    expect(v6.addresses).toEqual([{ address: '2606:2800:220:1:248:1893:25c8:1946', family: 6 }]);
    expect(lookup.asked).toEqual([]);
  });

  it('a name is resolved and every address it resolves to must be allowed', async () => {
    const lookup = fakeLookup({
      'hooks.example': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
      'mixed.example': ['93.184.216.34', '10.0.0.5'],
      'rebind.example': ['::ffff:127.0.0.1'],
      'meta.example': ['169.254.169.254'],
    });
    const ok = await checkWebhookUrl('https://hooks.example/in', { allowPrivate: false, lookup });
    expect(ok.addresses.map((a) => a.address)).toEqual(['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946']);
    expect((await refusal('https://mixed.example/', { allowPrivate: false, lookup })).message).toContain('resolves to a private network address');
    expect((await refusal('https://rebind.example/', { allowPrivate: false, lookup })).message).toContain('resolves to a loopback address');
    expect((await refusal('https://meta.example/', { allowPrivate: true, lookup })).message).toContain('metadata');
    const missing = await refusal('https://nowhere.example/', { allowPrivate: false, lookup });
    expect(missing.message).toContain('does not resolve');
    const flaky: Lookup = async () => {
      throw Object.assign(new Error('temporary'), { code: 'EAI_AGAIN' });
    };
    expect((await refusal('https://hooks.example/', { allowPrivate: false, lookup: flaky })).message).toContain('try again');
    const never: Lookup = () => new Promise(() => {});
    expect((await refusal('https://hooks.example/', { allowPrivate: false, lookup: never, lookupTimeoutMs: 1 })).message).toContain('ETIMEOUT');
  });

  it('the real resolver: localhost resolves to loopback and is refused, allowed with the setting', async () => {
    const err = await resolveAndVet('localhost', { allowPrivate: false }).then(() => undefined, (e: AppError) => e);
    expect(err?.code).toBe('WEBHOOK_URL_NOT_ALLOWED');
    expect(err?.message).toContain('resolves to a loopback address');
    const vetted = await checkWebhookUrl('http://localhost:8080/hook', { allowPrivate: true });
    expect(vetted.addresses.length).toBeGreaterThan(0);
    for (const a of vetted.addresses) expect(classifyAddress(a.address).kind).toBe('loopback');
  });

  it('the setting allows private literals, never metadata or multicast', async () => {
    for (const url of ['http://127.0.0.1:9000/x', 'http://10.1.2.3/', 'http://[::1]/', 'http://192.168.0.10/', 'http://100.64.0.1/']) {
      await expect(checkWebhookUrl(url, { allowPrivate: true })).resolves.toMatchObject({ url: new URL(url) });
    }
    expect((await refusal('http://169.254.169.254/latest', { allowPrivate: true })).message).toContain('never receives webhooks');
    expect((await refusal('http://224.0.0.1/', { allowPrivate: true })).message).toContain('multicast');
    expect((await refusal('http://127.0.0.1/')).message).toContain('IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS');
  });
});

describe('checkRoomWebhook (a URL is vetted, a key is kept)', () => {
  it('whatever a URL parser would fetch is vetted; other values are keys', async () => {
    // new URL strips surrounding spaces and inner tabs and lower-cases the scheme: these are all URLs to 127.0.0.1.
    for (const value of [' http://127.0.0.1/', 'HTTP://127.0.0.1/', 'ht\ttp://127.0.0.1/', 'http:127.0.0.1', 'localhost:8080', 'javascript:alert(1)']) {
      const err = await checkRoomWebhook(value, false).then(() => undefined, (e: AppError) => e);
      expect([JSON.stringify(value), err?.code]).toEqual([JSON.stringify(value), 'WEBHOOK_URL_NOT_ALLOWED']);
    }
    for (const value of ['orders_endpoint', '65f0c0ffee0000000000abcd', '127.0.0.1:8080/x', '', undefined]) {
      await expect(checkRoomWebhook(value, false)).resolves.toBeUndefined();
    }
  });
});

describe('pinnedLookup (what the dispatcher connects with)', () => {
  it('connects to the vetted address without asking DNS again, keeps the Host header, refuses other names', async () => {
    const seen: string[] = [];
    const receiver = http.createServer((req, res) => {
      seen.push(String(req.headers.host));
      res.end('ok');
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const port = (receiver.address() as AddressInfo).port;
      const lookup = fakeLookup({ 'hooks.test': ['127.0.0.1'] });
      const vetted = await checkWebhookUrl(`http://hooks.test:${port}/in`, { allowPrivate: true, lookup });
      expect(lookup.asked).toEqual(['hooks.test']);
      const body = await new Promise<string>((resolve, reject) => {
        http.get(vetted.url, { lookup: pinnedLookup(vetted) }, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      expect(body).toBe('ok');
      expect(seen).toEqual([`hooks.test:${port}`]);
      expect(lookup.asked).toEqual(['hooks.test']);
      const other = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        pinnedLookup(vetted)('elsewhere.test', {}, (err) => resolve(err ?? undefined));
      });
      expect(other?.code).toBe('ENOTFOUND');
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});

describe.each(DIALECTS)('room webhook URLs are vetted (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);
  const refused = ['http://127.0.0.1/x', 'http://169.254.169.254/latest', 'http://[::1]/', 'http://localhost/', 'http://2130706433/', 'ftp://93.184.216.34/'];

  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
    for (const u of ['alice', 'bob']) tok[u] = await createUser(t, u);
  });
  afterAll(async () => t?.close());

  it('POST /rooms and createAndJoin with a refused URL: 400 naming webhook, no room stored', async () => {
    for (const [i, webhook] of refused.entries()) {
      for (const [url, headers] of [['/rooms', admin], ['/rooms', as('alice')], ['/rooms/createAndJoin', as('alice')]] as const) {
        const id = `ssrf-${i}-${url.length}-${headers === admin ? 'a' : 'u'}`;
        const res = await t.request({ method: 'POST', url, headers, body: { _id: id, name: 'x', webhook, members: ['alice'] } });
        expect([webhook, url, res.status, res.body.error]).toEqual([webhook, url, 400, 'WEBHOOK_URL_NOT_ALLOWED']);
        expect(res.body).toMatchObject({ RC: 400, field: 'webhook' });
        expect(res.body.message).toMatch(/^Invalid field webhook: /);
        const get = await t.request({ method: 'GET', url: `/rooms/${id}`, headers: admin });
        expect([id, get.status]).toEqual([id, 404]);
      }
    }
  });

  it('a public IP literal URL and a key are stored as sent', async () => {
    const url = await t.request({ method: 'POST', url: '/rooms', headers: as('alice'), body: { _id: 'hooked', webhook: 'https://93.184.216.34/imkit' } });
    expect(url.status).toBe(200);
    expect(url.body.result.webhook).toBe('https://93.184.216.34/imkit');
    const key = await t.request({ method: 'POST', url: '/rooms/createAndJoin', headers: as('alice'), body: { _id: 'keyed', webhook: 'orders_endpoint' } });
    expect(key.status).toBe(200);
    expect(key.body.result.webhook).toBe('orders_endpoint');
  });

  it('PUT /rooms/:id with a refused URL: 400, the room unchanged; a public URL or a key is applied', async () => {
    for (const webhook of refused) {
      const res = await t.request({ method: 'PUT', url: '/rooms/hooked', headers: as('alice'), body: { name: 'renamed', webhook } });
      expect([webhook, res.status, res.body.error]).toEqual([webhook, 400, 'WEBHOOK_URL_NOT_ALLOWED']);
      expect(res.body.message).toContain('webhook');
    }
    const after = await t.request({ method: 'GET', url: '/rooms/hooked', headers: admin });
    expect(after.body.result.webhook).toBe('https://93.184.216.34/imkit');
    expect(after.body.result.name).toBeUndefined();
    const ok = await t.request({ method: 'PUT', url: '/rooms/hooked', headers: as('alice'), body: { webhook: 'http://[2606:2800:220:1:248:1893:25c8:1946]:8080/h' } });
    expect([ok.status, ok.body.result.webhook]).toEqual([200, 'http://[2606:2800:220:1:248:1893:25c8:1946]:8080/h']);
    const key = await t.request({ method: 'PUT', url: '/rooms/hooked', headers: admin, body: { webhook: 'endpoint_2' } });
    expect([key.status, key.body.result.webhook]).toEqual([200, 'endpoint_2']);
  });

  it('a member who may not update the room gets 403, not a verdict on the URL', async () => {
    await t.request({ method: 'POST', url: '/rooms/hooked/members/bob', headers: admin, body: { systemMessage: false } });
    const res = await t.request({ method: 'PUT', url: '/rooms/hooked', headers: as('bob'), body: { webhook: 'http://127.0.0.1/' } });
    expect([res.status, res.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
  });
});

describe.each(DIALECTS)('IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true (%s)', (dialect) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(dialect, { webhookAllowPrivateNetworks: true });
  });
  afterAll(async () => t?.close());

  it('accepts a loopback webhook, still refuses the metadata address', async () => {
    const admin = { 'IM-API-KEY': t.apiKey };
    const ok = await t.request({ method: 'POST', url: '/rooms', headers: admin, body: { _id: 'local', webhook: 'http://127.0.0.1:8080/hook' } });
    expect([ok.status, ok.body.result.webhook]).toEqual([200, 'http://127.0.0.1:8080/hook']);
    const upd = await t.request({ method: 'PUT', url: '/rooms/local', headers: admin, body: { webhook: 'http://[::1]:9/x' } });
    expect([upd.status, upd.body.result.webhook]).toEqual([200, 'http://[::1]:9/x']);
    const meta = await t.request({ method: 'PUT', url: '/rooms/local', headers: admin, body: { webhook: 'http://169.254.169.254/latest' } });
    expect([meta.status, meta.body.error]).toEqual([400, 'WEBHOOK_URL_NOT_ALLOWED']);
  });
});
