import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Ignore } from '@balena/dockerignore';
import { Ajv } from 'ajv';
import { DCLinter } from 'dclint';
import { DockerfileParser } from 'dockerfile-ast';
import { validate as lintDockerfile, ValidationSeverity } from 'dockerfile-utils';
import dotenv from 'dotenv';
import { parse as parseNginx } from 'nginx-conf';
import type { NginxParseTreeNode } from 'nginx-conf/dist/src/parser.js';
import { io as ioV4, type Socket } from 'socket.io-client';
// @ts-expect-error no types for the aliased v2 package (Engine.IO 3, the old SDKs' protocol)
import ioV2 from 'socket.io-client-v2';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, SETTINGS } from '../src/config.js';
import { parseDuration } from '../src/lib/duration.js';
import { freePort, startServerProcess, startTestServer, tempDir } from './helpers.js';

/**
 * The deployment files (docs/deploy.md) checked with real tools, and against the code: Dockerfile (dockerfile-utils'
 * linter, then our rules on dockerfile-ast's parse), compose.yaml (the Compose Specification's JSON schema, as
 * shipped by dclint, then dclint's rules), deploy/nginx.conf (nginx -t, then a real nginx in front of three real
 * server processes), the systemd unit (systemd-analyze verify and security). No container engine runs here, so
 * the image itself is not built by this test.
 */
const run = promisify(execFile);
// A CommonJS module whose types declare an ES default export: loaded with require to get module.exports as typed.
const dockerignore = createRequire(import.meta.url)('@balena/dockerignore') as (options?: { ignorecase?: boolean }) => Ignore;
const read = (file: string) => fs.readFileSync(path.resolve(file), 'utf8');
const setting = (env: string) => {
  const s = SETTINGS.find((x) => x.env === env);
  if (!s) throw new Error(`no setting ${env} in src/config.ts`);
  return s;
};
const ms = (text: string) => {
  const v = parseDuration(text);
  if (v === undefined) throw new Error(`not a duration: ${text}`);
  return v;
};
const DEFAULT_PORT = Number(setting('PORT').default);
const SHUTDOWN_DEFAULT_MS = ms(setting('IMKIT_SHUTDOWN_TIMEOUT').default!);

/**
 * Settings that cluster mode (issue #18) adds to src/config.ts, in a change made beside this one. Each is accepted
 * here whether or not SETTINGS has it yet; once it does, the name can leave this list.
 */
const KNOWN_ENV = new Set(SETTINGS.map((s) => s.env));

/**
 * Compose's interpolation for the forms compose.yaml uses (${VAR}, ${VAR:-default}, ${VAR:?message}), applied to a
 * parsed value. No npm package implements the Compose Specification's interpolation; this covers those three forms
 * and throws on any other, so a new form in compose.yaml fails here instead of passing unread.
 */
function interpolate(value: unknown, vars: Record<string, string>): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([^}]*)\}/g, (_all, expr: string) => {
      const m = /^([A-Z_][A-Z0-9_]*)(?:(:-|:\?)(.*))?$/.exec(expr);
      if (!m) throw new Error(`interpolation form not handled: \${${expr}}`);
      const [, name, op, arg] = m;
      const v = vars[name!];
      if (op === ':?' && !v) throw new Error(`required variable ${name}: ${arg}`);
      return v || (op === ':-' ? arg! : '');
    });
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, vars));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, vars)]));
  return value;
}

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  const df = DockerfileParser.parse(text);
  const froms = df.getFROMs();
  const instructions = df.getInstructions();
  const finalStage = instructions.slice(instructions.lastIndexOf(froms.at(-1)!));
  const jsonArgs = (keyword: string, stage = finalStage) => {
    const found = stage.filter((i) => i.getKeyword() === keyword);
    expect(found, `one ${keyword} in the final stage`).toHaveLength(1);
    return JSON.parse(found[0]!.getArgumentsContent()!) as string[];
  };

  it("passes dockerfile-utils' linter with every check an error", () => {
    const all = ValidationSeverity.ERROR;
    const problems = lintDockerfile(text, {
      deprecatedMaintainer: all, directiveCasing: all, emptyContinuationLine: all, instructionCasing: all, instructionCmdMultiple: all,
      instructionEntrypointMultiple: all, instructionHealthcheckMultiple: all, instructionJSONInSingleQuotes: all, instructionWorkdirRelative: all,
    });
    expect(problems.map((p) => `line ${p.range.start.line + 1}: ${p.message}`)).toEqual([]);
    // The linter does find problems: a broken copy of the file is refused.
    expect(lintDockerfile(text.replace('EXPOSE 3000', 'EXPOSE port').replace('USER node', 'USER'))).toHaveLength(2);
  });

  it('builds in one stage and runs from another, both on the same pinned Node.js LTS base', () => {
    expect(froms).toHaveLength(2);
    const [build, runtime] = froms.map((f) => f.getExpandedArguments()[0]!.getValue());
    expect(build).toBe(runtime);
    expect(build).toMatch(/^node:(22|24)-bookworm-slim$/);
    for (const f of froms) expect(f.getImageTag()).not.toMatch(/^(latest|lts|current)?$/);
    // engines in package.json names the lines the ARG may choose from.
    const engines = JSON.parse(read('package.json')).engines.node as string;
    const nodeLine = /^node:(\d+)-/.exec(build!)![1];
    expect(engines).toContain(`^${nodeLine}.`);
    // The build stage installs everything and builds (TypeScript and the dashboard), then drops the dev packages.
    const buildStage = instructions.slice(instructions.indexOf(froms[0]!), instructions.indexOf(froms[1]!));
    const runs = buildStage.filter((i) => i.getKeyword() === 'RUN').map((i) => i.getArgumentsContent()!);
    const ci = runs.findIndex((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r));
    const buildAndPrune = runs.findIndex((r) => /npm run build[\s\S]*npm prune --omit=dev/.test(r));
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(buildAndPrune).toBeGreaterThan(ci);
    expect(JSON.parse(read('package.json')).scripts.build).toContain('scripts/build-web.mjs');
  });

  it('copies only production node_modules, dist and package files into the runtime stage', () => {
    const copies = finalStage.filter((i) => i.getKeyword() === 'COPY');
    for (const c of copies) expect((c as unknown as { getFromFlag(): { getValue(): string } | null }).getFromFlag()?.getValue()).toBe(froms[0]!.getBuildStage());
    const sources = copies.flatMap((c) => c.getArguments().slice(0, -1).map((a) => a.getValue()));
    expect(sources.sort()).toEqual(['/app/dist', '/app/node_modules', '/app/package-lock.json', '/app/package.json']);
  });

  it('runs as the non-root node user, with /data as a volume, the default port exposed and the CLI start as entry', () => {
    const users = finalStage.filter((i) => i.getKeyword() === 'USER').map((i) => i.getArgumentsContent());
    expect(users.at(-1)).toBe('node');
    expect(jsonArgs('VOLUME')).toEqual(['/data']);
    const env = finalStage.filter((i) => i.getKeyword() === 'ENV').flatMap((i) => i.getArguments().map((a) => a.getValue()));
    expect(env).toContain('IMKIT_DATA_DIR=/data');
    expect(Number(finalStage.find((i) => i.getKeyword() === 'EXPOSE')!.getArgumentsContent())).toBe(DEFAULT_PORT);
    const bin = JSON.parse(read('package.json')).bin['imkit-server'] as string;
    expect([...jsonArgs('ENTRYPOINT'), ...jsonArgs('CMD')]).toEqual(['node', `/app/${bin}`, 'start']);
  });

  it('keeps secrets and host builds out of the build context, and lets in every file the build copies', () => {
    const ig = dockerignore({ ignorecase: false }).add(read('.dockerignore'));
    for (const kept of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build-web.mjs', 'src/main.ts', 'src/config.ts', 'web/app.css', 'web/dashboard/main.tsx']) {
      expect(ig.ignores(kept), kept).toBe(false);
    }
    for (const dropped of ['.env', 'node_modules/ws/package.json', 'dist/main.js', 'data/imkit.sqlite', '.git/HEAD', 'test/helpers.ts']) {
      expect(ig.ignores(dropped), dropped).toBe(true);
    }
    // Every path the build stage copies from the context is let in.
    const buildStage = instructions.slice(0, instructions.indexOf(froms[1]!));
    for (const c of buildStage.filter((i) => i.getKeyword() === 'COPY')) {
      for (const a of c.getArguments().slice(0, -1)) {
        expect(fs.existsSync(a.getValue()), a.getValue()).toBe(true);
        expect(ig.ignores(a.getValue()), a.getValue()).toBe(false);
      }
    }
  });

  it('has a HEALTHCHECK on a real route that uses node itself: 0 on a healthy server, 1 when none answers', async () => {
    const hc = df.getHEALTHCHECKs();
    expect(hc).toHaveLength(1);
    const content = hc[0]!.getArgumentsContent()!;
    const argv = JSON.parse(content.slice(content.indexOf('CMD') + 3)) as string[];
    expect(argv[0]).toBe('node');
    expect(content).not.toMatch(/\b(curl|wget)\b/);
    const urlPath = /\/healthz\b/.exec(argv.join(' '))?.[0];
    const t = await startTestServer('sqlite');
    try {
      expect(t.server.routes.some((r) => r.method === 'GET' && r.url === urlPath)).toBe(true);
      const port = Number(new URL(await t.server.listen()).port);
      const code = (p: number) => new Promise<number | null>((resolve) => spawn(process.execPath, argv.slice(1), { env: { ...process.env, PORT: String(p) }, stdio: 'ignore' }).on('exit', resolve));
      expect(await code(port)).toBe(0);
      expect(await code(await freePort())).toBe(1);
    } finally {
      await t.close();
    }
  });
});

describe('compose.yaml', () => {
  const text = read('compose.yaml');
  const raw = parseYaml(text, { merge: true }) as Record<string, any>;
  const vars = { POSTGRES_PASSWORD: 'compose-test-password' };
  const compose = interpolate(raw, vars) as Record<string, any>;
  const services = compose.services as Record<string, any>;
  const nodeNames = Object.keys(services).filter((n) => services[n].image === services['imkit-1'].image);

  it('is valid against the Compose Specification schema', () => {
    // dclint ships the Compose Specification's JSON schema (compose-spec/compose-go's compose_spec.json).
    const schemaFile = path.join(path.dirname(createRequire(import.meta.url).resolve('dclint/package.json')), 'schemas/compose.schema.json');
    const { $schema: _draft, ...schema } = JSON.parse(fs.readFileSync(schemaFile, 'utf8'));
    expect(schema.title).toBe('Compose Specification');
    const check = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true }).compile(schema);
    expect(check(raw) ? [] : check.errors).toEqual([]);
    expect(check(compose) ? [] : check.errors).toEqual([]);
    // The schema does refuse a wrong file: an unknown service key and a bad depends_on condition.
    const broken = structuredClone(raw);
    broken.services['imkit-1'].restart_policy = 'always';
    broken.services['imkit-2'].depends_on.postgres.condition = 'healthy';
    expect(check(broken)).toBe(false);
    expect(check.errors!.length).toBeGreaterThanOrEqual(2);
  });

  it("passes dclint's rules", () => {
    const [result] = new DCLinter({ rules: {}, quiet: true, debug: false, exclude: [] }).lintFiles([path.resolve('compose.yaml')], false);
    expect(result!.messages.map((m: { line: number; rule: string; message: string }) => `${m.line}: ${m.rule}: ${m.message}`)).toEqual([]);
  });

  it('runs three identical server nodes on PostgreSQL with Redis, agreeing on every setting', () => {
    expect(nodeNames).toEqual(['imkit-1', 'imkit-2', 'imkit-3']);
    const [first, ...others] = nodeNames.map((n) => services[n]);
    for (const o of others) expect(o.environment).toEqual(first.environment);
    const env = first.environment as Record<string, string>;
    expect(new URL(env.DATABASE_URL!).protocol).toBe('postgres:');
    expect(new URL(env.DATABASE_URL!).hostname).toBe('postgres');
    expect(new URL(env.REDIS_URL!).hostname).toBe('redis');
    expect(services.postgres.image).toMatch(/^postgres:(1[6-9]|[2-9]\d)(\.|-|$)/);
    expect(services.redis.image).toMatch(/^redis:7(\.|-|$)/);
    // Every variable given to a node is a setting of src/config.ts, and the values pass its checks.
    for (const name of Object.keys(env)) expect(KNOWN_ENV.has(name), name).toBe(true);
    const config = loadConfig({}, env);
    expect(config.databaseUrl).toBe(env.DATABASE_URL);
    expect(config.trustProxy).not.toBe(false);
    // Interpolated variables named like settings are settings too (the rest are compose's own: ports, passwords).
    for (const m of text.matchAll(/\$\{(IMKIT_[A-Z0-9_]*)/g)) expect(KNOWN_ENV.has(m[1]!), m[1]).toBe(true);
    // Only nginx publishes a port; the nodes are reached through it.
    for (const n of nodeNames) expect(services[n].ports).toBeUndefined();
    expect(services.nginx.ports).toHaveLength(1);
    expect(services.nginx.ports[0].target).toBe(80);
    expect(services.nginx.volumes).toContain('./deploy/nginx.conf:/etc/nginx/nginx.conf:ro');
  });

  it('starts each part once what it needs is healthy, and stops a node only after its drain deadline', () => {
    for (const name of ['postgres', 'redis']) expect(services[name].healthcheck.test.length).toBeGreaterThan(1);
    for (const n of nodeNames) {
      expect(services[n].depends_on.postgres.condition).toBe('service_healthy');
      expect(services[n].depends_on.redis.condition).toBe('service_healthy');
      const deadline = ms(services[n].environment.IMKIT_SHUTDOWN_TIMEOUT ?? setting('IMKIT_SHUTDOWN_TIMEOUT').default!);
      expect(ms(services[n].stop_grace_period)).toBeGreaterThan(deadline);
      // The image's HEALTHCHECK is the one used (docker compose has no override here).
      expect(services[n].healthcheck).toBeUndefined();
    }
    for (const n of ['imkit-2', 'imkit-3']) expect(services[n].depends_on['imkit-1'].condition).toBe('service_healthy');
    for (const n of nodeNames) expect(services.nginx.depends_on[n].condition).toBe('service_healthy');
  });

  it('gives every node the same uploaded files', () => {
    for (const n of nodeNames) {
      expect(services[n].environment.IMKIT_FILE_STORAGE).toBe('local');
      expect(services[n].volumes).toContain('files:/data/files');
    }
    expect(Object.keys(compose.volumes)).toContain('files');
    // /data/files is the default file directory under the image's data directory.
    expect(read('Dockerfile')).toMatch(/mkdir -p \/data\/files/);
    expect(services['imkit-1'].environment.IMKIT_FILE_DIR).toBeUndefined();
  });
});

/** nginx-conf's parse tree: the child directives of a block with a given name. */
const children = (node: NginxParseTreeNode, name: string) => (node.children ?? []).filter((c) => c.name === name);
const only = (node: NginxParseTreeNode, name: string) => {
  const found = children(node, name);
  if (found.length !== 1) throw new Error(`expected one ${name} in ${node.name} ${node.value}, found ${found.length}`);
  return found[0]!;
};
/** The directive as nginx applies it inside `chain` (innermost last): the innermost block that sets it wins whole. */
const effective = (chain: NginxParseTreeNode[], name: string) => {
  for (const block of [...chain].reverse()) {
    const found = children(block, name);
    if (found.length > 0) return found.map((d) => String(d.value));
  }
  return [];
};

describe('deploy/nginx.conf', () => {
  const text = read('deploy/nginx.conf');
  let root: NginxParseTreeNode;
  beforeAll(async () => {
    root = await new Promise<NginxParseTreeNode>((resolve, reject) => parseNginx(text, (err, tree) => (err || !tree ? reject(err ?? new Error('no tree')) : resolve(tree))));
  });
  const nodes = ['imkit-1', 'imkit-2', 'imkit-3'];
  /** The file with the nodes' host names replaced by local ports and the listener moved, as the tests run it. */
  const localCopy = (dir: string, listen: string, ports: number[]) => {
    let replaced = 0;
    const out = text
      .replace(/server (imkit-\d):(\d+)/g, (_all, host: string, port: string) => {
        expect(Number(port)).toBe(DEFAULT_PORT);
        replaced++;
        return `server 127.0.0.1:${ports[nodes.indexOf(host)]}`;
      })
      .replace(/^(\s*)listen 80;/m, `$1listen ${listen};`)
      .replace('access_log /var/log/nginx/access.log ', `access_log ${dir}/access.log `);
    expect(replaced).toBe(6);
    fs.writeFileSync(path.join(dir, 'nginx.conf'), out);
    return path.join(dir, 'nginx.conf');
  };

  it('passes nginx -t', async () => {
    const dir = tempDir('imkit-nginx-');
    try {
      const conf = localCopy(dir, '127.0.0.1:80', [3001, 3002, 3003]);
      const { stderr } = await run('/usr/sbin/nginx', ['-t', '-p', dir, '-c', conf, '-g', `pid ${dir}/nginx.pid;`]);
      expect(stderr).toContain('syntax is ok');
      expect(stderr).toContain('test is successful');
      // nginx -t does refuse a broken copy.
      fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace('least_conn;', 'least_conn'));
      await expect(run('/usr/sbin/nginx', ['-t', '-p', dir, '-c', conf, '-g', `pid ${dir}/nginx.pid;`])).rejects.toThrow(/least_conn/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('balances over the three compose nodes, sticky only for long-polling sessions', () => {
    const http = only(root, 'http');
    const upstreams = Object.fromEntries(children(http, 'upstream').map((u) => [u.value, u]));
    expect(Object.keys(upstreams).sort()).toEqual(['imkit', 'imkit_sticky']);
    for (const u of Object.values(upstreams)) expect(children(u, 'server').map((s) => String(s.value).split(' ')[0])).toEqual(nodes.map((n) => `${n}:${DEFAULT_PORT}`));
    expect(children(upstreams.imkit!, 'least_conn')).toHaveLength(1);
    expect(only(upstreams.imkit_sticky!, 'hash').value).toBe('$remote_addr consistent');
    const socketMap = children(http, 'map').find((m) => m.value === '"$arg_transport:$arg_sid" $imkit_socket_upstream')!;
    expect(socketMap.children!.map((c) => `${c.name} ${c.value}`)).toEqual(['"~^websocket:$" imkit', 'default imkit_sticky']);
    const composeNodes = Object.keys((parseYaml(read('compose.yaml'), { merge: true }) as any).services).filter((n) => n.startsWith('imkit-'));
    expect(composeNodes).toEqual(nodes);
  });

  it('forwards the client address, scheme and host on every location, and websocket upgrades on /socket.io/', () => {
    const http = only(root, 'http');
    const server = only(http, 'server');
    const upgradeMap = children(http, 'map').find((m) => m.value === '$http_upgrade $connection_upgrade');
    expect(upgradeMap).toBeDefined();
    const locations = children(server, 'location');
    expect(locations.map((l) => l.value).sort()).toEqual(['/', '/socket.io/']);
    for (const loc of locations) {
      const chain = [http, server, loc];
      // proxy_set_header in a location replaces the server's list whole: each location must carry the lot.
      const headers = effective(chain, 'proxy_set_header');
      expect(headers, loc.value).toEqual(expect.arrayContaining(['Host $http_host', 'X-Forwarded-For $proxy_add_x_forwarded_for', 'X-Forwarded-Proto $scheme']));
      expect(effective(chain, 'proxy_http_version')).toEqual(['1.1']);
      if (loc.value === '/socket.io/') {
        expect(headers).toEqual(expect.arrayContaining(['Upgrade $http_upgrade', 'Connection $connection_upgrade']));
        expect(effective(chain, 'proxy_pass')).toEqual(['http://$imkit_socket_upstream']);
        // A socket is silent at most IMKIT_PING_INTERVAL (then a ping), and closed after IMKIT_PING_TIMEOUT more.
        const silence = ms(setting('IMKIT_PING_INTERVAL').default!) + ms(setting('IMKIT_PING_TIMEOUT').default!);
        expect(ms(effective(chain, 'proxy_read_timeout')[0]!)).toBeGreaterThan(silence);
        expect(effective(chain, 'proxy_buffering')).toEqual(['off']);
      } else {
        expect(headers).toContain('Connection ""');
        expect(effective(chain, 'proxy_pass')).toEqual(['http://imkit']);
      }
    }
    // Uploads up to the server's default limit pass nginx.
    const maxBody = /^(\d+)m$/.exec(effective([http, server], 'client_max_body_size')[0]!)!;
    const fileMax = /^(\d+)mb$/.exec(setting('IMKIT_FILE_MAX_SIZE').default!)!;
    expect(Number(maxBody[1])).toBeGreaterThan(Number(fileMax[1]));
  });

  describe('in front of three server processes', () => {
    const procs: ChildProcess[] = [];
    const outputs: string[][] = [[], [], []];
    const dirs: string[] = [];
    let accessLogFile: string;
    let accessLogFrom = 0;
    /** The access log's lines since the last `accessLogFrom` mark. */
    const accessLog = () => fs.readFileSync(accessLogFile, 'utf8').slice(accessLogFrom).split('\n').filter(Boolean);
    const markAccessLog = () => {
      accessLogFrom = fs.statSync(accessLogFile).size;
    };
    let nginx: ChildProcess;
    let nodePorts: number[];
    let base: string;
    const sockets: Socket[] = [];

    beforeAll(async () => {
      if (!fs.existsSync(path.resolve('dist/main.js'))) throw new Error('dist/main.js is missing: run npm run build first');
      nodePorts = [await freePort(), await freePort(), await freePort()];
      // Three independent nodes (SQLite each, no Redis): a long-polling session lives in the memory of the node
      // that opened it, so it works through nginx only when all its requests reach that node.
      for (const [i, port] of nodePorts.entries()) {
        const dir = tempDir('imkit-deploy-node-');
        dirs.push(dir);
        procs.push(await startServerProcess(port, { IMKIT_DATA_DIR: dir, DATABASE_URL: undefined, IMKIT_TRUST_PROXY: 'true', LOG_LEVEL: 'debug', IMKIT_LOG_FORMAT: 'json' }, outputs[i]));
      }
      const dir = tempDir('imkit-nginx-');
      dirs.push(dir);
      const nginxPort = await freePort();
      const conf = localCopy(dir, `127.0.0.1:${nginxPort}`, nodePorts);
      accessLogFile = path.join(dir, 'access.log');
      nginx = spawn('/usr/sbin/nginx', ['-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/nginx.pid;`], { stdio: ['ignore', 'ignore', 'pipe'] });
      const nginxErrors: string[] = [];
      nginx.stderr!.on('data', (d: Buffer) => nginxErrors.push(String(d)));
      base = `http://127.0.0.1:${nginxPort}`;
      for (let i = 0; i < 100; i++) {
        if ((await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`nginx did not start: ${nginxErrors.join('')}`);
    }, 60_000);

    afterAll(async () => {
      for (const s of sockets) s.disconnect();
      if (nginx && nginx.exitCode === null) {
        nginx.kill('SIGQUIT');
        await new Promise((r) => nginx.once('exit', r));
      }
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    });

    const connected = (socket: Socket) =>
      new Promise<Socket>((resolve, reject) => {
        sockets.push(socket);
        socket.once('connect', () => resolve(socket));
        socket.once('connect_error', (err: Error) => reject(new Error(`connect_error: ${err.message}`)));
      });
    /** Access log lines (the format of deploy/nginx.conf) with what they name. */
    const logged = () =>
      accessLog().map((line) => ({
        line,
        transport: /transport=(\S*)/.exec(line)?.[1] ?? '',
        group: /upstream=([^/\s]*)\//.exec(line)?.[1] ?? '',
        addrs: (/upstream=[^/\s]*\/(.*)$/.exec(line)?.[1] ?? '').split(', '),
        uri: /"[A-Z]+ (\S+)"/.exec(line)?.[1] ?? '',
      }));
    const waitFor = async (what: string, ok: () => boolean) => {
      for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 25));
      if (!ok()) throw new Error(`${what}; nginx logged:\n${accessLog().join('\n')}`);
    };

    it('keeps a long-polling session on one node, and lets an old client upgrade it to a websocket there', async () => {
      const polling = await connected(ioV4(base, { transports: ['polling'], forceNew: true, reconnection: false }));
      expect(polling.io.engine.transport.name).toBe('polling');
      // socket.io-client 2 (Engine.IO 3, the old SDKs): polling first, then the upgrade request carries the sid.
      const legacy = await connected(ioV2(base, { forceNew: true, reconnection: false }) as Socket);
      const engine = (legacy as any).io.engine;
      if (engine.transport.name !== 'websocket') await new Promise((r) => engine.once('upgrade', r));
      expect(engine.transport.name).toBe('websocket');
      polling.disconnect();
      legacy.disconnect();
      await waitFor('the upgraded websocket is logged', () => logged().some((l) => l.uri === '/socket.io/' && l.transport === 'websocket'));
      const socketLines = logged().filter((l) => l.uri === '/socket.io/');
      expect(socketLines.filter((l) => l.transport === 'polling').length).toBeGreaterThanOrEqual(4);
      for (const l of socketLines) expect(l.group, l.line).toBe('imkit_sticky');
      // One client address, one node for every request of both sessions.
      expect(new Set(socketLines.map((l) => l.addrs.join())).size).toBe(1);
    });

    it('spreads websocket-only clients over the nodes', async () => {
      markAccessLog();
      const ws = await Promise.all([0, 1, 2].map(() => connected(ioV4(base, { transports: ['websocket'], forceNew: true, reconnection: false }))));
      for (const s of ws) s.disconnect();
      await waitFor('three websockets are logged', () => logged().filter((l) => l.transport === 'websocket').length === 3);
      const lines = logged().filter((l) => l.transport === 'websocket');
      for (const l of lines) expect(l.group, l.line).toBe('imkit');
      // From one address: a hash would put them all on one node; least_conn puts each open socket elsewhere.
      expect(new Set(lines.map((l) => l.addrs.join())).size).toBeGreaterThanOrEqual(2);
    });

    it("passes the client's address to the node, which believes it from a trusted proxy", async () => {
      const probe = `/healthz?probe=${Date.now()}`;
      const res = await fetch(`${base}${probe}`, { headers: { 'X-Forwarded-For': '203.0.113.7' } });
      expect(res.status).toBe(200);
      await waitFor('a node logs the probe', () => outputs.some((o) => o.join('').includes(probe)));
      const line = outputs.flatMap((o) => o.join('').split('\n')).find((l) => l.includes(probe))!;
      expect(JSON.parse(line).ip).toBe('203.0.113.7');
    });

    it('answers every GET while a node drains and stops (SIGTERM)', async () => {
      markAccessLog();
      const leaving = procs[1]!;
      const exited = new Promise<number | null>((r) => leaving.once('exit', r));
      leaving.kill('SIGTERM');
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await fetch(`${base}/healthz`)).status);
      expect(statuses.every((s) => s === 200), statuses.join()).toBe(true);
      expect(await exited).toBe(0);
      // The leaving node was tried and the request went on to another one (nginx logs both addresses).
      await waitFor('30 requests logged', () => logged().filter((l) => l.uri === '/healthz').length === 30);
      expect(logged().some((l) => l.addrs.length > 1 && l.addrs.includes(`127.0.0.1:${nodePorts[1]}`))).toBe(true);
    });
  });
});

describe('deploy/systemd', () => {
  const unit = read('deploy/systemd/imkit-server@.service');
  const directive = (name: string) => [...unit.matchAll(new RegExp(`^${name}=(.*)$`, 'gm'))].map((m) => m[1]!);

  it('passes systemd-analyze verify, with no warning', async () => {
    const dir = tempDir('imkit-systemd-');
    try {
      // verify checks that ExecStart's program exists: here Node.js may live elsewhere than /usr/bin/node.
      fs.writeFileSync(path.join(dir, 'imkit-server@.service'), unit.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
      const { stdout, stderr } = await run('systemd-analyze', ['verify', path.join(dir, 'imkit-server@.service')]);
      expect(stdout + stderr).toBe('');
      // It does complain about a broken copy (an unknown key and a bad time).
      fs.writeFileSync(path.join(dir, 'imkit-server@.service'), unit.replace('TimeoutStopSec=30s', 'TimeoutStopSec=soon\nRestartPolicy=always'));
      const broken = await run('systemd-analyze', ['verify', path.join(dir, 'imkit-server@.service')]).catch((e: { stderr: string }) => e);
      expect(broken.stderr).toMatch(/TimeoutStopSec|soon/);
      expect(broken.stderr).toContain('RestartPolicy');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is hardened (systemd-analyze security rates its exposure 2.0 or lower)', async () => {
    const dir = tempDir('imkit-systemd-');
    try {
      fs.writeFileSync(path.join(dir, 'imkit-server@.service'), unit.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
      const { stdout } = await run('systemd-analyze', ['security', '--offline=true', path.join(dir, 'imkit-server@.service')]);
      const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(stdout)?.[1]);
      expect(level).toBeLessThanOrEqual(2);
      for (const [key, value] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['User', 'imkit'], ['Restart', 'on-failure']]) expect(directive(key!)).toEqual([value]);
      expect(directive('ReadWritePaths')).toContain('/var/lib/imkit-server');
      expect(directive('EnvironmentFile')).toEqual(['/etc/imkit-server/%i.env']);
      expect(directive('ExecStart')[0]).toMatch(/\/dist\/main\.js start$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('waits longer than the drain deadline before killing, and its example settings pass the config checks', () => {
    const example = dotenv.parse(read('deploy/systemd/example.env'));
    for (const name of Object.keys(example)) expect(KNOWN_ENV.has(name), name).toBe(true);
    const config = loadConfig({}, example);
    expect(config.databaseUrl).toMatch(/^postgres:/);
    expect(config.fileStorage).toBe('s3');
    expect(example.REDIS_URL).toMatch(/^redis:\/\//);
    const [stop] = directive('TimeoutStopSec');
    expect(ms(stop!)).toBeGreaterThan(config.shutdownTimeoutMs);
    expect(ms(stop!)).toBeGreaterThan(SHUTDOWN_DEFAULT_MS);
  });
});
