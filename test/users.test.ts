import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, DIALECTS, startTestServer, type TestServer, userHeaders } from './helpers.js';

describe.each(DIALECTS)('users and tokens (%s)', (dialect) => {
  let t: TestServer;
  let admin: Record<string, string>;
  beforeAll(async () => {
    t = await startTestServer(dialect);
    admin = { 'IM-API-KEY': t.apiKey };
  });
  afterAll(async () => t?.close());

  it('U1 issues a JWT token carrying the user id, with the Client object', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/admin/clients',
      headers: { ...admin, 'content-type': 'application/json; charset=utf-8' },
      body: { _id: 'user001', nickname: 'Alice', avatarUrl: 'https://x/a.png', email: 'a@example.com', issueAccessToken: true },
    });
    expect(res.status).toBe(200);
    expect(res.body.RC).toBe(0);
    expect(res.body.RM).toBe('OK');
    const u = res.body.result;
    expect(u).toMatchObject({ _id: 'user001', id: 'user001', appID: 'default', nickname: 'Alice', avatarUrl: 'https://x/a.png', email: 'a@example.com', isRobot: false, lastLoginTimeMS: 0 });
    expect(u.createdAt).toBe(new Date(t.clock.now()).toISOString());
    expect(u.createdAtMS).toBe(t.clock.now());
    const claims = JSON.parse(Buffer.from(u.token.split('.')[1], 'base64url').toString());
    expect(claims).toMatchObject({ id: 'user001', _id: 'user001' });
    expect(claims.exp - claims.iat).toBe(7 * 24 * 3600);
    expect(Date.parse(u.expirationDate)).toBe(t.clock.now() + 7 * 24 * 3600 * 1000);
    const me = await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, u.token) });
    expect(me.body.result).toMatchObject({ _id: 'user001', email: 'a@example.com', notificationEnabled: true });
  });

  it('U1 is an upsert: omitted fields are kept, custom fields merged', async () => {
    await createUser(t, 'user002', t.apiKey, { nickname: 'Bob', city: 'Taipei' });
    t.clock.advance(1000);
    const res = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'user002', avatarUrl: 'https://x/b.png', age: 30 } });
    expect(res.body.result).toMatchObject({ nickname: 'Bob', avatarUrl: 'https://x/b.png', city: 'Taipei', age: 30 });
    expect(res.body.result.updatedAtMS).toBe(res.body.result.createdAtMS + 1000);
    expect(res.body.result.token).toBeUndefined();
  });

  it('U1 binds a custom token; a token of another user is 409 TOKEN_CONFLICT', async () => {
    const res = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'user003', token: 'custom-token-003', expirationDate: '2030-01-01T00:00:00Z' } });
    expect(res.body.result).toMatchObject({ token: 'custom-token-003', expirationDate: '2030-01-01T00:00:00.000Z' });
    const conflict = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'user004', token: 'custom-token-003' } });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error).toBe('TOKEN_CONFLICT');
    const missingUser = await t.request({ method: 'GET', url: '/admin/clients?q=' + encodeURIComponent('{"_id":"user004"}'), headers: admin });
    expect(missingUser.body.result.totalCount).toBe(0); // the failed call stored nothing
  });

  it('U1 validation: each bad field is named', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'Missing required field: _id'],
      [{ _id: 12 }, 'Invalid field _id: must be string'],
      [{ _id: '' }, 'Invalid field _id'],
      [{ _id: 'x', nickname: { a: 1 } }, 'Invalid field nickname'],
      [{ _id: 'x', issueAccessToken: 'yes' }, 'Invalid field issueAccessToken'],
      [{ _id: 'x', token: 'abc-token-0000001', expirationDate: 'tomorrow' }, 'Invalid expirationDate format'],
      [{ _id: 'x', token: 'abc-token-0000001', expirationDate: '2001-01-01T00:00:00Z' }, 'expirationDate must be in the future'],
      [[1, 2], 'must be object'],
    ];
    for (const [body, message] of cases) {
      const res = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('INVALID_REQUEST');
      expect(res.body.message).toContain(message);
      expect(res.body.RM).toBe(res.body.message);
    }
  });

  it('malformed JSON, wrong content type and oversized bodies: 400/415/413, never 500', async () => {
    const bad = await t.request({ method: 'POST', url: '/admin/clients', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"_id": "x",' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('INVALID_JSON');
    const empty = await t.request({ method: 'POST', url: '/admin/clients', headers: { ...admin, 'content-type': 'application/json' }, payload: '' });
    expect(empty.status).toBe(400);
    const text = await t.request({ method: 'POST', url: '/admin/clients', headers: { ...admin, 'content-type': 'text/plain' }, payload: '_id=x' });
    expect(text.status).toBe(415);
    expect(text.body.error).toBe('UNSUPPORTED_MEDIA_TYPE');
    const huge = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'x', blob: 'x'.repeat(2 * 1024 * 1024) } });
    expect(huge.status).toBe(413);
    expect(huge.body.error).toBe('PAYLOAD_TOO_LARGE');
    const bigCustom = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'x', blob: 'x'.repeat(20_000) } });
    expect(bigCustom.status).toBe(400);
    const proto = await t.request({ method: 'POST', url: '/admin/clients', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"_id":"p","__proto__":{"isRobot":true}}' });
    expect(proto.status).toBe(400);
    expect(proto.body.error).toBe('INVALID_JSON');
    const ctor = await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'p', constructor: { prototype: { x: 1 } }, prototype: 1 } });
    expect([ctor.status, ctor.body.error]).toEqual([400, 'INVALID_JSON']);
    const stored = await t.request({ method: 'GET', url: '/admin/clients?q=' + encodeURIComponent('{"_id":"p"}'), headers: admin });
    expect(stored.body.result.totalCount).toBe(0);
  });

  it('U2 upserts a batch and never issues tokens', async () => {
    const res = await t.request({ method: 'POST', url: '/admin/clients/list', headers: admin, body: { data: [{ _id: 'b1', nickname: 'B1' }, { _id: 'b2' }, { _id: 'user002', nickname: 'Bobby' }] } });
    expect(res.body).toEqual({ RC: 0, RM: 'OK', result: { count: 3 } });
    const bob = await t.request({ method: 'GET', url: '/admin/clients?q=' + encodeURIComponent('{"_id":"user002"}'), headers: admin });
    expect(bob.body.result.data[0]).toMatchObject({ nickname: 'Bobby', city: 'Taipei' });
    const bad = await t.request({ method: 'POST', url: '/admin/clients/list', headers: admin, body: { data: [{ _id: 'ok' }, { nickname: 'no id' }] } });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toContain('data.1._id');
    const notSaved = await t.request({ method: 'GET', url: '/admin/clients?q=' + encodeURIComponent('{"_id":"ok"}'), headers: admin });
    expect(notSaved.body.result.totalCount).toBe(0);
  });

  it('U3 pages with limit/skip, filters with q, and refuses limit > 100', async () => {
    const all = await t.request({ method: 'GET', url: '/admin/clients?limit=100', headers: admin });
    const total = all.body.result.totalCount;
    expect(total).toBe(all.body.result.data.length);
    const page = await t.request({ method: 'GET', url: '/admin/clients?limit=2&skip=1', headers: admin });
    expect(page.body.result.totalCount).toBe(total);
    expect(page.body.result.data.map((u: any) => u._id)).toEqual(all.body.result.data.slice(1, 3).map((u: any) => u._id));
    for (const u of all.body.result.data) expect(u.token).toBeUndefined();

    const q = await t.request({ method: 'GET', url: '/admin/clients?q=' + encodeURIComponent('{"nickname":{"$regex":"^b","$options":"i"}}'), headers: admin });
    expect(q.body.result.data.map((u: any) => u._id).sort()).toEqual(['b1', 'user002']);

    const tooMany = await t.request({ method: 'GET', url: '/admin/clients?limit=101', headers: admin });
    expect(tooMany.status).toBe(413);
    expect(tooMany.body.error).toBe('RESULT_TOO_LARGE');
    const badQ = await t.request({ method: 'GET', url: '/admin/clients?q=%7Bnope', headers: admin });
    expect(badQ.status).toBe(400);
    expect(badQ.body.error).toBe('INVALID_QUERY');
    const badLimit = await t.request({ method: 'GET', url: '/admin/clients?limit=abc', headers: admin });
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.message).toContain('limit');
  });

  it('U4 GET /me records the login; POST /me updates the own profile only', async () => {
    const token = await createUser(t, 'user005');
    t.clock.advance(5000);
    const me = await t.request({ method: 'GET', url: '/me', headers: { ...userHeaders(t.clientKey, token), 'user-agent': 'TestAgent/1.0' } });
    expect(me.body.result).toMatchObject({ _id: 'user005', lastLoginTimeMS: t.clock.now(), userAgent: 'TestAgent/1.0', address: { address: '127.0.0.1', family: 'IPv4' } });
    expect(me.body.result.lastLoginTime).toBe(new Date(t.clock.now()).toISOString());
    const upd = await t.request({ method: 'POST', url: '/me', headers: userHeaders(t.clientKey, token), body: { nickname: 'Five', isRobot: true, mood: 'happy' } });
    expect(upd.status).toBe(200);
    expect(upd.body.result).toMatchObject({ _id: 'user005', nickname: 'Five', isRobot: false, mood: 'happy' });
    const bad = await t.request({ method: 'POST', url: '/me', headers: userHeaders(t.clientKey, token), body: { nickname: 5 } });
    expect(bad.status).toBe(400);
  });

  it('U5 replaces the custom token; errors for unknown users and conflicts', async () => {
    await t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'user006', token: 'six-old-token-0001' } });
    const res = await t.request({ method: 'PUT', url: '/admin/clients/user006/token', headers: admin, body: { token: 'six-new-token-0001', expirationDate: '2031-01-01T00:00:00Z' } });
    expect(res.status).toBe(200);
    expect(res.body.result).toMatchObject({ _id: 'user006', issueAccessToken: false, token: 'six-new-token-0001', expirationDate: '2031-01-01T00:00:00.000Z' });
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, 'six-old-token-0001') })).status).toBe(401);
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, 'six-new-token-0001') })).status).toBe(200);

    const unknown = await t.request({ method: 'PUT', url: '/admin/clients/nobody/token', headers: admin, body: { token: 'zz-token-00000001', expirationDate: '2031-01-01T00:00:00Z' } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe('CLIENT_NOT_FOUND');
    const conflict = await t.request({ method: 'PUT', url: '/admin/clients/user006/token', headers: admin, body: { token: 'custom-token-003', expirationDate: '2031-01-01T00:00:00Z' } });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error).toBe('TOKEN_CONFLICT');
    const missing = await t.request({ method: 'PUT', url: '/admin/clients/user006/token', headers: admin, body: { token: 'abc-token-0000001' } });
    expect(missing.status).toBe(400);
    expect(missing.body.message).toBe('Missing required field: expirationDate');
  });

  it('U6 errors: unknown user, unknown token', async () => {
    const noUser = await t.request({ method: 'DELETE', url: '/admin/clients/nobody/token', headers: admin });
    expect(noUser.status).toBe(404);
    expect(noUser.body.error).toBe('CLIENT_NOT_FOUND');
    const noToken = await t.request({ method: 'DELETE', url: '/admin/clients/user006/token', headers: admin, body: { token: 'never-issued' } });
    expect(noToken.status).toBe(404);
    expect(noToken.body.error).toBe('TOKEN_NOT_FOUND');
  });

  it('DELETE /admin/clients/:id removes the user and their tokens', async () => {
    const token = await createUser(t, 'user007');
    const del = await t.request({ method: 'DELETE', url: '/admin/clients/user007', headers: admin });
    expect(del.body.result).toEqual({ _id: 'user007', deleted: true });
    expect((await t.request({ method: 'GET', url: '/me', headers: userHeaders(t.clientKey, token) })).status).toBe(401);
    expect((await t.request({ method: 'DELETE', url: '/admin/clients/user007', headers: admin })).status).toBe(404);
  });

  it('concurrent first writes of one user do not fail', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => t.request({ method: 'POST', url: '/admin/clients', headers: admin, body: { _id: 'racer', nickname: `r${i}` } })),
    );
    for (const r of results) expect(r.status).toBe(200);
    const q = await t.request({ method: 'GET', url: '/admin/clients?q=' + encodeURIComponent('{"_id":"racer"}'), headers: admin });
    expect(q.body.result.totalCount).toBe(1);
  });
});
