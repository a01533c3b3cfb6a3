// Load generator: a share of the bench's Socket.IO clients (imkit-server or the bare baseline), counting the
// `chat message` events they receive and the send-to-receive latency, and sending at a paced rate.
import http from 'node:http';
import { io } from 'socket.io-client';
import { serve, ready } from '../lib/child.mjs';
import { Hist } from '../lib/hist.mjs';
import { LightSocket, chatArgument, numberAfter } from '../lib/light-client.mjs';

const now = () => performance.timeOrigin + performance.now();

/** @type {Array<{socket: import('socket.io-client').Socket | LightSocket, user: string, token?: string, room?: string}>} */
let clients = [];
let kind = 'imkit';
let encoding = 'plain';
/** 'light' (bench/lib/light-client.mjs, the default) or 'socket.io' (socket.io-client). */
let clientKind = 'light';
let step = -1;
let windowEnd = 0;
let stepDelivered = 0;
let inWindow = 0;
let otherDelivered = 0;
let undecodable = 0;
let mismatched = 0;
const hist = new Hist();

function onMessage(arg) {
  const t = now();
  let msg = arg;
  if (typeof arg === 'string') {
    try {
      msg = JSON.parse(Buffer.from(arg, 'base64').toString('utf8'));
    } catch {
      undecodable++;
      return;
    }
  }
  if (!msg || msg.benchStep !== step) {
    otherDelivered++;
    return;
  }
  count(t, msg.sentAt);
}

function count(t, sentAt) {
  stepDelivered++;
  if (t <= windowEnd) inWindow++;
  hist.add(t - sentAt);
}

/**
 * A `chat message` frame received by a light client: the two numbers are read from the bytes. One frame in 64 is
 * also parsed in full and checked against them (a mismatch is counted and fails the run).
 */
function onChatFrame(frame) {
  const t = now();
  const body = chatArgument(frame, encoding === 'base64');
  const benchStep = numberAfter(body, '"benchStep":');
  const sentAt = numberAfter(body, '"sentAt":');
  if (sentAt === undefined || benchStep === undefined) {
    undecodable++;
    return;
  }
  if ((stepDelivered + otherDelivered) % 64 === 0) {
    try {
      const [, arg] = JSON.parse(frame.toString('utf8').slice(2));
      const msg = typeof arg === 'string' ? JSON.parse(Buffer.from(arg, 'base64').toString('utf8')) : arg;
      if (msg.sentAt !== sentAt || msg.benchStep !== benchStep || typeof msg.message !== 'string') mismatched++;
    } catch {
      mismatched++;
    }
  }
  if (benchStep !== step) {
    otherDelivered++;
    return;
  }
  count(t, sentAt);
}

/** Joins (bare) or authenticates as the IMKIT SDKs do (conf first, then auth2 with the client key and the token). */
function handshake(socket, c, clientKey, done) {
  if (kind === 'bare') {
    socket.emit('join', c.room ? [c.room] : [], () => done());
    return;
  }
  socket.emit('conf', { encoding: encoding === 'base64' ? 'base64' : 'json' }, () => {
    socket.emit('auth2', c.token, { CLIENT_KEY: clientKey, Authorization: c.token }, (ack) => {
      const res = typeof ack === 'string' ? JSON.parse(Buffer.from(ack, 'base64').toString('utf8')) : ack;
      done(res?.RC === 0 ? undefined : `auth2: ${JSON.stringify(res).slice(0, 200)}`);
    });
  });
}

async function connectLight(url, c, clientKey) {
  let socket;
  try {
    socket = await LightSocket.connect(url, { timeoutMs: 30_000, onChat: onChatFrame });
  } catch (err) {
    return { err: `connect_error: ${err.message}` };
  }
  const entry = { socket, user: c.user, token: c.token, room: c.room };
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish('timeout'), 30_000);
    const finish = (err) => {
      clearTimeout(timer);
      if (err) socket.disconnect();
      resolve(err ? { err } : { entry });
    };
    handshake(socket, c, clientKey, finish);
  });
}

function connectOne(url, c, clientKey) {
  if (clientKind === 'light') return connectLight(url, c, clientKey);
  return new Promise((resolve) => {
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20_000 });
    const entry = { socket, user: c.user, token: c.token, room: c.room };
    let settled = false;
    const done = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) socket.disconnect();
      resolve(err ? { err } : { entry });
    };
    const timer = setTimeout(() => done('timeout'), 30_000);
    socket.once('connect_error', (e) => done(`connect_error: ${e.message}`));
    socket.once('connect', () => {
      socket.on('chat message', onMessage);
      handshake(socket, c, clientKey, done);
    });
  });
}

async function connect({ url, kind: k, encoding: enc = 'plain', client = 'light', clientKey, list, concurrency = 100 }) {
  kind = k;
  encoding = enc;
  clientKind = client;
  const start = now();
  const errors = [];
  let i = 0;
  let failed = 0;
  // The sockets keep the list's order, whichever connects first: `send` names its senders by their index in the list
  // (the cluster scenario puts the senders on node 1; in completion order they were any sockets, on any node).
  const slots = new Array(list.length);
  const lane = async () => {
    while (i < list.length) {
      const at = i++;
      const c = list[at];
      // An entry may name its own server (the cluster scenario: one worker holds sockets on several nodes).
      const r = await connectOne(c.url ?? url, c, clientKey);
      if (r.entry) slots[at] = r.entry;
      else {
        failed++;
        if (errors.length < 5) errors.push(r.err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, lane));
  for (const entry of slots) if (entry) clients.push(entry);
  return { connected: clients.length, failed, ms: now() - start, errors };
}

function measureStart({ step: s, durationMs }) {
  step = s;
  stepDelivered = 0;
  inWindow = 0;
  otherDelivered = 0;
  hist.reset();
  windowEnd = now() + durationMs;
  return { ok: true };
}

function collect() {
  return { stepDelivered, inWindow, otherDelivered, undecodable, mismatched, hist: hist.toJSON(), sockets: clients.filter((c) => c.socket.connected).length };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function restSend(base, c, clientKey, body) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(
      `${base}/rooms/${encodeURIComponent(c.room)}/message`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), 'IM-CLIENT-KEY': restClientKey, 'IM-Authorization': c.token },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
        res.on('error', () => resolve(false));
      },
    );
    req.on('error', () => resolve(false));
    req.end(data);
  });
}
let restClientKey = '';

/**
 * Sends `rate` messages per second for `durationMs`, round-robin over the given senders (indices into this
 * worker's clients), over the socket (`chat message` with an ack) or over REST. At most `maxInFlight` sends
 * wait for their ack at once; a send that would exceed that is skipped and counted (the target is not met).
 */
async function send({ rate, durationMs, senders, via = 'socket', restBase, clientKey, maxInFlight = 1000, text = 'hello from the bench' }) {
  restClientKey = clientKey ?? '';
  const ackHist = new Hist();
  let sent = 0;
  let acked = 0;
  let ackErrors = 0;
  let skipped = 0;
  let inFlight = 0;
  let rr = 0;
  const firstError = [];
  const start = now();
  const end = start + durationMs;
  const sendOne = () => {
    const c = clients[senders[rr++ % senders.length]];
    const sentAt = now();
    const msg = { room: c.room, messageType: 'text', message: text, sentAt, benchStep: step };
    inFlight++;
    sent++;
    const finish = (ok, detail) => {
      inFlight--;
      if (ok) {
        acked++;
        ackHist.add(now() - sentAt);
      } else {
        ackErrors++;
        if (firstError.length < 3) firstError.push(detail);
      }
    };
    if (via === 'rest') {
      const { room, ...body } = msg;
      void restSend(restBase, c, clientKey, body).then((ok) => finish(ok, 'http error'));
    } else {
      c.socket.emit('chat message', msg, (ack) => finish(ack && ack.RC === 0, JSON.stringify(ack).slice(0, 200)));
    }
  };
  await new Promise((resolve) => {
    const tick = () => {
      const t = now();
      const due = Math.floor((Math.min(t, end) - start) * (rate / 1000));
      while (sent + skipped < due) {
        if (inFlight >= maxInFlight) skipped++;
        else sendOne();
      }
      if (t >= end) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const sendMs = now() - start;
  // Wait (bounded) for the acks still in flight.
  const ackDeadline = now() + 5000;
  while (inFlight > 0 && now() < ackDeadline) await new Promise((r) => setTimeout(r, 10));
  return { sent, acked, ackErrors, skipped, unacked: inFlight, sendMs, ackHist: ackHist.toJSON(), firstError };
}

async function close() {
  for (const c of clients) c.socket.disconnect();
  clients = [];
  agent.destroy();
  return { ok: true };
}

serve({ connect, measureStart, collect, send, close, count: () => ({ sockets: clients.filter((c) => c.socket.connected).length }) });
ready();
