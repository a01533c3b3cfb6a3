// imkit-server import held at the source's documented limit, 1000 requests a minute per API key, for more than one
// window: messages imported per second against what that limit allows (docs/migrating.md, "Figures").
//
// The source (an imkit-server on SQLite, in this process) gets its users and rooms through its API; its messages
// are written straight into its store by the importer's own store path (ImportRepo), because sending 400,000
// messages through the API would take longer than the import being measured. It is then started again
// with its limit per API key at --limit, and a fresh target imports it with the importer's defaults (the same
// --limit, 4 rooms at a time, pages of 200). For each minute of the import the script prints the requests and the
// messages imported in it; at the end, the rate over the whole import and over its full minutes after the first.
//
// Usage: npm run build && node bench/import-sustained.mjs [--messages 400000] [--rooms 50] [--users 100] [--limit 1000] [--json]
import fs from 'node:fs';
import { defaultConfig } from '../dist/config.js';
import { createServer } from '../dist/server.js';
import { ImportService } from '../dist/importer/import-service.js';
import { ImportRepo } from '../dist/store/import-repo.js';
import { newObjectId } from '../dist/lib/ids.js';
import { systemClock } from '../dist/lib/clock.js';
import { closeAgent, createRooms, request } from './lib/api.mjs';
import { importBench } from './lib/import-setup.mjs';

const { opts, nMessages, nRooms, nUsers, limit, log, srcDir, dstDir, base } = importBench('import at the source\'s limit', { messages: '400000', rooms: '50', users: '100' });

try {
  // --- the source: users and rooms through the API (without a limit), messages through the store path
  let source = await createServer(defaultConfig({ ...base, dataDir: srcDir, rateLimitPerMinute: 1_000_000 }));
  const app = source.bootstrap.createdDefault;
  let url = await source.listen();
  const t0 = Date.now();
  const users = Array.from({ length: nUsers }, (_, i) => `u${i}`);
  for (let i = 0; i < users.length; i += 500) {
    const res = await request(url, 'POST', '/admin/clients/list', { headers: { 'IM-API-KEY': app.apiKey }, body: { data: users.slice(i, i + 500).map((id) => ({ _id: id, nickname: `User ${id}` })) } });
    if (res.status !== 200) throw new Error(`create users: ${res.status} ${res.raw.slice(0, 200)}`);
  }
  const rooms = Array.from({ length: nRooms }, (_, r) => ({ id: `g${r}`, members: users.filter((_, i) => i % nRooms === r || i % 7 === r % 7) }));
  await createRooms(url, app.apiKey, rooms);
  closeAgent();
  const store = new ImportRepo(source.store.db);
  const perRoom = Math.ceil(nMessages / nRooms);
  let at = Date.now() - nMessages - 60_000;
  for (const room of rooms) {
    const count = Math.min(perRoom, nMessages - perRoom * rooms.indexOf(room));
    for (let i = 0; i < count; i += 2000) {
      const rows = [];
      for (let k = i; k < Math.min(count, i + 2000); k++) {
        at++;
        rows.push({
          app_id: app.id,
          id: newObjectId(at),
          room_id: room.id,
          sender_id: room.members[k % room.members.length],
          message_type: 'text',
          message: JSON.stringify(`message ${k} of ${room.id}`),
          fields: '{}',
          reply_id: null,
          pinned: 0,
          edited_at: null,
          message_time: at,
          created_at: at,
          updated_at: at,
        });
      }
      await source.store.db.transaction().execute(async (trx) => {
        const r = new ImportRepo(trx);
        for (let j = 0; j < rows.length; j += 500) await r.putMessages(app.id, rows.slice(j, j + 500), []);
      });
    }
    await store.settleRoom(app.id, room.id, null);
  }
  log(`source: ${nUsers} users, ${nRooms} rooms, ${nMessages} messages in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await source.close();
  source = await createServer(defaultConfig({ ...base, dataDir: srcDir, rateLimitPerMinute: limit }));
  url = await source.listen();

  // --- the import, with its progress sampled 4 times a second
  const target = await createServer(defaultConfig({ ...base, dataDir: dstDir }));
  const started = Date.now();
  let latest = { messagesDone: 0, requests: 0 };
  const samples = [{ t: 0, requests: 0, messages: 0 }];
  const sampler = setInterval(() => samples.push({ t: Date.now() - started, requests: latest.requests, messages: latest.messagesDone }), 250);
  let lastLine = 0;
  const report = await new ImportService(target.store.db, systemClock).run({
    from: url,
    apiKey: app.apiKey,
    appId: 'default',
    limitPerMinute: limit,
    onProgress: (p) => {
      latest = p;
      if (Date.now() - lastLine < 10_000 && p.phase !== 'done') return;
      lastLine = Date.now();
      log(`  ${p.phase}: rooms ${p.roomsDone}/${p.roomsTotal}, messages ${p.messagesDone} (${p.messagesPerSecond}/s), requests ${p.requestsInLastMinute}/${p.limitPerMinute} in the last minute (${p.requests} in all)`);
    },
  });
  clearInterval(sampler);
  const end = Date.now() - started;
  samples.push({ t: end, requests: report.requests, messages: report.messages.created });
  await target.close();
  await source.close();

  // Per minute of the import (from its start): requests sent and messages imported. The source counts a request
  // when it arrives and the importer until a minute after its answer, so a minute's requests never pass the limit.
  const sampleAt = (t) => samples.filter((x) => x.t <= t).at(-1);
  const minutes = [];
  for (let k = 0; k * 60_000 < end; k++) {
    const [a, b] = [sampleAt(k * 60_000), sampleAt(Math.min(end, (k + 1) * 60_000))];
    minutes.push({ minute: k + 1, seconds: (b.t - a.t) / 1000, requests: b.requests - a.requests, messages: b.messages - a.messages, full: (k + 1) * 60_000 <= end });
  }
  const steady = minutes.filter((m) => m.full && m.minute > 1);
  const ceiling = Math.round((limit * 200) / 60);
  const result = {
    messages: report.messages.created,
    users: report.users.created,
    rooms: report.rooms.created,
    seconds: report.durationMs / 1000,
    messagesPerSecond: report.messagesPerSecond,
    // Full minutes after the first (whose budget is spent at once): the rate the limit holds the import to.
    steadyMessagesPerSecond: steady.length ? Math.round(steady.reduce((n, m) => n + m.messages, 0) / steady.reduce((n, m) => n + m.seconds, 0)) : null,
    requests: report.requests,
    throttled: report.throttled,
    limitPerMinute: limit,
    ceilingMessagesPerSecond: ceiling,
    minutes,
  };
  for (const m of minutes) log(`  minute ${m.minute}${m.full ? '' : ` (${m.seconds.toFixed(1)} s)`}: ${m.requests} requests sent, ${m.messages} messages imported`);
  if (opts.json) console.log(JSON.stringify(result));
  else {
    log(
      `imported ${result.messages} messages, ${result.users} users, ${result.rooms} rooms in ${result.seconds.toFixed(1)} s: ${result.messagesPerSecond} messages/s over the whole import, ` +
        `${result.steadyMessagesPerSecond ?? '-'}/s in its full minutes after the first; ${result.requests} requests (${result.throttled} answered 429) ` +
        `under a limit of ${limit}/min (ceiling ~${ceiling} messages/s at 200 a page)`,
    );
  }
} finally {
  fs.rmSync(srcDir, { recursive: true, force: true });
  fs.rmSync(dstDir, { recursive: true, force: true });
}
