// Setting up users and rooms over the REST API, as the customer's backend would (API key).
import http from 'node:http';

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

export function request(base, method, path, { headers = {}, body, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      `${base}${path}`,
      { method, agent, headers: { ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}), ...headers } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let parsed;
          try {
            parsed = JSON.parse(raw);
          } catch {}
          resolve({ status: res.statusCode, body: parsed, raw });
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

async function ok(p, what) {
  const res = await p;
  if (res.status !== 200) throw new Error(`${what}: ${res.status} ${res.raw.slice(0, 300)}`);
  return res.body;
}

/** Creates users with issued tokens; returns [{user, token}] in the order of `ids`. */
export async function createUsers(base, apiKey, ids, concurrency = 16) {
  const out = new Array(ids.length);
  let i = 0;
  const lane = async () => {
    while (i < ids.length) {
      const k = i++;
      const body = await ok(
        request(base, 'POST', '/admin/clients', { headers: { 'IM-API-KEY': apiKey }, body: { _id: ids[k], nickname: ids[k], issueAccessToken: true } }),
        `create user ${ids[k]}`,
      );
      out[k] = { user: ids[k], token: body.result.token };
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, lane));
  return out;
}

export async function createRooms(base, apiKey, rooms, concurrency = 8) {
  let i = 0;
  const lane = async () => {
    while (i < rooms.length) {
      const r = rooms[i++];
      await ok(
        request(base, 'POST', '/rooms', { headers: { 'IM-API-KEY': apiKey }, body: { _id: r.id, name: r.id, roomType: 'group', members: r.members } }),
        `create room ${r.id}`,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, rooms.length) }, lane));
}

export async function sendRest(base, clientKey, token, room, body) {
  return ok(request(base, 'POST', `/rooms/${encodeURIComponent(room)}/message`, { headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token }, body }), `send to ${room}`);
}

export function closeAgent() {
  agent.destroy();
}
