import { parseArgs } from 'node:util';
import path from 'node:path';
import { type Config, ConfigError, loadConfig, SETTINGS } from '../config.js';
import { openStore, type Store } from '../store/database.js';

type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean };

/** Parses the settings flags of every command plus the command's own options; unknown flags are errors. */
export function parseSettings(args: string[], extra: Record<string, OptionSpec> = {}) {
  const options: Record<string, OptionSpec> = { help: { type: 'boolean' }, ...extra };
  for (const s of SETTINGS) options[s.flag] = { type: 'string' };
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

export function readConfig(values: Record<string, unknown>): Config {
  const flags: Record<string, string | undefined> = {};
  for (const s of SETTINGS) if (typeof values[s.flag] === 'string') flags[s.flag] = values[s.flag] as string;
  return loadConfig(flags, process.env);
}

/**
 * Opens the store a CLI command works on and says which on stderr, in one line: a command run from a shell that
 * lacks the server's DATABASE_URL would otherwise work silently on ./data instead of the server's database.
 */
export function openCliStore(config: Config, say: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Store {
  const store = openStore(config);
  say(`imkit-server: using ${store.describe}${config.databaseUrl ? '' : ` (DATABASE_URL is not set; data directory ${path.resolve(config.dataDir)})`}`);
  return store;
}
