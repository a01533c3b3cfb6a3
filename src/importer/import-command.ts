import { AppsService } from '../apps/apps-service.js';
import { openCliStore, parseSettings, readConfig } from '../cli/args.js';
import { ConfigError } from '../config.js';
import { systemClock } from '../lib/clock.js';
import { ImportService, type ImportProgress } from './import-service.js';

export const IMPORT_HELP = `imkit-server import: copy an application from a running IMKIT-compatible server through its API
(docs/migrating.md)

  import --from URL --api-key KEY [--app APP] [--since ISO] [--rooms ID,...] [--dry-run]
         [--concurrency N] [--limit-per-minute N] [--json] [settings]

  --from URL              the source server's base URL (the hosted service's API domain, or another imkit-server)
  --api-key KEY           the application's API key on the source (IM-API-KEY); only GET requests are made
  --app APP               the application here to import into (default: IMKIT_APP_ID, else "default"); created
                          when missing, with IMKIT_API_KEY / IMKIT_CLIENT_KEY as its keys when they are set
  --since ISO             a delta: users and rooms updated, and messages changed, after this time (ISO-8601 or ms)
  --rooms ID,...          only these rooms (each read by its id, whatever its state)
  --dry-run               read the source and count what would be imported; write nothing
  --concurrency N         rooms imported at the same time (default 4)
  --limit-per-minute N    requests per rolling minute to the source (default 1000, the documented limit)
  --json                  print the final report as one JSON object on stdout

Progress goes to stderr every few seconds. A run that stops (killed, network down) continues where it
stopped when started again with the same --from and --app; a run over unchanged data writes nothing, and a
later run deletes here what it imported and the source no longer has.
Users come without tokens: the customer's backend issues new ones with POST /admin/clients. Webhook
endpoints come with new signing secrets: rotate them here (the report says how).
Every command takes the settings flags of "imkit-server --help" (--data-dir, --database-url, ...).
`;

export async function runImportCommand(argv: string[]): Promise<number> {
  const { values } = parseSettings(argv, {
    from: { type: 'string' },
    app: { type: 'string' },
    since: { type: 'string' },
    rooms: { type: 'string' },
    'dry-run': { type: 'boolean' },
    concurrency: { type: 'string' },
    'limit-per-minute': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help || argv.length === 0) {
    process.stdout.write(IMPORT_HELP);
    return values.help ? 0 : 1;
  }
  const from = values.from;
  // --api-key is the source's key here, not the IMKIT_API_KEY setting of this server.
  const sourceKey = values['api-key'];
  delete (values as Record<string, unknown>)['api-key'];
  if (typeof from !== 'string' || !/^https?:\/\//.test(from)) throw new ConfigError('import needs --from URL (http:// or https://)');
  if (typeof sourceKey !== 'string' || sourceKey === '') throw new ConfigError('import needs --api-key KEY (the application\'s API key on the source)');
  const int = (name: string, fallback: number) => {
    const v = values[name as keyof typeof values];
    if (v === undefined) return fallback;
    if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < 1) throw new ConfigError(`--${name} must be a whole number above 0`);
    return Number(v);
  };
  let since: number | undefined;
  if (typeof values.since === 'string') {
    since = /^\d+$/.test(values.since) ? Number(values.since) : Date.parse(values.since);
    if (Number.isNaN(since)) throw new ConfigError('--since must be an ISO-8601 time or epoch milliseconds');
  }
  const rooms = typeof values.rooms === 'string' ? values.rooms.split(',').map((r) => r.trim()).filter(Boolean) : undefined;
  const json = values.json === true;
  const dryRun = values['dry-run'] === true;
  const config = readConfig(values);
  const appId = typeof values.app === 'string' ? values.app : (config.appId ?? 'default');
  const store = openCliStore(config);
  try {
    await store.migrate();
    const apps = new AppsService(store.db, systemClock);
    const exists = await apps.get(appId);
    if (!dryRun && (!exists || config.apiKey || config.clientKey)) {
      const { created, generated } = await apps.ensureFromEnv(appId, config.apiKey, config.clientKey);
      if (created) {
        const lines = [`Created application "${appId}".`];
        if (generated.apiKey) lines.push(`  API key (IM-API-KEY):       ${generated.apiKey}`);
        if (generated.clientKey) lines.push(`  Client key (IM-CLIENT-KEY): ${generated.clientKey}`);
        if (generated.apiKey || generated.clientKey) lines.push('These keys will not be shown again. Store them now.');
        process.stderr.write(`${lines.join('\n')}\n`);
      }
    } else if (!exists) {
      process.stderr.write(`(dry run: application "${appId}" does not exist here and would be created)\n`);
    }
    let last = 0;
    const onProgress = (p: ImportProgress) => {
      const now = Date.now();
      if (p.phase !== 'done' && p.waitingMs === undefined && now - last < 2000) return;
      last = now;
      process.stderr.write(progressLine(p) + '\n');
    };
    const controller = new AbortController();
    const stop = () => controller.abort(new ConfigError('interrupted; run the same command again to continue'));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      const report = await new ImportService(store.db, systemClock).run({
        from,
        apiKey: sourceKey,
        appId,
        since,
        rooms,
        dryRun,
        concurrency: int('concurrency', 4),
        limitPerMinute: int('limit-per-minute', 1000),
        signal: controller.signal,
        onProgress,
      });
      if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else {
        const c = (e: { created: number; updated: number; unchanged: number }) => `${e.created} new, ${e.updated} changed, ${e.unchanged} unchanged`;
        const d = report.deleted;
        process.stdout.write(
          [
            `${dryRun ? 'Would import' : 'Imported'} from ${report.source} into "${appId}" in ${(report.durationMs / 1000).toFixed(1)} s:`,
            `  users     ${c(report.users)}`,
            `  rooms     ${c(report.rooms)}`,
            `  messages  ${c(report.messages)} (${report.messagesPerSecond}/s)`,
            `  groups    ${report.groups.seen}, config keys ${report.config.keys} (${report.config.changed} changed), blocks of ${report.blocks.users} users (${report.blocks.changed} changed), preferences of ${report.prefs.users} users (${report.prefs.changed} changed), hidden messages of ${report.hidden.users} users (${report.hidden.changed} changed)`,
            `  webhooks  ${c(report.webhooks)}`,
            `  found     ${report.discovery.lists} rooms in room lists, ${report.discovery.byId} by id, ${report.discovery.bySearch} by search${report.discovery.sourceTotal === null ? '' : ` (the source counts ${report.discovery.sourceTotal})`}`,
            `  deleted   ${d.users} users, ${d.rooms} rooms, ${d.messages} messages, ${d.config} config keys, ${d.webhooks} webhooks (gone from the source)`,
            `  requests  ${report.requests} (limit ${report.limitPerMinute}/min), 429s ${report.throttled}, retries ${report.retries}`,
            ...report.skipped.map((s) => `  skipped ${s.entity} ${s.id}: ${s.reason}`),
            ...report.notices.map((n) => `  to do: ${n.entity} ${n.id}: ${n.notice}`),
          ].join('\n') + '\n',
        );
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  } finally {
    await store.close();
  }
  return 0;
}

export function progressLine(p: ImportProgress): string {
  const eta = p.etaSeconds === null ? '?' : p.etaSeconds >= 60 ? `${Math.floor(p.etaSeconds / 60)}m${String(p.etaSeconds % 60).padStart(2, '0')}s` : `${p.etaSeconds}s`;
  return (
    `[${p.phase}] users ${p.usersDone}/${p.usersTotal}, rooms ${p.roomsDone}/${p.roomsTotal}, ` +
    `messages ${p.messagesDone}/~${p.messagesEstimate} (${p.messagesPerSecond}/s), ` +
    `requests ${p.requestsInLastMinute}/${p.limitPerMinute} in the last minute (${p.requests} in all, ${p.throttled} refused with 429), time left ~${eta}` +
    (p.waitingMs !== undefined ? `; waiting ${Math.ceil(p.waitingMs / 1000)} s for the request budget` : '')
  );
}
