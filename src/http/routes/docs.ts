import fs from 'node:fs';
import { openApiDocument } from '../openapi.js';
import { defineRoutes, type RouteDef } from '../route.js';

let packageVersion: string | undefined;

/** The version in package.json (src/http/routes and dist/http/routes are both three levels below it). */
export function serverVersion(): string {
  if (packageVersion === undefined) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
      packageVersion = typeof pkg.version === 'string' ? pkg.version : '0.0.0';
    } catch {
      packageVersion = '0.0.0';
    }
  }
  return packageVersion;
}

/**
 * The API described by itself: /openapi.json (OpenAPI 3.1, built from the route table on each request) and
 * /docs (a self-contained page that renders it; no CDN, the machines may have no internet).
 */
export function docsRoutes(getRoutes: () => RouteDef[], version: string = serverVersion()) {
  return defineRoutes([
    {
      method: 'GET',
      url: '/openapi.json',
      auth: 'public',
      summary: 'The OpenAPI 3.1 description of this API (served as is, without the envelope)',
      example: 'curl $BASE/openapi.json',
      raw: { contentType: 'application/json; charset=utf-8' },
      handler: async () => openApiDocument(getRoutes(), { version }),
    },
    {
      method: 'GET',
      url: '/docs',
      auth: 'public',
      summary: 'A browsable page of the API, rendered from /openapi.json (HTML, no external resources)',
      example: 'curl $BASE/docs',
      raw: { contentType: 'text/html; charset=utf-8' },
      handler: async () => DOCS_PAGE,
    },
  ]);
}

/**
 * The docs page. Its script fetches /openapi.json and renders it as HTML text (every value escaped); the
 * rendering is one function, renderSpec(spec, filter), so a test can run it without a browser.
 */
export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imkit-server API</title>
<style>
:root {
  --bg: #f7f8fa; --fg: #1d2330; --muted: #5f6b7a; --card: #fff; --line: #e2e6ec; --code: #f0f2f5;
  --get: #1f7a4d; --post: #2456b3; --put: #a05a00; --delete: #b3261e; --accent: #2456b3;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171c; --fg: #e4e7ec; --muted: #9aa4b2; --card: #1c2027; --line: #2c323c; --code: #252a33;
    --get: #4cc38a; --post: #6c9cff; --put: #f0a644; --delete: #ff6b61; --accent: #6c9cff; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 20px 28px; border-bottom: 1px solid var(--line); background: var(--card); display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; }
header h1 { margin: 0; font-size: 20px; }
header .version { color: var(--muted); font-size: 13px; }
header .intro { flex: 1 1 360px; color: var(--muted); font-size: 13px; margin: 0; }
#filter { padding: 7px 10px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); width: 260px; font: inherit; }
.layout { display: flex; align-items: flex-start; }
nav { position: sticky; top: 0; flex: 0 0 200px; padding: 20px 12px 20px 28px; max-height: 100vh; overflow-y: auto; }
nav a { display: block; padding: 3px 0; color: var(--muted); text-decoration: none; font-size: 14px; }
nav a:hover { color: var(--accent); }
nav .count { float: right; font-size: 12px; }
main { flex: 1; min-width: 0; padding: 12px 28px 40px 12px; }
h2 { margin: 24px 0 10px; font-size: 17px; text-transform: capitalize; }
.op { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin: 0 0 12px; padding: 12px 16px; }
.op-head { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.method { font: 700 12px/1 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: #fff; padding: 5px 7px; border-radius: 4px; min-width: 58px; text-align: center; }
.m-get { background: var(--get); } .m-post { background: var(--post); } .m-put { background: var(--put); } .m-delete { background: var(--delete); }
.path { font: 600 14px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.auth { margin-left: auto; font-size: 12px; border: 1px solid var(--line); border-radius: 999px; padding: 2px 9px; color: var(--muted); white-space: nowrap; }
.auth-admin { border-color: var(--delete); color: var(--delete); }
.auth-public { border-color: var(--get); color: var(--get); }
.summary { margin: 8px 0 4px; }
.example { position: relative; }
pre { background: var(--code); border-radius: 6px; padding: 9px 12px; margin: 8px 0; overflow-x: auto; font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all; }
.copy { position: absolute; top: 6px; right: 6px; font-size: 11px; padding: 2px 8px; border: 1px solid var(--line); border-radius: 4px; background: var(--card); color: var(--muted); cursor: pointer; }
h4 { margin: 10px 0 4px; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
td { border-top: 1px solid var(--line); padding: 4px 8px 4px 0; vertical-align: top; }
td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: nowrap; width: 1%; padding-right: 16px; }
td.type { color: var(--accent); white-space: nowrap; width: 1%; padding-right: 16px; }
.req { color: var(--delete); font-size: 11px; margin-left: 4px; }
.notes { color: var(--muted); }
.empty, .error { color: var(--muted); padding: 20px 0; }
.error { color: var(--delete); }
@media (max-width: 760px) { nav { display: none; } main { padding: 12px 16px; } }
</style>
</head>
<body>
<header>
  <div><h1>imkit-server API</h1><div class="version" id="version"></div></div>
  <p class="intro">Every success is HTTP 200 with <code>{"RC":0,"RM":"OK","result":...}</code>; an error has HTTP status = RC and
  <code>{"RC","RM","error","message"}</code>. In the examples, <code>$BASE</code> is this server's URL and <code>$API_KEY</code>,
  <code>$CLIENT_KEY</code>, <code>$TOKEN</code> the credentials. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
  <input id="filter" type="search" placeholder="Filter routes" aria-label="Filter routes">
</header>
<div class="layout">
  <nav id="nav"></nav>
  <main id="app"><div class="empty">Loading /openapi.json ...</div></main>
</div>
<script>
'use strict';
var AUTH_LABEL = { admin: 'API key', user: 'user (or API key + IM-CLIENT-ID)', either: 'user or API key', public: 'public' };
var METHODS = ['get', 'post', 'put', 'delete', 'patch'];

function esc(value) {
  return String(value).replace(/[&<>"']/g, function (c) {
    return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
  });
}

function resolve(spec, obj) {
  if (obj && typeof obj.$ref === 'string' && obj.$ref.indexOf('#/') === 0) {
    var target = obj.$ref.slice(2).split('/').reduce(function (o, k) { return o ? o[k] : undefined; }, spec);
    return target || obj;
  }
  return obj;
}

function typeText(s) {
  if (!s || typeof s !== 'object') return 'any';
  if (s.$ref) return s.$ref.split('/').pop();
  var alts = s.anyOf || s.oneOf;
  if (alts) return alts.map(typeText).join(' | ');
  if ('const' in s) return JSON.stringify(s.const);
  var types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (types.length === 0) return s.properties ? 'object' : 'any';
  return types.map(function (t) { return t === 'array' ? 'array of ' + typeText(s.items) : t; }).join(' | ');
}

function notesText(s) {
  if (!s || typeof s !== 'object') return '';
  var n = [];
  if (s.description) n.push(s.description);
  if (s.enum) n.push('one of ' + s.enum.map(function (v) { return JSON.stringify(v); }).join(', '));
  if (s.minLength !== undefined && s.maxLength !== undefined) n.push(s.minLength + '-' + s.maxLength + ' characters');
  else if (s.maxLength !== undefined) n.push('at most ' + s.maxLength + ' characters');
  else if (s.minLength !== undefined) n.push('at least ' + s.minLength + ' characters');
  if (s.minimum !== undefined) n.push('>= ' + s.minimum);
  if (s.maximum !== undefined) n.push('<= ' + s.maximum);
  if (s.minItems !== undefined) n.push('at least ' + s.minItems + ' items');
  if (s.maxItems !== undefined) n.push('at most ' + s.maxItems + ' items');
  if (s.pattern) n.push('matches ' + s.pattern);
  if (s.format) n.push(s.format);
  if (s['default'] !== undefined) n.push('default ' + JSON.stringify(s['default']));
  var alts = s.anyOf || s.oneOf;
  if (alts) alts.forEach(function (a) { var t = notesText(a); if (t) n.push(typeText(a) + ': ' + t); });
  if (s.type === 'array' || (Array.isArray(s.type) && s.type.indexOf('array') >= 0)) {
    var it = s.items && typeof s.items === 'object' && !s.items.properties ? notesText(s.items) : '';
    if (it) n.push('each ' + it);
  }
  return n.join('; ');
}

/** One row per field, nested objects (and arrays of objects) as dotted names. */
function fieldRows(schema, prefix, rows) {
  if (!schema || typeof schema !== 'object') return rows;
  var props = schema.properties || {};
  var required = schema.required || [];
  Object.keys(props).forEach(function (name) {
    var p = props[name];
    var full = prefix + name;
    rows.push({ name: full, type: typeText(p), required: required.indexOf(name) >= 0, notes: notesText(p) });
    if (p && p.properties) fieldRows(p, full + '.', rows);
    if (p && p.items && p.items.properties) fieldRows(p.items, full + '[].', rows);
  });
  return rows;
}

function fieldTable(title, rows) {
  if (rows.length === 0) return '';
  return '<h4>' + esc(title) + '</h4><table>' + rows.map(function (r) {
    return '<tr><td class="name">' + esc(r.name) + (r.required ? '<span class="req">required</span>' : '') +
      '</td><td class="type">' + esc(r.type) + '</td><td class="notes">' + esc(r.notes) + '</td></tr>';
  }).join('') + '</table>';
}

function paramRows(spec, params, where) {
  return (params || []).map(function (p) { return resolve(spec, p); }).filter(function (p) { return p && p['in'] === where; })
    .map(function (p) {
      var notes = notesText(p.schema);
      if (p.description) notes = p.description + (notes ? '; ' + notes : '');
      return { name: p.name, type: typeText(p.schema), required: !!p.required, notes: notes };
    });
}

function renderOp(spec, method, path, op) {
  var auth = op['x-auth'] || (op.security && op.security.length === 0 ? 'public' : 'user');
  var samples = op['x-codeSamples'] || [];
  var body = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'];
  var bodyRows = body ? fieldRows(resolve(spec, body.schema), '', []) : [];
  var html = '<div class="op" id="' + esc(method + '-' + path) + '">' +
    '<div class="op-head"><span class="method m-' + esc(method) + '">' + esc(method.toUpperCase()) + '</span>' +
    '<span class="path">' + esc(path) + '</span>' +
    '<span class="auth auth-' + esc(auth) + '" title="' + esc(op.description || '') + '">' + esc(AUTH_LABEL[auth] || auth) + '</span></div>' +
    '<div class="summary">' + esc(op.summary || '') + '</div>';
  samples.forEach(function (s) {
    html += '<div class="example"><pre>' + esc(s.source) + '</pre><button class="copy" type="button">copy</button></div>';
  });
  html += fieldTable('Path parameters', paramRows(spec, op.parameters, 'path'));
  html += fieldTable('Query parameters', paramRows(spec, op.parameters, 'query'));
  html += fieldTable('Headers', paramRows(spec, op.parameters, 'header'));
  if (body) html += fieldTable('Body' + (op.requestBody.required ? '' : ' (optional)'), bodyRows);
  return html + '</div>';
}

/** The page body for an OpenAPI document, optionally keeping only the routes that contain the filter text. */
function renderSpec(spec, filter) {
  var needle = (filter || '').trim().toLowerCase();
  var groups = {};
  var order = (spec.tags || []).map(function (t) { return t.name; });
  Object.keys(spec.paths || {}).forEach(function (path) {
    var item = spec.paths[path];
    METHODS.forEach(function (method) {
      var op = item[method];
      if (!op) return;
      var text = (method + ' ' + path + ' ' + (op.summary || '') + ' ' + (op['x-auth'] || '')).toLowerCase();
      if (needle && text.indexOf(needle) < 0) return;
      var tag = (op.tags && op.tags[0]) || 'other';
      if (order.indexOf(tag) < 0) order.push(tag);
      (groups[tag] = groups[tag] || []).push(renderOp(spec, method, path, op));
    });
  });
  var nav = '';
  var main = '';
  order.forEach(function (tag) {
    var ops = groups[tag];
    if (!ops) return;
    nav += '<a href="#tag-' + esc(tag) + '">' + esc(tag) + '<span class="count">' + ops.length + '</span></a>';
    main += '<section id="tag-' + esc(tag) + '"><h2>' + esc(tag) + '</h2>' + ops.join('') + '</section>';
  });
  if (!main) main = '<div class="empty">No route matches.</div>';
  return { nav: nav, main: main };
}

function show(spec) {
  var filter = document.getElementById('filter');
  var out = renderSpec(spec, filter ? filter.value : '');
  document.getElementById('nav').innerHTML = out.nav;
  document.getElementById('app').innerHTML = out.main;
}

async function main() {
  var app = document.getElementById('app');
  try {
    var res = await fetch('/openapi.json', { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error('GET /openapi.json: HTTP ' + res.status);
    var spec = await res.json();
    document.getElementById('version').textContent = 'version ' + ((spec.info && spec.info.version) || '?') + ' - OpenAPI ' + spec.openapi;
    show(spec);
    var filter = document.getElementById('filter');
    if (filter) filter.addEventListener('input', function () { show(spec); });
    app.addEventListener('click', function (ev) {
      var btn = ev.target;
      if (!btn || !btn.classList || !btn.classList.contains('copy')) return;
      var text = btn.previousElementSibling ? btn.previousElementSibling.textContent : '';
      var done = function () { btn.textContent = 'copied'; setTimeout(function () { btn.textContent = 'copy'; }, 1200); };
      if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, function () {});
    });
  } catch (err) {
    app.innerHTML = '<div class="error">Could not load the API description: ' + esc(err && err.message ? err.message : err) + '</div>';
  }
}

main();
</script>
</body>
</html>
`;
