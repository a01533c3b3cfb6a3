import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { type Config, defaultConfig } from '../src/config.js';
import { ManualClock } from '../src/lib/clock.js';
import { createServer, type ImkitServer } from '../src/server.js';

/**
 * The stores every test suite runs against: SQLite always; Postgres too when IMKIT_TEST_POSTGRES_URL is set
 * (.ci/run sets it, and then a missing Postgres fails the run instead of skipping).
 */
export const POSTGRES_URL = process.env.IMKIT_TEST_POSTGRES_URL;
export const DIALECTS: Array<'sqlite' | 'postgres'> = POSTGRES_URL ? ['sqlite', 'postgres'] : ['sqlite'];

export interface TestServer {
  server: ImkitServer;
  clock: ManualClock;
  logs: string[];
  apiKey: string;
  clientKey: string;
  appId: string;
  config: Config;
  /** Fastify inject with the JSON body encoded; returns status, headers and parsed body. */
  request(opts: { method: string; url: string; headers?: Record<string, string>; body?: unknown; payload?: string }): Promise<Res>;
  close(): Promise<void>;
}

export interface Res {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: any;
  raw: string;
}

export function tempDir(prefix = 'imkit-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Config for one isolated store: a new SQLite directory, or a new Postgres schema. */
export function isolatedStore(dialect: 'sqlite' | 'postgres'): Pick<Config, 'dataDir' | 'databaseUrl' | 'databaseSchema'> & { drop(): Promise<void> } {
  const dataDir = tempDir();
  if (dialect === 'sqlite') {
    return { dataDir, databaseUrl: undefined, databaseSchema: undefined, drop: async () => fs.rmSync(dataDir, { recursive: true, force: true }) };
  }
  if (!POSTGRES_URL) throw new Error('IMKIT_TEST_POSTGRES_URL is not set');
  const schema = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  return {
    dataDir,
    databaseUrl: POSTGRES_URL,
    databaseSchema: schema,
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        await client.query(`drop schema if exists ${schema} cascade`);
      } finally {
        await client.end();
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function startTestServer(dialect: 'sqlite' | 'postgres', overrides: Partial<Config> = {}): Promise<TestServer> {
  const store = isolatedStore(dialect);
  const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
  const logs: string[] = [];
  const logDestination = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const config = defaultConfig({ ...store, logLevel: 'info', port: 0, host: '127.0.0.1', ...overrides });
  const server = await createServer(config, { clock, logDestination });
  const created = server.bootstrap.createdDefault;
  if (!created) throw new Error('expected the default application to be created');
  return {
    server,
    clock,
    logs,
    config,
    apiKey: created.apiKey,
    clientKey: created.clientKey,
    appId: created.id,
    async request({ method, url, headers = {}, body, payload }) {
      const hasBody = body !== undefined;
      const res = await server.http.inject({
        method: method as 'GET',
        url,
        headers: { ...(hasBody ? { 'content-type': 'application/json' } : {}), ...headers },
        payload: hasBody ? JSON.stringify(body) : payload,
      });
      let parsed: unknown;
      try {
        parsed = JSON.parse(res.body);
      } catch {
        parsed = undefined;
      }
      return { status: res.statusCode, headers: res.headers, body: parsed, raw: res.body };
    },
    async close() {
      await server.close();
      await store.drop();
    },
  };
}

/** Creates a user with an issued token through the API, as the customer's backend would. */
export async function createUser(t: TestServer, id: string, apiKey = t.apiKey, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await t.request({ method: 'POST', url: '/admin/clients', headers: { 'IM-API-KEY': apiKey }, body: { _id: id, nickname: id, issueAccessToken: true, ...extra } });
  if (res.status !== 200) throw new Error(`createUser ${id}: ${res.status} ${res.raw}`);
  return res.body.result.token as string;
}

export function userHeaders(clientKey: string, token: string): Record<string, string> {
  return { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token };
}

/** A TCP port free on 127.0.0.1 right now (for a server process a test starts). */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts the built server (dist/main.js) on 127.0.0.1:`port` with `env` added, and waits for /healthz. */
export async function startServerProcess(port: number, env: Record<string, string | undefined>, output?: string[]): Promise<ChildProcess> {
  // `output`, when given, collects what the process prints (its log and stderr), for a failing test to show.
  const p = spawn(process.execPath, [path.resolve('dist/main.js'), 'start', '--port', String(port), '--host', '127.0.0.1'], { env: { ...process.env, ...env } as NodeJS.ProcessEnv, stdio: output ? ['ignore', 'pipe', 'pipe'] : 'ignore' });
  if (output) for (const stream of [p.stdout!, p.stderr!]) stream.on('data', (d: Buffer) => output.push(String(d)));
  for (let i = 0; i < 300; i++) {
    if ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  p.kill('SIGKILL');
  throw new Error('server did not start');
}
