import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { AppError } from '../errors.js';
import { serverVersion } from './routes/docs.js';

/**
 * The server's own web pages (docs/dashboard.md): the landing page at `/`, the dashboard shell under `/dashboard`
 * and the web chat shell at `/chat`, with their scripts and styles from `dist/web` (built by `npm run build` with
 * esbuild from `web/`). They are not API routes: no envelope, no credential, no entry in the route table; what
 * their scripts do goes through the API and the one guard like any other client.
 *
 * Every page gets a Content-Security-Policy without inline scripts or styles, refuses to be framed, and sends no
 * Referer (the web chat's URL carries a user token).
 */

/** dist/web from both src/http (tests) and dist/http (the built server). */
export const WEB_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

function secureHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('Content-Security-Policy', CSP)
    .header('X-Frame-Options', 'DENY')
    .header('X-Content-Type-Options', 'nosniff')
    .header('Referrer-Policy', 'no-referrer')
    .header('Cross-Origin-Opener-Policy', 'same-origin');
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function shell(title: string, script: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/app.css">
<script type="module" src="/assets/${script}"></script>
</head>
<body>
<div id="root"><noscript>This page needs JavaScript.</noscript></div>
</body>
</html>
`;
}

export function landingPage(version: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imkit-server</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/app.css">
</head>
<body class="landing">
<main class="landing-card">
<h1>imkit-server</h1>
<p class="muted">A self-hostable chat server speaking the IMKIT Platform API. Version <span id="version">${escapeHtml(version)}</span>.</p>
<ul class="links">
<li><a href="/dashboard">Dashboard</a> <span class="muted">operators: applications, keys, usage, users and rooms, webhooks, audit log</span></li>
<li><a href="/docs">API documentation</a> <span class="muted">every route, rendered from /openapi.json</span></li>
<li><a href="/healthz">Health check</a> <span class="muted">200 once the server accepts work</span></li>
</ul>
</main>
</body>
</html>
`;
}

/** Registers the pages and their assets on the HTTP server. */
export function registerPages(app: FastifyInstance, version: string = serverVersion()): void {
  // The built assets, listed once: a request names one of these files or gets 404 (no path is ever joined
  // from user input, so no traversal).
  const assets = new Map<string, string>();
  try {
    for (const name of fs.readdirSync(WEB_DIR)) assets.set(name, path.join(WEB_DIR, name));
  } catch {
    // Not built: the pages say so (see below) instead of failing the server.
  }
  const landing = landingPage(version);
  const dashboard = shell('imkit-server dashboard', 'dashboard.js');
  const chat = shell('imkit-server chat', 'chat.js');
  const page = (html: string) => async (_req: unknown, reply: FastifyReply) => {
    secureHeaders(reply).header('Cache-Control', 'no-store').type('text/html; charset=utf-8');
    return html;
  };
  app.get('/', page(landing));
  app.get('/dashboard', page(dashboard));
  app.get('/dashboard/*', page(dashboard));
  app.get('/chat', page(chat));
  app.get<{ Params: { file: string } }>('/assets/:file', async (request, reply) => {
    const file = assets.get(request.params.file);
    if (!file) throw new AppError('NOT_FOUND', `No asset ${request.params.file}${assets.size === 0 ? ' (the web assets are not built: npm run build)' : ''}`);
    secureHeaders(reply)
      .type(TYPES[path.extname(file)] ?? 'application/octet-stream')
      .header('Cache-Control', 'no-cache');
    return fs.promises.readFile(file);
  });
}
