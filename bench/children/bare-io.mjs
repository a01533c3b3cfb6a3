// Baseline: a bare Socket.IO 4 server. No auth, no storage: `join` puts a socket in rooms, `chat message` is
// broadcast to its room (sender included, as imkit-server does) as a message object shaped like imkit-server's.
import http from 'node:http';
import { Server } from 'socket.io';
import { serve, ready } from '../lib/child.mjs';

const template = JSON.parse(process.env.BENCH_TEMPLATE || '{}');
const encoding = process.env.BENCH_ENCODING === 'base64' ? 'base64' : 'plain';
const httpServer = http.createServer();
const io = new Server(httpServer, { serveClient: false, pingInterval: 10_000, pingTimeout: 10_000 });
let seq = 0;

io.on('connection', (socket) => {
  socket.on('join', (rooms, ack) => {
    if (Array.isArray(rooms) && rooms.length) socket.join(rooms.map(String));
    if (typeof ack === 'function') ack({ RC: 0 });
  });
  socket.on('chat message', (msg, ack) => {
    if (!msg || typeof msg.room !== 'string') return;
    const t = Date.now();
    const id = (t.toString(16).padStart(12, '0') + (seq++).toString(16).padStart(12, '0')).slice(-24);
    const out = { ...template, ...msg, _id: id, id, messageTimeMS: t, createdAtMS: t, updatedAtMS: t };
    io.to(msg.room).emit('chat message', encoding === 'base64' ? Buffer.from(JSON.stringify(out)).toString('base64') : out);
    if (typeof ack === 'function') ack({ RC: 0, RM: 'OK', result: out });
  });
});

httpServer.listen(0, '127.0.0.1', () => {
  serve({ gc: () => (globalThis.gc?.(), process.memoryUsage()) });
  ready({ url: `http://127.0.0.1:${httpServer.address().port}` });
});
// A clean exit on SIGTERM, so that a CPU profile (bench --profile) is written.
process.on('SIGTERM', () => io.close(() => process.exit(0)));
