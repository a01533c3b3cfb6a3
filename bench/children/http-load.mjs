// Load generator: autocannon against one HTTP target, cycling through request variants (users x rooms).
import net from 'node:net';
import autocannon from 'autocannon';
import { serve, ready } from '../lib/child.mjs';
import { Hist } from '../lib/hist.mjs';

function run({ url, connections = 32, durationSec = 3, overallRate, variants }) {
  let next = 0;
  const prepared = variants.map((v) => ({ method: v.method, path: v.path, headers: { ...(v.body !== undefined ? { 'content-type': 'application/json' } : {}), ...v.headers }, body: v.body === undefined ? undefined : JSON.stringify(v.body) }));
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url,
        connections,
        duration: durationSec,
        ...(overallRate ? { overallRate: Math.max(1, Math.round(overallRate)) } : {}),
        requests: [
          {
            setupRequest: (req) => {
              const v = prepared[next++ % prepared.length];
              return { ...req, method: v.method, path: v.path, headers: v.headers, body: v.body };
            },
          },
        ],
      },
      (err, r) => {
        if (err) return reject(err);
        resolve({
          requests: r.requests.total,
          perSec: r.requests.total / r.duration,
          duration: r.duration,
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          statusCodes: r.statusCodeStats,
          latency: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, mean: r.latency.mean },
        });
      },
    );
  });
}

/**
 * Open loop at a fixed rate, evenly spaced (autocannon's own rate limit sends each connection's quota for the
 * second in one burst, which measures its bursts rather than the server). Latency runs from the moment a
 * request was due, so a generator or connection that falls behind shows up in the figures (no coordinated
 * omission). A minimal keep-alive HTTP/1.1 client on raw sockets (Node's http client is too slow to pace
 * a bare Fastify route): at most `maxConnections` requests in flight, one per connection; a due request waits
 * for a free connection.
 */
async function paced({ url, rate, durationSec, variants, maxConnections = 64 }) {
  const target = new URL(url);
  const prepared = variants.map((v) => {
    const body = v.body === undefined ? '' : JSON.stringify(v.body);
    const headers = { host: target.host, connection: 'keep-alive', ...(body ? { 'content-type': 'application/json' } : {}), 'content-length': Buffer.byteLength(body), ...v.headers };
    return Buffer.from(`${v.method} ${v.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, x]) => `${k}: ${x}`).join('\r\n')}\r\n\r\n${body}`);
  });
  const hist = new Hist();
  const codes = {};
  let errors = 0;
  let issued = 0;
  let done = 0;
  const idle = [];
  const waiting = [];
  let open = 0;
  const finish = (conn, status) => {
    codes[status] = (codes[status] ?? 0) + 1;
    hist.add(performance.now() - conn.due);
    done++;
    conn.due = undefined;
    const next = waiting.shift();
    if (next) send(conn, next);
    else idle.push(conn);
  };
  const connect = () => {
    open++;
    const sock = net.connect({ host: target.hostname, port: Number(target.port) });
    sock.setNoDelay(true);
    const conn = { sock, buf: Buffer.alloc(0), due: undefined };
    sock.on('data', (chunk) => {
      conn.buf = conn.buf.length ? Buffer.concat([conn.buf, chunk]) : chunk;
      const headEnd = conn.buf.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = conn.buf.subarray(0, headEnd).toString('latin1');
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (conn.buf.length < headEnd + 4 + len) return;
      conn.buf = conn.buf.subarray(headEnd + 4 + len);
      finish(conn, Number(head.slice(9, 12)));
    });
    const fail = () => {
      if (conn.dead) return;
      conn.dead = true;
      open--;
      const i = idle.indexOf(conn);
      if (i >= 0) idle.splice(i, 1);
      if (conn.due !== undefined) {
        errors++;
        done++;
      }
    };
    sock.on('error', fail);
    sock.on('close', fail);
    return conn;
  };
  const send = (conn, job) => {
    conn.due = job.due;
    conn.sock.write(job.req);
  };
  const fire = (due) => {
    const job = { due, req: prepared[issued++ % prepared.length] };
    const conn = idle.pop() ?? (open < maxConnections ? connect() : undefined);
    if (conn) send(conn, job);
    else waiting.push(job);
  };
  const start = performance.now();
  const end = start + durationSec * 1000;
  const interval = 1000 / rate;
  await new Promise((resolve) => {
    const tick = () => {
      const t = Math.min(performance.now(), end);
      while (start + issued * interval <= t) fire(start + issued * interval);
      if (performance.now() >= end) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const deadline = performance.now() + 30_000;
  while (done < issued && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  for (const c of idle) c.sock.destroy();
  const s = hist.summary();
  const ok = codes[200] ?? 0;
  return { requests: issued, perSec: issued / durationSec, duration: durationSec, non2xx: done - ok - errors, errors, timeouts: issued - done, statusCodes: codes, latency: { p50: s.p50, p99: s.p99, max: s.max, mean: s.mean } };
}

serve({ run, paced });
ready();
