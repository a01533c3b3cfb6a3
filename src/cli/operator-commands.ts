import { randomBytes } from 'node:crypto';
import { ConfigError } from '../config.js';
import { systemClock } from '../lib/clock.js';
import { OperatorsService } from '../operators/operators-service.js';
import { openStore } from '../store/database.js';
import { parseSettings, readConfig } from './args.js';

export const OPERATOR_HELP = `imkit-server operator: manage the dashboard's operators (server-wide administrators, docs/dashboard.md)
on the same data directory or database as the server (safe while the server runs)

  operator create --email EMAIL [--json]
        add an operator
  operator reset-password --email EMAIL [--json]
        set a new password; the operator's sessions end
  operator list [--json]
        the operators (email, created, last login)

The password is read from standard input (printf %s "$PASSWORD" | imkit-server operator create --email ...;
12 characters or more). When standard input is a terminal, a random password is made and printed once instead.
Every command takes the settings flags of "imkit-server --help" (--data-dir, --database-url, ...).
`;

export async function runOperatorCommand(argv: string[], stdin: NodeJS.ReadStream = process.stdin): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(OPERATOR_HELP);
    return sub === undefined ? 1 : 0;
  }
  const { values } = parseSettings(rest, { json: { type: 'boolean' }, email: { type: 'string' } });
  if (values.help) {
    process.stdout.write(OPERATOR_HELP);
    return 0;
  }
  if (!['create', 'reset-password', 'list'].includes(sub)) throw new ConfigError(`Unknown operator command "${sub}". Run imkit-server operator --help.`);
  const json = values.json === true;
  const config = readConfig(values);
  const print = (obj: Record<string, unknown>, text: string) => process.stdout.write(json ? `${JSON.stringify(obj)}\n` : `${text}\n`);
  let password: string | undefined;
  let generated = false;
  if (sub !== 'list') {
    if (typeof values.email !== 'string') throw new ConfigError(`operator ${sub} needs --email EMAIL`);
    if (stdin.isTTY) {
      password = randomBytes(18).toString('base64url');
      generated = true;
    } else {
      password = (await readAll(stdin)).replace(/\r?\n$/, '');
    }
  }
  const store = openStore(config);
  try {
    await store.migrate();
    const operators = new OperatorsService(store.db, systemClock, config.operatorSessionTtlMs);
    if (sub === 'list') {
      const list = await operators.list();
      print({ operators: list }, list.map((o) => `${o.email}  created ${o.createdAt}  last login ${o.lastLoginAt ?? 'never'}${o.lastLoginIp ? ` from ${o.lastLoginIp}` : ''}`).join('\n') || 'No operators.');
      return 0;
    }
    const op = sub === 'create' ? await operators.create(values.email as string, password!) : await operators.resetPassword(values.email as string, password!);
    const said = sub === 'create' ? `Created operator ${op.email}.` : `New password set for ${op.email}; its sessions have ended.`;
    print(generated ? { operator: op, password } : { operator: op }, generated ? `${said}\n  Password: ${password}\nIt will not be shown again.` : said);
    return 0;
  } finally {
    await store.close();
  }
}

async function readAll(stream: NodeJS.ReadStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > 4096) throw new ConfigError('the password on standard input is too long');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
