import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POSTGRES_URL, startTestServer, type TestServer } from './helpers.js';

// Postgres only: SQLite has no statement timeout (its regular expressions run in RE2, see user-query.test.ts).
// Only defined when Postgres runs (a skipped test would read as a gap in the report).
if (POSTGRES_URL) describe('statement timeout (postgres)', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('postgres', { statementTimeoutMs: 300 });
    // 40,000 users with 1,000-character nicknames: the pattern below takes Postgres many seconds over them (linear,
    // but with a large automaton), far past the 300 ms limit; an ordinary request takes a few milliseconds.
    const client = new pg.Client({ connectionString: POSTGRES_URL, options: `-c search_path=${t.config.databaseSchema}` });
    await client.connect();
    try {
      await client.query(
        `insert into users (app_id, id, nickname, avatar_url, description, is_robot, extra, address, user_agent, last_login_at, created_at, updated_at)
         select $1, 'bulk' || g, repeat('ab', 500), null, null, 0, '{}', null, null, null, 0, 0 from generate_series(1, 40000) g`,
        [t.appId],
      );
    } finally {
      await client.end();
    }
  }, 60_000);
  afterAll(async () => {
    await t.close();
  });

  const list = (q?: unknown) =>
    t.request({
      method: 'GET',
      url: `/admin/clients?limit=1${q === undefined ? '' : `&q=${encodeURIComponent(JSON.stringify(q))}`}`,
      headers: { 'IM-API-KEY': t.apiKey },
    });

  it('answers a request whose query runs past it 503 in the envelope, and goes on answering', async () => {
    const slow = { nickname: { $regex: '[ab]{255}c', $options: 'i' } };
    const [cancelled, meanwhile] = await Promise.all([list(slow), list({ _id: 'bulk7' })]);
    expect(cancelled.status).toBe(503);
    expect(cancelled.body).toMatchObject({ RC: 503, error: 'SERVICE_UNAVAILABLE' });
    expect(cancelled.body.message).toContain('statement timeout');
    expect(meanwhile.status).toBe(200);
    expect(meanwhile.body.result.data.map((u: { _id: string }) => u._id)).toEqual(['bulk7']);
    const after = await list({ _id: { $in: ['bulk1', 'bulk2'] } });
    expect(after.status).toBe(200);
    expect(after.body.result.totalCount).toBe(2);
    expect(t.logs.some((line) => line.includes('statement timeout'))).toBe(true);
    expect(t.logs.some((line) => line.includes('"level":50'))).toBe(false);
  });
});
