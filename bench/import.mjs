// imkit-server import against a source server that holds the request limit: messages imported per second.
// A source imkit-server (SQLite, in this process) is filled through its API with --messages messages in --rooms
// group rooms of --users users, then started again with its limit per API key set to --limit requests a minute;
// a fresh target store imports it with the importer's defaults (the same --limit, 4 rooms at a time, pages of
// 200). The ceiling the limit allows is limit x 200 / 60 messages a second, less the requests for users and rooms.
//
// Usage: npm run build && node bench/import.mjs [--messages 10000] [--rooms 20] [--users 50] [--limit 1000] [--json]
import fs from 'node:fs';
import { defaultConfig } from '../dist/config.js';
import { createServer } from '../dist/server.js';
import { ImportService } from '../dist/importer/import-service.js';
import { systemClock } from '../dist/lib/clock.js';
import { closeAgent, createRooms, createUsers, request } from './lib/api.mjs';
import { importBench } from './lib/import-setup.mjs';

const { opts, nMessages, nRooms, nUsers, limit, log, srcDir, dstDir, base } = importBench('import', { messages: '10000', rooms: '20', users: '50' });

// Fill without a limit, then serve with it.
let source = await createServer(defaultConfig({ ...base, dataDir: srcDir, rateLimitPerMinute: 1_000_000 }));
const app = source.bootstrap.createdDefault;
let url = await source.listen();
const users = Array.from({ length: nUsers }, (_, i) => `u${i}`);
await createUsers(url, app.apiKey, users);
const rooms = Array.from({ length: nRooms }, (_, r) => ({ id: `g${r}`, members: users.filter((_, i) => i % nRooms === r || i % 7 === r % 7) }));
await createRooms(url, app.apiKey, rooms);
const t0 = Date.now();
let next = 0;
await Promise.all(
  Array.from({ length: 16 }, async () => {
    for (let i = next++; i < nMessages; i = next++) {
      const room = rooms[i % nRooms];
      const res = await request(url, 'POST', '/messages', {
        headers: { 'IM-API-KEY': app.apiKey },
        body: { room: room.id, sender: room.members[i % room.members.length], messageType: 'text', message: `message ${i}` },
      });
      if (res.status !== 200) throw new Error(`send: ${res.status}`);
    }
  }),
);
closeAgent();
log(`filled ${nMessages} messages in ${nRooms} rooms of ${nUsers} users in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
await source.close();
source = await createServer(defaultConfig({ ...base, dataDir: srcDir, rateLimitPerMinute: limit }));
url = await source.listen();

const target = await createServer(defaultConfig({ ...base, dataDir: dstDir }));
let lastLine = 0;
const report = await new ImportService(target.store.db, systemClock).run({
  from: url,
  apiKey: app.apiKey,
  appId: 'default',
  limitPerMinute: limit,
  onProgress: (p) => {
    if (Date.now() - lastLine < 5000 && p.phase !== 'done') return;
    lastLine = Date.now();
    log(`  ${p.phase}: rooms ${p.roomsDone}/${p.roomsTotal}, messages ${p.messagesDone} (${p.messagesPerSecond}/s), requests ${p.requestsInLastMinute}/${p.limitPerMinute} in the last minute`);
  },
});
await target.close();
await source.close();
fs.rmSync(srcDir, { recursive: true, force: true });
fs.rmSync(dstDir, { recursive: true, force: true });

const ceiling = Math.round((limit * 200) / 60);
const result = {
  messages: report.messages.created,
  users: report.users.created,
  rooms: report.rooms.created,
  seconds: report.durationMs / 1000,
  messagesPerSecond: report.messagesPerSecond,
  requests: report.requests,
  throttled: report.throttled,
  limitPerMinute: limit,
  ceilingMessagesPerSecond: ceiling,
};
if (opts.json) console.log(JSON.stringify(result));
else {
  log(
    `imported ${result.messages} messages, ${result.users} users, ${result.rooms} rooms in ${result.seconds.toFixed(1)} s: ${result.messagesPerSecond} messages/s; ` +
      `${result.requests} requests (${result.throttled} answered 429) under a limit of ${limit}/min (ceiling ~${ceiling} messages/s at 200 a page)`,
  );
}
