// A webhook receiver that checks imkit-server's signatures (docs/webhooks.md), with nothing but Node itself.
//   WEBHOOK_SECRET=whsec_... node examples/webhook-receiver.mjs [--port 8787]
// It prints each verified event, answers 401 to a request whose signature does not match, and as a room
// webhook answers "ping" with "pong" from the bot "robot".
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

const secret = Buffer.from(process.env.WEBHOOK_SECRET.replace(/^whsec_/, ''), 'base64');
const port = Number(process.argv[process.argv.indexOf('--port') + 1] || 8787);

function verified(req, body) {
  const id = req.headers['webhook-id'];
  const ts = Number(req.headers['webhook-timestamp']);
  if (!id || Math.abs(Date.now() / 1000 - ts) > 300) return false; // stale or replayed
  const mine = Buffer.from('v1,' + createHmac('sha256', secret).update(`${id}.${ts}.${body}`).digest('base64'));
  return String(req.headers['webhook-signature']).split(' ').some((s) => s.length === mine.length && timingSafeEqual(Buffer.from(s), mine));
}

const seen = new Set(); // delivery is at least once: drop a webhook-id seen before
http
  .createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (!verified(req, body)) return res.writeHead(401).end();
      const event = JSON.parse(body);
      if (!seen.has(req.headers['webhook-id'])) console.log('event', event.type ?? event.event, JSON.stringify(event.data));
      seen.add(req.headers['webhook-id']);
      const reply = event.event === 'MESSAGE' && event.data.message === 'ping' ? { senderID: 'robot', data: { message: 'pong', messageType: 'text' } } : {};
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
    });
  })
  .listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${port}`));
