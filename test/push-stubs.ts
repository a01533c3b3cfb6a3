import { execFileSync } from 'node:child_process';
import { createDecipheriv, createECDH, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import path from 'node:path';
import { decodeProtectedHeader, jwtVerify } from 'jose';

/**
 * Local stand-ins for the push services no machine here reaches (FCM, APNs) and a push service of a browser
 * (Web Push). Each checks exactly what it receives, as the real one would, and records what it accepted. Written
 * from the providers' documentation, independently of the server's code.
 */

export interface Accepted {
  token: string;
  body: any;
  headers: Record<string, unknown>;
}

/** What a stub answers for one request: 200 (default), an error status and body, or no answer at all. */
export type Verdict = { status?: number; body?: unknown; hang?: boolean };

function serverClose(server: http.Server | http2.Http2SecureServer, sockets: Set<net.Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

function track(server: http.Server | http2.Http2SecureServer): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

// ------------------------------------------------------------------------------------------------ FCM

export function serviceAccount(projectId = 'demo-project'): { json: Record<string, string>; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    json: {
      type: 'service_account',
      project_id: projectId,
      private_key_id: 'kid-1',
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      client_email: `push@${projectId}.iam.gserviceaccount.com`,
      token_uri: 'https://evil.example/token',
    },
    publicKey,
  };
}

/**
 * The OAuth2 token endpoint and the FCM HTTP v1 send endpoint. The token request must carry a JWT signed with the
 * service account's key (RS256) with iss = client_email, scope = firebase.messaging, aud = this token URL, a one
 * hour lifetime; a send must carry a token this stub issued and a well-formed message.
 */
export class FcmStub {
  readonly accepted: Accepted[] = [];
  readonly problems: string[] = [];
  tokenRequests = 0;
  sends = 0;
  verdict: (token: string, n: number) => Verdict = () => ({});
  private readonly issued = new Set<string>();
  private server!: http.Server;
  private sockets!: Set<net.Socket>;
  port = 0;

  constructor(
    private readonly sa: { json: Record<string, string>; publicKey: KeyObject },
    private readonly now: () => number,
  ) {}

  get tokenUrl(): string {
    return `http://127.0.0.1:${this.port}/token`;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void this.handle(req, Buffer.concat(chunks).toString('utf8'), res));
    });
    this.sockets = track(this.server);
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  private async handle(req: http.IncomingMessage, body: string, res: http.ServerResponse): Promise<void> {
    const json = (status: number, v: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(v));
    };
    if (req.url === '/token' && req.method === 'POST') {
      this.tokenRequests++;
      const form = new URLSearchParams(body);
      try {
        if (req.headers['content-type'] !== 'application/x-www-form-urlencoded') throw new Error('token request is not a form');
        if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') throw new Error('wrong grant_type');
        const assertion = form.get('assertion') ?? '';
        const { payload, protectedHeader } = await jwtVerify(assertion, this.sa.publicKey, {
          algorithms: ['RS256'],
          issuer: this.sa.json.client_email,
          audience: this.tokenUrl,
          currentDate: new Date(this.now()),
        });
        if (protectedHeader.kid !== this.sa.json.private_key_id) throw new Error('kid is not the service account key id');
        if (payload.scope !== 'https://www.googleapis.com/auth/firebase.messaging') throw new Error('wrong scope');
        if (typeof payload.iat !== 'number' || payload.exp !== payload.iat + 3600) throw new Error('exp is not iat + 1 h');
      } catch (err) {
        this.problems.push(`token: ${(err as Error).message}`);
        return json(400, { error: 'invalid_grant' });
      }
      const token = `ya29.${randomBytes(12).toString('hex')}`;
      this.issued.add(token);
      return json(200, { access_token: token, expires_in: 3599, token_type: 'Bearer' });
    }
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? '');
    if (!m || req.method !== 'POST') return json(404, { error: { code: 404, status: 'NOT_FOUND' } });
    const auth = String(req.headers.authorization ?? '');
    if (!auth.startsWith('Bearer ') || !this.issued.has(auth.slice(7))) {
      this.problems.push('send without a valid access token');
      return json(401, { error: { code: 401, status: 'UNAUTHENTICATED' } });
    }
    if (m[1] !== this.sa.json.project_id) {
      this.problems.push(`wrong project ${m[1]}`);
      return json(403, { error: { code: 403, status: 'PERMISSION_DENIED' } });
    }
    let parsed: any;
    try {
      parsed = JSON.parse(body);
    } catch {
      this.problems.push('send body is not JSON');
      return json(400, { error: { code: 400, status: 'INVALID_ARGUMENT' } });
    }
    const msg = parsed?.message;
    const token = msg?.token;
    const stringData = msg?.data === undefined || Object.values(msg.data).every((v) => typeof v === 'string');
    if (typeof token !== 'string' || !stringData) {
      this.problems.push('message without token or with non-string data');
      return json(400, { error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.data' }] }] } });
    }
    this.sends++;
    const v = this.verdict(token, this.sends);
    if (v.hang) return;
    if ((v.status ?? 200) === 200) {
      this.accepted.push({ token, body: parsed, headers: req.headers });
      return json(200, { name: `projects/${m[1]}/messages/${this.sends}` });
    }
    json(v.status!, v.body ?? {});
  }

  static unregistered(): Verdict {
    return { status: 404, body: { error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND', details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }] } } };
  }

  close(): Promise<void> {
    return serverClose(this.server, this.sockets);
  }
}

// ------------------------------------------------------------------------------------------------ APNs

/** A self-signed certificate for 127.0.0.1 made with the openssl CLI; answers the key, the cert and the cert's path. */
export function selfSignedCert(dir: string): { key: string; cert: string; certFile: string } {
  const keyFile = path.join(dir, 'apns-key.pem');
  const certFile = path.join(dir, 'apns-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8'), certFile };
}

export function apnsKey(): { p8: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { p8: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, publicKey };
}

/**
 * APNs over HTTP/2 and TLS: POST /3/device/<token> with `authorization: bearer <ES256 JWT>` (kid = key id,
 * iss = team id, signed by the .p8 key), `apns-topic`, `apns-push-type`, `apns-priority`; answers 200 or
 * 400/410 with a `reason`, as Apple documents.
 */
export class ApnsStub {
  readonly accepted: Accepted[] = [];
  readonly problems: string[] = [];
  verdict: (token: string) => Verdict = () => ({});
  private server!: http2.Http2SecureServer;
  private sockets!: Set<net.Socket>;
  port = 0;

  constructor(
    private readonly tls: { key: string; cert: string },
    private readonly creds: { keyId: string; teamId: string; bundleId: string; publicKey: KeyObject },
    private readonly now: () => number,
  ) {}

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    // allowHTTP1 false: a client that does not speak HTTP/2 fails (APNs is HTTP/2 only).
    this.server = http2.createSecureServer({ key: this.tls.key, cert: this.tls.cert, allowHTTP1: false });
    this.server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => void this.handle(stream, headers, Buffer.concat(chunks).toString('utf8')));
    });
    this.sockets = track(this.server);
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  private async handle(stream: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, body: string): Promise<void> {
    const answer = (status: number, reason?: string) => {
      if (stream.destroyed) return;
      stream.respond({ ':status': status, 'apns-id': randomBytes(8).toString('hex') });
      stream.end(reason ? JSON.stringify({ reason }) : undefined);
    };
    const m = /^\/3\/device\/([0-9a-f]+)$/.exec(String(h[':path']));
    if (h[':method'] !== 'POST' || !m) return answer(404, 'BadPath');
    const auth = String(h.authorization ?? '');
    try {
      if (!auth.startsWith('bearer ')) throw new Error('no bearer token');
      const jwt = auth.slice(7);
      const header = decodeProtectedHeader(jwt);
      if (header.alg !== 'ES256' || header.kid !== this.creds.keyId) throw new Error(`header ${JSON.stringify(header)}`);
      const { payload } = await jwtVerify(jwt, this.creds.publicKey, { algorithms: ['ES256'], issuer: this.creds.teamId, currentDate: new Date(this.now()) });
      if (typeof payload.iat !== 'number' || Math.abs(payload.iat * 1000 - this.now()) > 3_600_000) throw new Error('iat is not within the hour');
    } catch (err) {
      this.problems.push(`auth: ${(err as Error).message}`);
      return answer(403, 'InvalidProviderToken');
    }
    if (h['apns-push-type'] !== 'alert' || h['apns-priority'] !== '10' || typeof h['apns-topic'] !== 'string') {
      this.problems.push(`headers ${JSON.stringify(h)}`);
      return answer(400, 'MissingTopic');
    }
    let parsed: any;
    try {
      parsed = JSON.parse(body);
    } catch {
      return answer(400, 'PayloadEmpty');
    }
    if (typeof parsed?.aps !== 'object' || Buffer.byteLength(body) > 4096) return answer(400, 'PayloadTooLarge');
    const v = this.verdict(m[1]!);
    if (v.hang) return;
    if ((v.status ?? 200) !== 200) return answer(v.status!, (v.body as string | undefined) ?? undefined);
    this.accepted.push({ token: m[1]!, body: parsed, headers: { ...h } });
    answer(200);
  }

  close(): Promise<void> {
    return serverClose(this.server, this.sockets);
  }
}

// ------------------------------------------------------------------------------------------------ Web Push

/** A browser's push subscription: an ECDH P-256 key pair and a 16-byte auth secret, as PushManager.subscribe makes. */
export function browserSubscription(endpoint: string) {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return {
    ecdh,
    auth,
    json: { endpoint, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } },
  };
}

/** RFC 8291 / RFC 8188 (aes128gcm, one record), written out from the RFCs: the user agent's side. */
export function decryptAes128gcm(body: Buffer, ecdh: ReturnType<typeof createECDH>, auth: Buffer): string {
  const salt = body.subarray(0, 16);
  const idlen = body[20]!;
  const asPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  const secret = ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), asPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', secret, auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const plain = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  // Padding: the last record ends with the delimiter 0x02 followed by zeros.
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (plain[end] !== 2) throw new Error('no padding delimiter');
  return plain.subarray(0, end).toString('utf8');
}

/**
 * A browser vendor's push service: POST /push/<id> with `content-encoding: aes128gcm`, a TTL, and
 * `authorization: vapid t=<ES256 JWT>, k=<VAPID public key>` whose JWT names this origin as `aud` and the
 * application's subject as `sub`. The payload is decrypted with the subscription's private key and auth secret.
 */
export class WebPushStub {
  readonly accepted: Array<Accepted & { plain: any }> = [];
  readonly problems: string[] = [];
  readonly subs = new Map<string, ReturnType<typeof browserSubscription>>();
  verdict: (id: string) => Verdict = () => ({});
  vapid: { publicKey: string; subject: string } | undefined;
  private server!: http.Server;
  private sockets!: Set<net.Socket>;
  port = 0;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void this.handle(req, Buffer.concat(chunks), res));
    });
    this.sockets = track(this.server);
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  subscribe(id: string) {
    const s = browserSubscription(`http://127.0.0.1:${this.port}/push/${id}`);
    this.subs.set(id, s);
    return s.json;
  }

  private async handle(req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): Promise<void> {
    const end = (status: number) => {
      res.writeHead(status);
      res.end();
    };
    const id = /^\/push\/([\w-]+)$/.exec(req.url ?? '')?.[1];
    const sub = id === undefined ? undefined : this.subs.get(id);
    if (!sub || req.method !== 'POST') return end(404);
    try {
      if (req.headers['content-encoding'] !== 'aes128gcm') throw new Error('content-encoding is not aes128gcm');
      if (!/^\d+$/.test(String(req.headers.ttl ?? ''))) throw new Error('no TTL');
      const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(String(req.headers.authorization ?? ''));
      if (!m) throw new Error(`authorization is not VAPID: ${req.headers.authorization}`);
      if (!this.vapid || m[2] !== this.vapid.publicKey) throw new Error('k is not the application server key');
      const raw = Buffer.from(m[2]!, 'base64url');
      const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') }, format: 'jwk' });
      const { payload } = await jwtVerify(m[1]!, key, { algorithms: ['ES256'], audience: `http://127.0.0.1:${this.port}`, subject: this.vapid.subject });
      if (typeof payload.exp !== 'number' || payload.exp * 1000 < Date.now() || payload.exp * 1000 > Date.now() + 24 * 3_600_000) throw new Error('exp is not within 24 h');
    } catch (err) {
      this.problems.push((err as Error).message);
      return end(403);
    }
    let plain: any;
    try {
      plain = JSON.parse(decryptAes128gcm(body, sub.ecdh, sub.auth));
    } catch (err) {
      this.problems.push(`decrypt: ${(err as Error).message}`);
      return end(400);
    }
    const v = this.verdict(id!);
    if (v.hang) return;
    if ((v.status ?? 201) !== 201) return end(v.status!);
    this.accepted.push({ token: id!, body: null, headers: req.headers, plain });
    end(201);
  }

  close(): Promise<void> {
    return serverClose(this.server, this.sockets);
  }
}
