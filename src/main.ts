#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import dotenv from 'dotenv';
import { runAppCommand } from './cli/app-commands.js';
import { runOperatorCommand } from './cli/operator-commands.js';
import { runImportCommand } from './importer/import-command.js';
import { PID_FILE, runOpsCommand } from './cli/ops-commands.js';
import { openCliStore, parseSettings, readConfig } from './cli/args.js';
import { ConfigError, type Config, settingsHelp } from './config.js';
import { AppError } from './errors.js';
import { raiseFileLimit } from './lib/file-limits.js';
import { createServer } from './server.js';

const HELP = `imkit-server: a self-hostable chat server speaking the IMKIT Platform API

Usage:
  imkit-server start [settings]      migrate the store, then serve HTTP (npm start does this)
  imkit-server migrate [settings]    apply database migrations and exit
  imkit-server app <command> ...     manage applications and their keys (see "imkit-server app --help")
  imkit-server operator create|reset-password|list --email EMAIL
                                     manage the dashboard's operators (see "imkit-server operator --help")
  imkit-server import --from URL --api-key KEY ...
                                     copy an application from a running IMKIT-compatible server through its
                                     API (see "imkit-server import --help", docs/migrating.md)
  imkit-server backup --out FILE     a consistent copy of the store while the server runs
  imkit-server restore --from FILE   put a backup in place (SQLite: with the server stopped)
  imkit-server doctor                check the settings, store, migrations, limits, clock and disk
                                     (see "imkit-server backup --help", docs/operations.md)
  imkit-server --help                this text

${settingsHelp()}

Flags win over environment variables, which win over .env, which wins over defaults.
`;

async function main(argv: string[]): Promise<number> {
  dotenv.config({ quiet: true });
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? 1 : 0;
  }
  if (command === 'app') return runAppCommand(rest);
  if (command === 'import') return runImportCommand(rest);
  if (command === 'backup' || command === 'restore' || command === 'doctor') return runOpsCommand(command, rest);
  if (command === 'operator') return runOperatorCommand(rest);
  if (command !== 'start' && command !== 'migrate') {
    process.stderr.write(`Unknown command "${command}". Run imkit-server --help.\n`);
    return 2;
  }
  const { values } = parseSettings(rest);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const config = readConfig(values);
  if (command === 'migrate') {
    const store = openCliStore(config);
    try {
      await store.migrate();
      process.stdout.write(`Migrated ${store.describe}\n`);
    } finally {
      await store.close();
    }
    return 0;
  }
  return start(config);
}

async function start(config: Config): Promise<number> {
  // Before createServer: the socket caps are derived from the limit the process has then.
  const fileLimit = await raiseFileLimit();
  const server = await createServer(config);
  server.logger.info(fileLimit, 'open-file limit');
  const url = await server.listen();
  // On SQLite, say that a server runs on this data directory (imkit-server restore refuses to replace its file).
  const pidFile = config.databaseUrl ? undefined : path.join(config.dataDir, PID_FILE);
  if (pidFile) fs.writeFileSync(pidFile, `${process.pid}\n`);
  const { createdDefault, fromEnv } = server.bootstrap;
  const keys = createdDefault ?? (fromEnv?.generated.apiKey ? { id: fromEnv.appId, ...fromEnv.generated } : undefined);
  if (keys) process.stderr.write(keysBlock(keys.id, keys));
  const { operatorSetupToken, adminFromEnv } = server.bootstrap;
  if (operatorSetupToken) {
    // On stderr, framed, not in the log: the link logs its holder in as the first operator. The token is in the
    // fragment, which browsers never send to a server (no access log or Referer carries it).
    process.stderr.write(
      framed('imkit-server: first dashboard operator', [
        'No dashboard operator exists yet. Open this link within an hour to create the first one (it works once):',
        `${url}/dashboard/setup#token=${operatorSetupToken}`,
        '',
        'Or: imkit-server operator create --email YOU, or set IMKIT_ADMIN_EMAIL and IMKIT_ADMIN_PASSWORD.',
      ]),
    );
  }
  if (adminFromEnv) server.logger.info({ email: adminFromEnv.email, created: adminFromEnv.created, passwordChanged: adminFromEnv.passwordChanged }, 'dashboard operator from IMKIT_ADMIN_EMAIL applied');
  server.logger.info({ url, dashboard: `${url}/dashboard`, store: server.store.describe }, 'imkit-server listening');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      server.logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown did not finish in time (IMKIT_SHUTDOWN_TIMEOUT): exiting anyway');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    server.close().then(
      () => {
        if (pidFile) fs.rmSync(pidFile, { force: true });
        process.exit(0);
      },
      (err) => {
        server.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return new Promise<number>(() => {});
}

/**
 * The first start's keys: on stderr, in a frame of their own, never through the logger (so never in a JSON log
 * stream that is shipped somewhere). This is the one time they are shown.
 */
export function keysBlock(appId: string, keys: { apiKey?: string; clientKey?: string }): string {
  // Each key alone on its line (a client key is a long JWT), between two rules, so it copies cleanly.
  return framed(`imkit-server: keys of application "${appId}"`, [
    ...(keys.apiKey ? ['API key (IM-API-KEY), a secret for your backend only:', keys.apiKey, ''] : []),
    ...(keys.clientKey ? ['Client key (IM-CLIENT-KEY), public, for your apps:', keys.clientKey, ''] : []),
    'These keys will not be shown again: store them now.',
    'New ones: imkit-server app rotate-api-key / rotate-client-key.',
  ]);
}

/** Lines between two rules of 78 characters, the first one titled: what `start` shows a person once. */
function framed(title: string, lines: string[]): string {
  return ['', `${'='.repeat(20)} ${title} `.padEnd(78, '='), ...lines, '='.repeat(78), ''].join('\n') + '\n';
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`imkit-server: ${err.message}\n`);
    else if (err instanceof AppError) process.stderr.write(`imkit-server: ${err.message}\n`);
    else process.stderr.write(`imkit-server: ${(err as Error)?.message ?? String(err)}\n`);
    process.exitCode = err instanceof ConfigError ? 2 : 1;
  },
);
