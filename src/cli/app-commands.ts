import { AppsService } from '../apps/apps-service.js';
import { ConfigError } from '../config.js';
import { parseDuration } from '../lib/duration.js';
import { systemClock } from '../lib/clock.js';
import { Outbox } from '../webhooks/outbox.js';
import { AuditLog } from '../monitoring/audit.js';
import fs from 'node:fs';
import os from 'node:os';
import { createPushProviders } from '../push/providers.js';
import { PushService } from '../push/push-service.js';
import { WebhooksService } from '../webhooks/webhooks-service.js';
import { openCliStore, parseSettings, readConfig } from './args.js';

export const APP_HELP = `imkit-server app: manage applications on the same data directory or database as the server
(safe while the server runs; changes take effect on the server's next request)

  app create --name NAME [--id ID] [--domain HOST]... [--rate-limit-per-minute N] [--json]
        create an application; prints its API key and client key once
  app list [--json]
        applications, their domains and keys (last 4 characters only)
  app rotate-api-key APP [--expire-old-in 0|1h|24h|7d] [--json]
        add a new API key (printed once); the live old keys stop working after the given time (default 24h; 0 = now)
  app create-api-key APP [--scope S]... [--allow-ip CIDR]... [--name N] [--expires-in 90d] [--rate-limit N] [--json]
        add an API key (printed once) beside the others, limited to scopes (users:read, rooms:write, ...;
        none: full permissions), to addresses (IPv4/IPv6 addresses or CIDRs), to a lifetime and to its own
        requests per minute (docs/security.md)
  app list-api-keys APP [--json]
        the application's API keys: fingerprint, last 4, name, scopes, allowlist, limit, created, expires, last use
  app revoke-api-key APP KEY [--json]
        revoke a live API key from the next request on; KEY is its fingerprint (the first 10 hex characters of
        its SHA-256: printf %s "$KEY" | sha256sum | cut -c1-10), its id, or its last 4 characters if unique
  app rotate-client-key APP [--json]
        replace the client key at once (printed once)
  app webhook-secret APP [--rotate [--expire-old-in 0|1h|24h|7d]] [--json]
        the secret that signs the application's room webhooks given as a URL (made on first use); with
        --rotate a new one, the previous one signing too until it expires (default 24h)

  app push-credentials APP [--json]
        the push providers configured for the application (never their secrets)
  app push-credentials APP --provider fcm --file service-account.json
  app push-credentials APP --provider apns --file AuthKey_KEYID.p8 --key-id KEYID --team-id TEAMID --bundle-id BUNDLE
  app push-credentials APP --provider web --subject mailto:ops@example.com [--file vapid.json]
  app push-credentials APP --provider hook --url https://push.example.com/imkit
  app push-credentials APP --provider P --delete
        set (checked first) or remove the application's credentials for a push provider (docs/push.md); a
        running server uses them within 5 seconds. Web Push keys are generated when no --file gives them
        ({"publicKey": ..., "privateKey": ...}); the public key is printed (browsers subscribe with it)

APP is an application id, or its name when exactly one application has it. Every command takes the
settings flags of "imkit-server --help" (--data-dir, --database-url, ...). With --json each command prints one
JSON object; new secrets are under "apiKey" / "clientKey".
`;

const EXPIRY_CHOICES = ['0', '1h', '24h', '7d'];

export async function runAppCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(APP_HELP);
    return sub === undefined ? 1 : 0;
  }
  const { values, positionals } = parseSettings(rest, {
    json: { type: 'boolean' },
    name: { type: 'string' },
    id: { type: 'string' },
    domain: { type: 'string', multiple: true },
    'rate-limit-per-minute': { type: 'string' },
    'expire-old-in': { type: 'string' },
    rotate: { type: 'boolean' },
    scope: { type: 'string', multiple: true },
    'allow-ip': { type: 'string', multiple: true },
    'expires-in': { type: 'string' },
    'rate-limit': { type: 'string' },
    provider: { type: 'string' },
    file: { type: 'string' },
    'key-id': { type: 'string' },
    'team-id': { type: 'string' },
    'bundle-id': { type: 'string' },
    subject: { type: 'string' },
    url: { type: 'string' },
    delete: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(APP_HELP);
    return 0;
  }
  const json = values.json === true;
  const config = readConfig(values);
  const store = openCliStore(config);
  try {
    await store.migrate();
    const apps = new AppsService(store.db, systemClock);
    // Key events made here are in the application's audit log, the operator named by the system user.
    const audit = new AuditLog(store.db, systemClock, config.auditRetentionMs);
    const logged = async (appId: string, action: string, target: string) => {
      audit.record({ appId, actor: { type: 'operator', id: `cli:${operatorName()}` }, action, target, outcome: 'ok' });
      await audit.flush();
    };
    const print = (obj: Record<string, unknown>, text: string) => process.stdout.write(json ? `${JSON.stringify(obj)}\n` : `${text}\n`);
    const appArg = () => {
      const v = positionals[0];
      if (!v) throw new ConfigError(`app ${sub} needs the application id (APP)`);
      return apps.resolve(v);
    };

    switch (sub) {
      case 'create': {
        if (typeof values.name !== 'string') throw new ConfigError('app create needs --name NAME');
        const rate = values['rate-limit-per-minute'];
        let rateLimitPerMinute: number | undefined;
        if (typeof rate === 'string') {
          rateLimitPerMinute = Number(rate);
          if (!/^\d+$/.test(rate) || rateLimitPerMinute < 1) throw new ConfigError('--rate-limit-per-minute must be a whole number above 0');
        }
        const created = await apps.create({
          name: values.name,
          id: typeof values.id === 'string' ? values.id : undefined,
          domains: (values.domain as string[] | undefined) ?? [],
          rateLimitPerMinute,
        });
        print(
          { id: created.id, name: created.name, domains: created.domains, apiKey: created.apiKey, clientKey: created.clientKey },
          [
            `Created application "${created.id}" (${created.name})${created.domains.length ? ` for ${created.domains.join(', ')}` : ''}.`,
            `  API key (IM-API-KEY):       ${created.apiKey}`,
            `  Client key (IM-CLIENT-KEY): ${created.clientKey}`,
            'These keys will not be shown again.',
          ].join('\n'),
        );
        return 0;
      }
      case 'list': {
        const list = await apps.list();
        const text = list
          .map((a) => {
            const keys = a.apiKeys.map((k) => `    api key ...${k.last4}  ${k.status}${k.expiresAt ? ` (until ${k.expiresAt})` : ''}  created ${k.createdAt}`);
            const ck = a.clientKey ? `    client key ...${a.clientKey.last4}  ${a.clientKey.issued ? 'issued' : 'imported'}  created ${a.clientKey.createdAt}` : '    no client key';
            return [`${a.id}  "${a.name}"  domains: ${a.domains.join(', ') || '(any)'}`, ...keys, ck].join('\n');
          })
          .join('\n');
        print({ apps: list }, text || 'No applications.');
        return 0;
      }
      case 'rotate-api-key': {
        const app = await appArg();
        const expiry = typeof values['expire-old-in'] === 'string' ? values['expire-old-in'] : '24h';
        if (!EXPIRY_CHOICES.includes(expiry)) throw new ConfigError(`--expire-old-in must be one of ${EXPIRY_CHOICES.join(', ')}`);
        const r = await apps.rotateApiKey(app, parseDuration(expiry)!);
        await logged(app.id, 'api_key.rotate', `fingerprint=${r.fingerprint}`);
        print(
          { id: app.id, apiKey: r.apiKey, fingerprint: r.fingerprint, last4: r.last4, oldKeysExpireAt: r.oldKeysExpireAt },
          [
            `New API key for "${app.id}": ${r.apiKey}`,
            r.oldKeysExpireAt ? `The previous keys keep working until ${r.oldKeysExpireAt}.` : 'The previous keys are revoked.',
            'This key will not be shown again.',
          ].join('\n'),
        );
        return 0;
      }
      case 'revoke-api-key': {
        const app = await appArg();
        const which = positionals[1];
        if (!which) throw new ConfigError('app revoke-api-key needs KEY: the key\'s fingerprint (app list-api-keys), id, or last 4 characters');
        const r = await apps.revokeApiKey(app, which);
        await logged(app.id, 'api_key.revoke', `fingerprint=${r.fingerprint}`);
        print({ id: app.id, revoked: r }, `Revoked API key ${r.fingerprint ?? r.id} (...${r.last4}) of "${app.id}".`);
        return 0;
      }
      case 'create-api-key': {
        const app = await appArg();
        const rate = values['rate-limit'];
        if (typeof rate === 'string' && !/^\d+$/.test(rate)) throw new ConfigError('--rate-limit must be a whole number above 0');
        const r = await apps.createApiKey(app, {
          name: typeof values.name === 'string' ? values.name : undefined,
          scopes: values.scope as string[] | undefined,
          allowIps: values['allow-ip'] as string[] | undefined,
          expiresIn: typeof values['expires-in'] === 'string' ? values['expires-in'] : undefined,
          rateLimitPerMinute: typeof rate === 'string' ? Number(rate) : undefined,
        });
        await logged(app.id, 'api_key.create', `fingerprint=${r.fingerprint}`);
        print(
          { appId: app.id, ...r },
          [
            `New API key for "${app.id}" (fingerprint ${r.fingerprint}): ${r.apiKey}`,
            `  scopes: ${(r.scopes as string[] | null)?.join(', ') ?? 'all (full permissions)'}`,
            `  addresses: ${(r.allowIps as string[] | null)?.join(', ') ?? 'any'}`,
            `  expires: ${r.expiresAt ?? 'never'}; requests per minute: ${r.rateLimitPerMinute ?? 'the application\'s limit'}`,
            'This key will not be shown again.',
          ].join('\n'),
        );
        return 0;
      }
      case 'list-api-keys': {
        const app = await appArg();
        const keys = await apps.listApiKeys(app);
        const text = keys
          .map((k) => `${k.fingerprint}  ...${k.last4}  ${k.status}  ${k.name ?? ''}  scopes: ${(k.scopes as string[] | null)?.join(',') ?? 'all'}  ips: ${(k.allowIps as string[] | null)?.join(',') ?? 'any'}  created ${k.createdAt}${k.expiresAt ? `  expires ${k.expiresAt}` : ''}  last used ${k.lastUsedAt ?? 'never'}`)
          .join('\n');
        print({ id: app.id, apiKeys: keys }, text || 'No API keys.');
        return 0;
      }
      case 'rotate-client-key': {
        const app = await appArg();
        const r = await apps.rotateClientKey(app);
        await logged(app.id, 'client_key.rotate', `last4=${r.last4}`);
        print(
          { id: app.id, clientKey: r.clientKey, last4: r.last4 },
          `New client key for "${app.id}": ${r.clientKey}\nThe previous client key no longer works.`,
        );
        return 0;
      }
      case 'webhook-secret': {
        const app = await appArg();
        const expiry = typeof values['expire-old-in'] === 'string' ? values['expire-old-in'] : '24h';
        if (!EXPIRY_CHOICES.includes(expiry)) throw new ConfigError(`--expire-old-in must be one of ${EXPIRY_CHOICES.join(', ')}`);
        const webhooks = new WebhooksService(store.db, systemClock, new Outbox(store.db), { allowPrivate: config.webhookAllowPrivateNetworks });
        const r = await webhooks.appSecret(app.id, values.rotate === true, expiry);
        print(
          { id: app.id, webhookSecret: r.secret, previousSecretExpiresAt: r.previousSecretExpiresAt },
          [
            `Webhook secret of "${app.id}": ${r.secret}`,
            r.previousSecretExpiresAt ? `The previous secret signs too until ${r.previousSecretExpiresAt}.` : '',
            'Receivers verify the webhook-signature header with it (docs/webhooks.md).',
          ].filter(Boolean).join('\n'),
        );
        return 0;
      }
      case 'push-credentials': {
        const app = await appArg();
        const outbox = new Outbox(store.db);
        const providers = createPushProviders(config, systemClock, async () => []);
        const push = new PushService(store.db, systemClock, outbox, () => providers, { allowPrivate: config.webhookAllowPrivateNetworks });
        try {
          const provider = typeof values.provider === 'string' ? values.provider : undefined;
          if (provider === undefined) {
            const r = await push.listCredentials(app.id);
            const rows = r.data as Array<Record<string, unknown>>;
            print(r, rows.length ? rows.map((c) => `${String(c.provider).padEnd(5)} ${Object.entries(c).filter(([k]) => k !== 'provider').map(([k, v]) => `${k}=${v}`).join(' ')}`).join('\n') : `"${app.id}" has no push credentials.`);
            return 0;
          }
          if (values.delete === true) {
            await push.deleteCredentials(app.id, provider);
            await logged(app.id, 'push.credentials.delete', provider);
            print({ id: app.id, provider, deleted: true }, `Removed the ${provider} push credentials of "${app.id}".`);
            return 0;
          }
          const read = (what: string) => {
            if (typeof values.file !== 'string') throw new ConfigError(`--file is required (${what})`);
            return fs.readFileSync(values.file, 'utf8');
          };
          const parse = (text: string) => {
            try {
              return JSON.parse(text) as Record<string, unknown>;
            } catch {
              throw new ConfigError(`${values.file} is not JSON`);
            }
          };
          let body: Record<string, unknown>;
          if (provider === 'fcm') body = parse(read('the service account JSON'));
          else if (provider === 'apns') body = { key: read('the .p8 key'), keyId: values['key-id'], teamId: values['team-id'], bundleId: values['bundle-id'] };
          else if (provider === 'web') body = { ...(typeof values.file === 'string' ? parse(read('')) : {}), subject: values.subject };
          else body = { url: values.url };
          const r = await push.putCredentials(app.id, provider, body);
          await logged(app.id, 'push.credentials.set', provider);
          print({ id: app.id, ...r }, `Set the ${provider} push credentials of "${app.id}": ${Object.entries(r).filter(([k]) => k !== 'provider').map(([k, v]) => `${k}=${v}`).join(' ')}`);
          return 0;
        } finally {
          for (const p of Object.values(providers)) p.close();
        }
      }
      default:
        throw new ConfigError(`Unknown app command "${sub}". Run imkit-server app --help.`);
    }
  } finally {
    await store.close();
  }
}

/** Who runs the CLI, for the audit log: the system user, or "unknown" where it cannot be read. */
function operatorName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}
