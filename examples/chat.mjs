#!/usr/bin/env node
// A terminal chat client for imkit-server, speaking the IMKIT socket protocol (conf + auth2, then
// "chat message"). Run it in two terminals with two users' tokens and type.
//
//   node examples/chat.mjs --url http://localhost:3000 --client-key "$CLIENT_KEY" --token "$TOKEN" --room demo
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';

const { values } = parseArgs({
  options: { url: { type: 'string', default: 'http://localhost:3000' }, 'client-key': { type: 'string' }, token: { type: 'string' }, room: { type: 'string' } },
});
if (!values['client-key'] || !values.token || !values.room) {
  console.error('usage: node examples/chat.mjs --url URL --client-key KEY --token TOKEN --room ROOM');
  process.exit(2);
}
const decode = (s) => JSON.parse(Buffer.from(s, 'base64').toString('utf8'));
const socket = io(values.url, { transports: ['websocket'] });
let me = '';

socket.on('connect', () => {
  socket.emit('conf', { encoding: 'base64' }, () => {
    socket.emit('auth2', values.token, { CLIENT_KEY: values['client-key'], Authorization: values.token }, (ack) => {
      const res = decode(ack);
      if (res.RC !== 0) {
        console.error(`auth failed: ${res.RM}`);
        process.exit(1);
      }
      me = res.result.client;
      console.log(`* connected as ${me} to room ${values.room}; type a line and press enter`);
    });
  });
});
socket.on('chat message', (payload) => {
  const m = decode(payload);
  if (m.room !== values.room || m.sender?._id === me) return;
  console.log(`${m.sender?.nickname ?? m.sender?._id ?? 'system'}: ${typeof m.message === 'string' ? m.message : JSON.stringify(m.message)}`);
});
socket.on('typing', (payload) => {
  const t = decode(payload);
  if (t.room === values.room) process.stderr.write(`* ${t.senderInfo?.nickname ?? t.sender} is typing\n`);
});
socket.on('disconnect', (reason) => console.error(`* disconnected (${reason}); reconnecting`));

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  socket.emit('chat message', { room: values.room, messageType: 'text', message: line }, (ack) => {
    if (ack.RC !== 0) console.error(`* not sent: ${ack.RM}`);
  });
});
rl.on('close', () => setTimeout(() => process.exit(0), 200));
