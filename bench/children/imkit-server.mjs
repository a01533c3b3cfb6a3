// imkit-server as `npm start` runs it (settings from the environment, default application created on an empty
// store), on 127.0.0.1 and a free port; tells the orchestrator its URL and the keys of the default application.
// With IMKIT_APP_ID and IMKIT_API_KEY (the cluster scenario: every node the same application and API key) it tells
// the application's client key when this start created the application (the first node, on an empty store); the
// nodes started after it find the application there and tell none: the orchestrator uses the first node's.
import { loadConfig } from '../../dist/config.js';
import { createServer } from '../../dist/server.js';
import { serve, ready } from '../lib/child.mjs';

const config = { ...loadConfig({}, process.env), port: 0, host: '127.0.0.1' };
const server = await createServer(config);
const url = await server.listen();
const { createdDefault, fromEnv } = server.bootstrap;
const created = createdDefault ?? (fromEnv ? { id: fromEnv.appId, apiKey: config.apiKey ?? fromEnv.generated.apiKey, clientKey: fromEnv.generated.clientKey } : undefined);
if (!created) throw new Error('the bench needs an empty store (the default application was not created) or IMKIT_APP_ID and IMKIT_API_KEY');

serve({
  gc: () => {
    globalThis.gc?.();
    return process.memoryUsage();
  },
  sockets: () => ({ engine: server.realtime.io.engine.clientsCount }),
  // Group commit: how many batches the users' messages were written in (the bench prints messages per batch), and
  // on SQLite how the writer thread's batches were settled.
  writer: () => ({ ...server.services.chat.writer.stats, thread: server.store.background().writer }),
  // The webhook dispatcher's counters (events fanned out, attempts delivered, retried, failed, refused) and the
  // backlog in the store (events not fanned out yet, deliveries pending or being sent).
  webhooks: async () => ({ stats: { ...server.dispatcher.stats }, backlog: await server.services.webhooks.backlog() }),
});
process.on('SIGTERM', () => {
  server.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
});
ready({ url, apiKey: created.apiKey, clientKey: created.clientKey, appId: created.id, appCreated: createdDefault ? true : fromEnv.created, store: server.store.describe, logLevel: config.logLevel });
