// Baseline: a bare Fastify 5 route answering POST /rooms/:id/message with the same JSON imkit-server returns
// (the envelope and a message shaped like its), parsing the body, with no auth and no storage.
import Fastify from 'fastify';
import { serve, ready } from '../lib/child.mjs';

const template = JSON.parse(process.env.BENCH_TEMPLATE || '{}');
const app = Fastify({ logger: false });
let seq = 0;
app.post('/rooms/:id/message', async (req) => {
  const t = Date.now();
  const id = (t.toString(16).padStart(12, '0') + (seq++).toString(16).padStart(12, '0')).slice(-24);
  return { RC: 0, RM: 'OK', result: { ...template, ...req.body, room: req.params.id, _id: id, id, messageTimeMS: t, createdAtMS: t, updatedAtMS: t } };
});
app.get('/healthz', async () => ({ RC: 0, RM: 'OK', result: { status: 'ok' } }));
const url = await app.listen({ port: 0, host: '127.0.0.1' });
serve({});
ready({ url });
