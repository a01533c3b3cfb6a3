import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImkitServer } from '../src/server.js';
import { consoleErrors, launchBrowser, shot, startBrowserServer } from './browser-helpers.js';

/**
 * The web chat (/chat?token=...) in two browser contexts against a real server: messages, edits, recalls, typing,
 * read receipts, scrolling back through history, and a reconnect that reads what was missed over REST.
 */
describe('web chat in the browser', () => {
  let browser: Browser;
  let srv: { server: ImkitServer; base: string; close(): Promise<void> };
  const contexts: BrowserContext[] = [];
  let alice: Page;
  let bob: Page;
  const errs: Array<ReturnType<typeof consoleErrors>> = [];
  let apiKey = '';
  let clientKey = '';
  let bobToken = '';

  const admin = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${srv.base}${path}`, { method, headers: { 'IM-API-KEY': apiKey, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const json = (await r.json()) as any;
    if (json.RC !== 0) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
    return json.result;
  };
  const history = (p: Page) => p.locator('[data-testid=history] .msg .body');

  beforeAll(async () => {
    browser = await launchBrowser();
    srv = await startBrowserServer();
    apiKey = srv.server.bootstrap.createdDefault!.apiKey;
    clientKey = srv.server.bootstrap.createdDefault!.clientKey;
    const tokens: Record<string, string> = {};
    for (const id of ['alice', 'bob']) tokens[id] = (await admin('POST', '/admin/clients', { _id: id, nickname: id[0]!.toUpperCase() + id.slice(1), issueAccessToken: true })).token;
    bobToken = tokens.bob!;
    await admin('POST', '/rooms', { _id: 'team', name: 'Team', roomType: 'group', members: ['alice', 'bob'] });
    // 45 older messages: more than one page (30) of history.
    for (let i = 1; i <= 45; i++) await admin('POST', '/messages', { room: 'team', sender: i % 2 ? 'alice' : 'bob', message: `old ${i}`, messageType: 'text' });
    const open = async (url: string) => {
      const context = await browser.newContext({ baseURL: srv.base });
      contexts.push(context);
      const page = await context.newPage();
      errs.push(consoleErrors(page));
      await page.goto(url);
      return page;
    };
    alice = await open(`/chat?token=${encodeURIComponent(tokens.alice!)}&clientKey=${encodeURIComponent(clientKey)}`);
    // Without clientKey: the page asks the server for the client key of the token's application.
    bob = await open(`/chat?token=${encodeURIComponent(tokens.bob!)}`);
  });
  afterAll(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    await srv?.close();
  });

  it('both sign in; the room list shows the unread badge', async () => {
    for (const p of [alice, bob]) await expect.poll(() => p.textContent('[data-testid=status]')).toBe('connected');
    // The badge is Bob's unread count as the REST API gives it.
    const rooms = await (await fetch(`${srv.base}/rooms`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': bobToken } })).json() as any;
    const unread = (rooms.result.data as any[]).find((r) => r._id === 'team').unread as number;
    expect(unread).toBeGreaterThan(0);
    await expect.poll(() => bob.locator('button[data-room=team] [data-testid=unread]').textContent()).toBe(String(unread));
    await shot(bob, 'chat-rooms');
  });

  it('history loads the newest page, and scrolling back loads the older messages', async () => {
    await alice.click('button[data-room=team]');
    await expect.poll(() => history(alice).count()).toBe(30);
    expect(await history(alice).last().textContent()).toBe('old 45');
    // Scrolled to the newest message; scrolling to the top loads the page before.
    expect(await alice.locator('[data-testid=history]').evaluate((el: any) => el.scrollTop > 0)).toBe(true);
    await alice.locator('[data-testid=history]').evaluate((el: any) => {
      el.scrollTop = 0;
    });
    await expect.poll(() => history(alice).count()).toBe(45);
    expect(await history(alice).first().textContent()).toBe('old 1');
    await expect.poll(() => alice.locator('text=Beginning of the conversation').count()).toBe(1);
  });

  it('typing, a message, its read receipt, an edit and a recall reach the other browser', async () => {
    await bob.click('button[data-room=team]');
    await expect.poll(() => history(bob).count()).toBe(30);
    await expect.poll(() => bob.locator('button[data-room=team] [data-testid=unread]').count()).toBe(0);

    await alice.fill('input[name=message]', 'hello bo');
    await alice.type('input[name=message]', 'b');
    await expect.poll(() => bob.textContent('[data-testid=typing]')).toBe('Alice is typing…');

    await alice.click('button:text("Send")');
    await expect.poll(() => history(bob).last().textContent()).toBe('hello bob');
    // Bob has the room open: his read mark reaches Alice as a read receipt on her message.
    const mine = alice.locator('.msg.mine').last();
    await expect.poll(() => mine.locator('[data-testid=read]').count()).toBe(1);
    await shot(alice, 'chat-read-receipt');

    await mine.locator('button:text("Edit")').click();
    await alice.fill('input[name=message]', 'hello, Bob');
    await alice.click('button:text("Save")');
    await expect.poll(() => history(bob).last().textContent()).toBe('hello, Bob');
    expect(await bob.locator('.msg').last().locator('.meta').textContent()).toContain('edited');

    await alice.locator('.msg.mine').last().locator('button:text("Recall")').click();
    await expect.poll(() => history(bob).last().textContent()).toBe('This message was recalled');
    await shot(bob, 'chat-recalled');
  });

  it('after a reconnect, a message sent while offline is read over REST', async () => {
    // Cut Bob's connection from the server's side (a network drop: his client reconnects by itself), and send
    // while he is away: no socket delivers it to him.
    const sockets = await srv.server.realtime.io.fetchSockets();
    const bobs = sockets.filter((s) => JSON.stringify(s.rooms ? [...s.rooms] : []).includes(':bob'));
    expect(bobs.length).toBe(1);
    const engine = (srv.server.realtime.io.sockets.sockets.get(bobs[0]!.id) as any).conn;
    engine.close();
    await admin('POST', '/messages', { room: 'team', sender: 'alice', message: 'while you were away', messageType: 'text' });
    await expect.poll(() => history(alice).last().textContent()).toBe('while you were away');
    await expect.poll(() => history(bob).last().textContent(), { timeout: 15_000 }).toBe('while you were away');
    expect(await bob.textContent('[data-testid=status]')).toBe('connected');
  });

  it('an image uploaded in one browser shows in the other (its thumbnail, through a signed URL)', async () => {
    const { default: sharp } = await import('sharp');
    const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toBuffer();
    await alice.locator('[data-testid=image-input]').setInputFiles({ name: 'red.png', mimeType: 'image/png', buffer: png });
    for (const p of [alice, bob]) {
      const img = p.locator('[data-testid=history] .msg').last().locator('img[data-testid=image]');
      await expect.poll(() => img.count(), { timeout: 15_000 }).toBe(1);
      // Loaded: the browser decoded the thumbnail the server made (at most 320 pixels on its longer side).
      await expect.poll(() => img.evaluate((el) => (el as unknown as { naturalWidth: number }).naturalWidth)).toBe(320);
      expect(await img.getAttribute('src')).toMatch(/\/files\/chatserver-upload\/[0-9a-f]{24}\?.*signature=/);
    }
    await shot(bob, 'chat-image');
    // The message as the API stores it: an image message naming the file and its thumbnail.
    const res = await fetch(`${srv.base}/rooms/team/messages/v3?limit=1`, { headers: { 'IM-API-KEY': apiKey, 'IM-CLIENT-ID': 'bob' } });
    const last = ((await res.json()) as any).result;
    expect(last.data[0]).toMatchObject({ messageType: 'image', message: 'red.png', width: 640, height: 480, originalUrl: expect.stringMatching(/^\/files\/chatserver-upload\/[0-9a-f]{24}$/), thumbnailUrl: expect.stringMatching(/^\/files\/chatserver-upload\/[0-9a-f]{24}$/) });
  });

  it('no page logged an error', () => {
    expect(errs.flatMap((e) => e.errors)).toEqual([]);
  });
});
