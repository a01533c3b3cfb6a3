import fs from 'node:fs';
import path from 'node:path';
import { type Browser, type ConsoleMessage, chromium, type Page } from 'playwright-core';
import { type Config, defaultConfig } from '../src/config.js';
import { createServer, type ImkitServer } from '../src/server.js';
import { isolatedStore } from './helpers.js';

/**
 * Debian's chromium driven by playwright-core (npm test's pretest installs it where it is missing), headless with
 * its own empty profile. Tests that need it fail without it: they never skip.
 */
export const CHROMIUM = process.env.IMKIT_TEST_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: run npm test (its pretest installs it) or apt-get install chromium`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** Where the browser tests put their screenshots (CI keeps them as artifacts; not committed). */
export const SHOTS = path.resolve('test-results/screenshots');

export async function shot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Collects what the page logs as errors (console errors and uncaught exceptions); `allow` lists expected ones. */
export function consoleErrors(page: Page): { errors: string[]; allow(pattern: RegExp): void } {
  const errors: string[] = [];
  const allowed: RegExp[] = [];
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error' && !allowed.some((p) => p.test(m.text()))) errors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
  return { errors, allow: (p) => allowed.push(p) };
}

/** A server on a real port with the real clock (a browser's cookies and timers follow real time), on SQLite. */
export async function startBrowserServer(overrides: Partial<Config> = {}): Promise<{ server: ImkitServer; base: string; close(): Promise<void> }> {
  const store = isolatedStore('sqlite');
  const server = await createServer(defaultConfig({ ...store, logLevel: 'silent', port: 0, host: '127.0.0.1', ...overrides }), { usageFlushMs: 200 });
  const base = await server.listen();
  return {
    server,
    base,
    async close() {
      await server.close();
      await store.drop();
    },
  };
}
