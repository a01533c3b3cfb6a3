import fs from 'node:fs';
import path from 'node:path';
import { SETTINGS } from '../config.js';
import type { RouteDef } from '../http/route.js';
import type { Services } from '../services.js';

/**
 * docs/api.md and docs/configuration.md are generated from the route table and the settings table, and a
 * test checks they are current (run `npm run docs` after changing either).
 */
export function renderApiDoc(routes: RouteDef[]): string {
  const who: Record<RouteDef['auth'], string> = {
    admin: 'API key',
    user: 'user (client key + token, or API key + IM-CLIENT-ID)',
    either: 'user or API key',
    public: 'none',
  };
  const rows = routes
    .map((r) => `| \`${r.method} ${r.url}\` | ${who[r.auth]}${r.scope ? ` (scope \`${r.scope}\`)` : ''} | ${r.summary} |\n|  | | \`${(r.example ?? '').replace(/\|/g, '\\|')}\` |`)
    .join('\n');
  return `# REST API

Generated from the server's route table by \`npm run docs\`; a test fails when it is out of date.
Every response uses the envelope \`{"RC":0,"RM":"OK","result":...}\`; errors are described in [auth.md](auth.md).
In the examples, \`$BASE\` is the server URL (http://localhost:3000), \`$API_KEY\`, \`$CLIENT_KEY\` and \`$TOKEN\`
are the credentials. An API key limited to scopes may call a route only with the scope named here
([security.md](security.md)).

| route | auth | what it does |
|---|---|---|
${rows}
`;
}

export function renderConfigDoc(): string {
  const rows = SETTINGS.map(
    (s) => `| \`${s.env}\` | \`--${s.flag}\` | ${s.default === undefined ? '(unset)' : `\`${s.default}\``} | ${s.help}${s.secret ? ' (a secret: never logged)' : ''} |`,
  ).join('\n');
  return `# Configuration

Generated from the settings table by \`npm run docs\`; \`imkit-server --help\` prints the same list.
A flag wins over the environment variable, which wins over a \`.env\` file in the working directory, which wins
over the default. A bad value stops start-up with one line naming the setting (exit code 2).

| environment | flag | default | meaning |
|---|---|---|---|
${rows}

Notes:
- With \`DATABASE_URL\` unset, the data lives in \`IMKIT_DATA_DIR/imkit.sqlite\` (SQLite, WAL mode). While the
  server runs, \`imkit.sqlite-wal\` beside it can grow to about 16 MB; it is copied back and removed when the server
  stops (docs/architecture.md, checkpoints). With \`DATABASE_URL\` set, PostgreSQL is used and the data directory
  holds nothing yet.
- \`IMKIT_APP_ID\`, \`IMKIT_API_KEY\`, \`IMKIT_CLIENT_KEY\`: at every start the application \`IMKIT_APP_ID\`
  (default \`default\`) is created if missing; the given API key is made live (other API keys are left alone, so
  a rotation done with the CLI survives restarts); the given client key becomes the application's only client
  key. Without them, the first start on an empty store creates \`default\` with new keys and prints them once.
- Migrations run automatically at start; \`imkit-server migrate\` runs them alone.
`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const { routeTable } = await import('../http/routes/index.js');
  // Handlers are never called here, so the route table needs no live services.
  fs.writeFileSync('docs/api.md', renderApiDoc(routeTable({} as Services)));
  fs.writeFileSync('docs/configuration.md', renderConfigDoc());
  process.stdout.write('wrote docs/api.md and docs/configuration.md\n');
}
