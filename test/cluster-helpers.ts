import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, tempDir } from './helpers.js';

/**
 * Private Redis and PostgreSQL servers for tests that stop and restart them (cluster mode, issue 18): started on spare
 * ports in temporary directories, never the machine's shared ones.
 */
const run = promisify(execFile);

export class PrivateRedis {
  private proc: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<PrivateRedis> {
    return PrivateRedis.startOn(await freePort());
  }

  static async startOn(port: number): Promise<PrivateRedis> {
    const r = new PrivateRedis(port, tempDir('imkit-redis-'));
    await r.up();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const ok = await run('redis-cli', ['-p', String(this.port), 'ping']).then(
        (r) => r.stdout.trim() === 'PONG',
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('private redis-server did not start');
  }

  /** Kills the server at once (SIGKILL): connections drop without a goodbye. */
  async down(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    await this.down();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** PostgreSQL binaries of the machine (Debian keeps them under /usr/lib/postgresql/<version>/bin). */
function pgBin(name: string): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const p = path.join(root, v, 'bin', name);
    if (fs.existsSync(p)) return p;
  }
  return name;
}

export class PrivatePostgres {
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  /** initdb (a few seconds) and start; as root the server runs as the `postgres` user, which it insists on. */
  static async start(): Promise<PrivatePostgres> {
    const dir = tempDir('imkit-pg-');
    const pg = new PrivatePostgres(await freePort(), dir);
    if (process.getuid?.() === 0) await run('chown', ['-R', 'postgres', dir]);
    await pg.as(pgBin('initdb'), ['-D', pg.data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    await pg.up();
    return pg;
  }

  get data(): string {
    return path.join(this.dir, 'data');
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async up(): Promise<void> {
    await this.as(pgBin('pg_ctl'), ['-D', this.data, '-l', path.join(this.dir, 'log'), '-w', '-t', '30', '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`, 'start']);
  }

  /** Stops at once (immediate mode: connections are cut, as when the machine fails). */
  async down(): Promise<void> {
    await this.as(pgBin('pg_ctl'), ['-D', this.data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
  }

  async stop(): Promise<void> {
    await this.down();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private async as(cmd: string, args: string[]): Promise<void> {
    if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', cmd, ...args]);
    else await run(cmd, args);
  }
}

/**
 * A TCP link the test can cut and restore: one node reaches Redis through it, so that this node alone loses Redis
 * while the others keep it. (A relay this small is simpler than a proxy package; it only pipes bytes.)
 */
export class CuttableLink {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private constructor(
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  static async open(targetPort: number): Promise<CuttableLink> {
    const link = new CuttableLink(await freePort(), targetPort);
    await link.restore();
    return link;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Closes every connection through the link and refuses new ones until `restore`. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise((r) => server.close(r));
  }

  async restore(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((inbound) => {
      const outbound = net.connect(this.targetPort, '127.0.0.1');
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          this.sockets.delete(s);
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }
}
