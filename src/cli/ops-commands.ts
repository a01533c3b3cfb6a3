import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { backupSqliteFile, inspectSqlite, OpsRepo } from '../store/ops-repo.js';
import { type Config, ConfigError } from '../config.js';
import { readFileLimits } from '../lib/file-limits.js';
import { migrationState, openStore, SQLITE_FILE } from '../store/database.js';
import { parseSettings, readConfig } from './args.js';

export const OPS_HELP = `imkit-server backup | restore | doctor (docs/operations.md)

  backup --out FILE [settings]
        a consistent copy of the store while the server runs. SQLite: SQLite's online backup API into FILE
        (written beside it, then renamed), checked with integrity_check. PostgreSQL: pg_dump --format=custom
        of the database (or of IMKIT_DATABASE_SCHEMA), which needs pg_dump on the PATH.
  restore --from FILE [--force] [settings]
        puts a backup in place. SQLite: refused while a server runs on the data directory, and over existing
        data without --force; the file is checked first. PostgreSQL: pg_restore --clean (stop the servers first;
        --force when the database already holds imkit-server's tables).
  doctor [settings]
        checks the settings, the store and its migrations, the open-file limit, the clock and the disk, and
        says what is wrong in plain words; exit code 1 when something must be fixed.

Every command takes the settings flags of "imkit-server --help" and reads the same .env as the server.
`;

/** Written by `start` on SQLite: a restore must not replace the file under a running server. */
export const PID_FILE = 'imkit.pid';

export async function runOpsCommand(command: 'backup' | 'restore' | 'doctor', argv: string[]): Promise<number> {
  const { values } = parseSettings(argv, { out: { type: 'string' }, from: { type: 'string' }, force: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(OPS_HELP);
    return 0;
  }
  if (command === 'doctor') return doctor(values);
  const config = readConfig(values);
  if (command === 'backup') {
    if (typeof values.out !== 'string' || !values.out) throw new ConfigError('backup needs --out FILE');
    return config.databaseUrl ? pgBackup(config, values.out) : sqliteBackup(config, values.out);
  }
  if (typeof values.from !== 'string' || !values.from) throw new ConfigError('restore needs --from FILE');
  return config.databaseUrl ? pgRestore(config, values.from, values.force === true) : sqliteRestore(config, values.from, values.force === true);
}

const say = (line: string) => process.stderr.write(`${line}\n`);

async function sqliteBackup(config: Config, out: string): Promise<number> {
  const file = path.join(config.dataDir, SQLITE_FILE);
  if (!fs.existsSync(file)) throw new ConfigError(`no database at ${file} (is --data-dir right?)`);
  const target = path.resolve(out);
  const temp = `${target}.partial-${process.pid}`;
  try {
    await backupSqliteFile(file, temp);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
  const check = inspectSqlite(temp);
  if (check.problem) {
    fs.rmSync(temp, { force: true });
    throw new Error(`the backup failed its check: ${check.problem}`);
  }
  fs.renameSync(temp, target);
  const result = { backup: target, bytes: fs.statSync(target).size, migrations: check.migrations, messages: check.messages };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  say(`imkit-server: backed up ${file} to ${target} (${result.bytes} bytes, ${result.messages} messages)`);
  return 0;
}


/** The pid of a live server on this data directory, if any. */
function runningServer(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dataDir, PID_FILE), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

async function sqliteRestore(config: Config, from: string, force: boolean): Promise<number> {
  const source = path.resolve(from);
  if (!fs.existsSync(source)) throw new ConfigError(`no file ${source}`);
  const pid = runningServer(config.dataDir);
  if (pid !== undefined) throw new ConfigError(`a server (pid ${pid}) runs on ${path.resolve(config.dataDir)}: stop it before restoring`);
  const check = inspectSqlite(source);
  if (check.problem) throw new ConfigError(`${source} cannot be restored: ${check.problem}`);
  const target = path.join(config.dataDir, SQLITE_FILE);
  if (fs.existsSync(target) && !force) throw new ConfigError(`${target} exists: restoring replaces it and everything stored since the backup; pass --force to do so`);
  fs.mkdirSync(config.dataDir, { recursive: true });
  const temp = `${target}.restore-${process.pid}`;
  fs.copyFileSync(source, temp);
  const fd = fs.openSync(temp, 'r+');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  // The old file's write-ahead log belongs to the old file.
  for (const suffix of ['-wal', '-shm']) fs.rmSync(`${target}${suffix}`, { force: true });
  fs.renameSync(temp, target);
  process.stdout.write(`${JSON.stringify({ restored: target, from: source, messages: check.messages })}\n`);
  say(`imkit-server: restored ${source} to ${target}; start the server (it applies newer migrations if any)`);
  return 0;
}

function pgArgs(config: Config): { url: string; env: NodeJS.ProcessEnv } {
  // The URL (and so its password) travels in the environment, not on a command line other users can list.
  return { url: config.databaseUrl!, env: { ...process.env, PGDATABASE: config.databaseUrl! } };
}

function runTool(tool: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (err) => reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? new ConfigError(`${tool} is not on the PATH (install the PostgreSQL client tools, e.g. Debian's postgresql-client)`) : err));
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

async function pgBackup(config: Config, out: string): Promise<number> {
  const target = path.resolve(out);
  const temp = `${target}.partial-${process.pid}`;
  const { env } = pgArgs(config);
  const schema = config.databaseSchema ? ['--schema', config.databaseSchema] : [];
  const code = await runTool('pg_dump', ['--format=custom', '--no-owner', '--file', temp, ...schema, '--dbname', config.databaseUrl!], env);
  if (code !== 0) {
    fs.rmSync(temp, { force: true });
    say(`imkit-server: pg_dump failed (exit code ${code})`);
    return 1;
  }
  fs.renameSync(temp, target);
  process.stdout.write(`${JSON.stringify({ backup: target, bytes: fs.statSync(target).size, schema: config.databaseSchema ?? null })}\n`);
  say(`imkit-server: pg_dump of ${config.databaseSchema ? `schema ${config.databaseSchema}` : 'the database'} written to ${target}`);
  return 0;
}

async function pgRestore(config: Config, from: string, force: boolean): Promise<number> {
  const source = path.resolve(from);
  if (!fs.existsSync(source)) throw new ConfigError(`no file ${source}`);
  const store = openStore(config);
  try {
    if ((await new OpsRepo(store.db).hasTablesPostgres()) && !force) throw new ConfigError('the database already holds imkit-server tables: restoring replaces them; stop the servers and pass --force to do so');
  } finally {
    await store.close();
  }
  const { env } = pgArgs(config);
  const code = await runTool('pg_restore', ['--clean', '--if-exists', '--no-owner', '--exit-on-error', '--dbname', config.databaseUrl!, source], env);
  if (code !== 0) {
    say(`imkit-server: pg_restore failed (exit code ${code})`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify({ restored: config.databaseSchema ?? 'database', from: source })}\n`);
  return 0;
}

type Level = 'ok' | 'warn' | 'FAIL';

/** `imkit-server doctor`: each check one line, `ok`, `warn` (works, but look at it) or `FAIL` (must be fixed). */
async function doctor(values: Record<string, unknown>): Promise<number> {
  const lines: Array<[Level, string]> = [];
  const note = (level: Level, text: string) => {
    lines.push([level, text]);
    process.stdout.write(`${level.padEnd(4)}  ${text}\n`);
  };
  const major = Number(process.versions.node.split('.')[0]);
  if (major === 22 || major === 24) note('ok', `Node.js ${process.versions.node}`);
  else note('warn', `Node.js ${process.versions.node}: imkit-server supports the LTS lines 22 and 24${major < 22 ? ' (Node 20 reached its end of life in April 2026)' : ''}`);

  let config: Config;
  try {
    config = readConfig(values);
    note('ok', 'settings: every value is valid');
  } catch (err) {
    note('FAIL', `settings: ${(err as Error).message}`);
    return 1;
  }
  if (config.webhookAllowPrivateNetworks) note('warn', 'IMKIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: webhooks may reach this machine and your private network (meant for tests)');
  if (config.trustProxy === false) note('ok', 'IMKIT_TRUST_PROXY is off: client addresses are the TCP peers (set it when a proxy or load balancer is in front)');

  const limits = readFileLimits();
  if (limits.hard !== undefined && limits.hard < 16_384) {
    note('warn', `open-file limit ${limits.hard}: each connected socket holds one file, so at most about ${Math.max(0, limits.hard - 200)} connections; raise it (ulimit -n, LimitNOFILE= in systemd)`);
  } else {
    note('ok', `open-file limit ${limits.hard ?? 'unlimited'}`);
  }

  if (!config.databaseUrl) {
    const dir = path.resolve(config.dataDir);
    if (!fs.existsSync(path.join(dir, SQLITE_FILE))) {
      // A check changes nothing: no directory or database is created here.
      note('warn', `no database at ${path.join(dir, SQLITE_FILE)} yet: the first start creates it (is --data-dir / IMKIT_DATA_DIR right?)`);
      return finish(lines);
    }
    try {
      fs.accessSync(dir, fs.constants.W_OK);
      const st = fs.statfsSync(dir);
      const free = st.bavail * st.bsize;
      if (free < 1024 ** 3) note('warn', `${Math.round(free / 1024 ** 2)} MB free on the disk of ${dir}`);
      else note('ok', `data directory ${dir} is writable, ${Math.round(free / 1024 ** 3)} GB free`);
    } catch (err) {
      note('FAIL', `data directory ${dir}: ${(err as Error).message}`);
      return finish(lines);
    }
    const pid = runningServer(dir);
    if (pid !== undefined) note('ok', `a server (pid ${pid}) runs on this data directory`);
  }

  let store;
  try {
    store = openStore(config);
    await new OpsRepo(store.db).ping();
    note('ok', `store: ${store.describe}`);
  } catch (err) {
    note('FAIL', `store: cannot open ${config.databaseUrl ? 'the PostgreSQL database of DATABASE_URL' : 'the SQLite database'}: ${(err as Error).message}`);
    await store?.close().catch(() => {});
    return finish(lines);
  }
  try {
    const { pending, applied, unknown } = await migrationState(store, config.databaseSchema);
    if (unknown.length && pending.length) note('FAIL', `the store was migrated by a newer imkit-server (${unknown.join(', ')}) and this version still lacks ${pending.join(', ')}: run the newer version`);
    else if (unknown.length) note('warn', `the store was migrated by a newer imkit-server (${unknown.join(', ')}); this version runs with it (a rolling upgrade, docs/deploy.md): upgrade this node too`);
    else if (applied.length === 0) note('warn', 'the store is empty: the first start creates its tables and an application');
    else if (pending.length) note('warn', `${pending.length} migrations to apply (${pending.join(', ')}): they run at the next start, or with imkit-server migrate`);
    else note('ok', `migrations: all ${applied.length} applied`);

    if (applied.length) {
      if (store.dialect === 'postgres') {
        const skew = Date.now() - (await new OpsRepo(store.db).clockPostgres());
        if (Math.abs(skew) > 2_000) note('warn', `this machine's clock and PostgreSQL's differ by ${Math.round(skew / 1000)} s: synchronise them (NTP)`);
        else note('ok', `clock: within ${Math.abs(skew)} ms of PostgreSQL's`);
      }
      const id = await new OpsRepo(store.db).newestMessageId();
      // Ids begin with their creation time in seconds (8 hex digits), imported ObjectIds too: new ones must sort after.
      const at = id && /^[0-9a-f]{24}$/.test(id) ? parseInt(id.slice(0, 8), 16) * 1000 : undefined;
      if (at !== undefined && at > Date.now() + 60_000) {
        note('FAIL', `the clock is ${Math.round((at - Date.now()) / 1000)} s behind the newest stored message: new messages would sort before it; fix the clock`);
      } else {
        note('ok', 'clock: not behind the stored messages');
      }
    }
  } finally {
    await store.close();
  }
  return finish(lines);
}

function finish(lines: Array<[Level, string]>): number {
  const fails = lines.filter(([l]) => l === 'FAIL').length;
  const warns = lines.filter(([l]) => l === 'warn').length;
  process.stdout.write(fails ? `\n${fails} problem(s) to fix, ${warns} warning(s).\n` : `\nNothing to fix${warns ? `; ${warns} warning(s)` : ''}.\n`);
  return fails ? 1 : 0;
}
