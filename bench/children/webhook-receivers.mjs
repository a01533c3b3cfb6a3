// Webhook receivers for the webhooks scenario: `n` node:http servers on 127.0.0.1, each answering every POST 200
// with an empty body at once and counting what it got (requests, distinct webhook-id values, requests without the
// signature headers, first and last arrival on the epoch clock in ms, so that the orchestrator can compare them with
// its own).
import http from 'node:http';
import { serve, ready } from '../lib/child.mjs';

const receivers = [];
const now = () => performance.timeOrigin + performance.now();

function fresh(r) {
  r.requests = 0;
  r.ids = new Set();
  r.unsigned = 0;
  r.bytes = 0;
  r.firstAt = null;
  r.lastAt = null;
}

async function start({ n }) {
  while (receivers.length < n) {
    const r = {};
    fresh(r);
    r.server = http.createServer((req, res) => {
      let size = 0;
      req.on('data', (c) => (size += c.length));
      req.on('end', () => {
        const t = now();
        r.requests++;
        r.bytes += size;
        r.firstAt ??= t;
        r.lastAt = t;
        const id = req.headers['webhook-id'];
        if (id) r.ids.add(id);
        if (!id || !req.headers['webhook-signature'] || !req.headers['webhook-timestamp']) r.unsigned++;
        res.writeHead(200, { 'content-length': '0' });
        res.end();
      });
    });
    r.server.keepAliveTimeout = 5000;
    await new Promise((resolve, reject) => {
      r.server.once('error', reject);
      r.server.listen(0, '127.0.0.1', resolve);
    });
    r.url = `http://127.0.0.1:${r.server.address().port}/hook`;
    receivers.push(r);
  }
  return { urls: receivers.slice(0, n).map((r) => r.url) };
}

function reset() {
  for (const r of receivers) fresh(r);
  return {};
}

/** Per receiver and in total: what has arrived since the last reset. */
function counts() {
  const per = receivers.map((r) => ({ requests: r.requests, distinct: r.ids.size, unsigned: r.unsigned, firstAt: r.firstAt, lastAt: r.lastAt }));
  const at = (k, pick) => per.map((p) => p[k]).filter((x) => x !== null).reduce((a, x) => (a === null ? x : pick(a, x)), null);
  return {
    requests: per.reduce((a, p) => a + p.requests, 0),
    distinct: per.reduce((a, p) => a + p.distinct, 0),
    unsigned: per.reduce((a, p) => a + p.unsigned, 0),
    firstAt: at('firstAt', Math.min),
    lastAt: at('lastAt', Math.max),
    per,
  };
}

async function close() {
  await Promise.all(receivers.map((r) => new Promise((resolve) => r.server.close(() => resolve()))));
  receivers.length = 0;
  return {};
}

serve({ start, reset, counts, close });
ready();
