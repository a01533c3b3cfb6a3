import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';
import { TestClient } from './realtime-helpers.js';

describe('realtime delivery and the store', () => {
  it('delivery.ts reads nothing from the store itself: it asks services, as HTTP routes do', () => {
    const text = fs.readFileSync(path.join(import.meta.dirname, '..', 'src', 'realtime', 'delivery.ts'), 'utf8');
    const imports = [...text.matchAll(/^import[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]);
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((from) => from!.includes('/store/'))).toEqual([]);
  });
});

describe.each(DIALECTS)('events whose payload delivery reads through services (%s)', (dialect) => {
  let t: TestServer;
  let base: string;
  const tok: Record<string, string> = {};
  const as = (u: string) => userHeaders(t.clientKey, tok[u]!);

  beforeAll(async () => {
    t = await startTestServer(dialect);
    base = await t.server.listen();
    for (const u of ['ann', 'ben']) tok[u] = await createUser(t, u, t.apiKey, { avatarUrl: `https://a.example/${u}.png` });
    await t.request({ method: 'POST', url: '/rooms', headers: { 'IM-API-KEY': t.apiKey }, body: { _id: 'den', members: ['ann', 'ben'], owner: 'ann' } });
  });
  afterAll(async () => t?.close());

  it('hiding a whole room sends every hidden id; typing carries the sender summary; an edit arrives rendered', async () => {
    const ann = await TestClient.connect(base, 'bundle');
    const ben = await TestClient.connect(base, 'vue');
    try {
      await ann.login(tok.ann!, t.clientKey);
      await ben.login(tok.ben!, t.clientKey);
      const ids: string[] = [];
      for (const m of ['one', 'two']) ids.push((await t.request({ method: 'POST', url: '/rooms/den/message', headers: as('ben'), body: { message: m } })).body.result._id);
      expect((await t.request({ method: 'POST', url: '/messages/user-delete/all-in-room', headers: as('ann'), body: { room: 'den' } })).status).toBe(200);
      const hidden = await ann.next('userDeleteMessages');
      expect(hidden.room).toBe('den');
      expect([...hidden.messages].sort()).toEqual([...ids].sort());

      ben.socket.emit('typing', 'den', 'hm');
      expect(await ann.next('typing')).toEqual({ room: 'den', sender: 'ben', message: 'hm', senderInfo: { _id: 'ben', id: 'ben', nickname: 'ben', avatarUrl: 'https://a.example/ben.png', isRobot: false } });

      expect((await t.request({ method: 'POST', url: '/rooms/den/message', headers: as('ben'), body: { _id: ids[0], message: 'one, edited' } })).status).toBe(200);
      const edited = await ann.next('chat message', (m) => m._id === ids[0] && m.message === 'one, edited');
      expect(edited).toMatchObject({ sender: { _id: 'ben', avatarUrl: 'https://a.example/ben.png' } });
      expect(typeof edited.editedAtMS).toBe('number');
    } finally {
      ann.close();
      ben.close();
    }
  });
});
