import { createHash, timingSafeEqual } from 'node:crypto';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { Actor } from '../auth/guard.js';
import { AppError } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import { MonitoringRepo } from '../store/monitoring-repo.js';
import type { Database } from '../store/schema.js';
import type { ConnectionPeaks } from './connection-peaks.js';
import type { Metrics } from './metrics.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;

/** How a key is shown where IMKIT shows it in clear: its last 4 characters only (we keep digests, and a secret is shown once). */
export function maskKey(last4: string | undefined): string {
  return last4 === undefined ? '' : `****${last4}`;
}

/** GET /admin/stats and GET /admin/usage: read-only figures of one application. */
export class MonitoringService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly peaks: ConnectionPeaks,
    /** Logged-in sockets of the application on this node now. */
    private readonly liveSockets: (appId: string) => number,
    /** Set only when IMKIT_METRICS_TOKEN is (see Metrics). */
    private readonly metrics?: Metrics,
    private readonly metricsToken?: string,
  ) {}

  /**
   * `GET /metrics`: the operator's bearer token (IMKIT_METRICS_TOKEN), not an application's credential, so it is
   * checked here and not by the guard. 401 while the setting is unset, saying how to set it.
   */
  async metricsText(authorization: string | string[] | undefined): Promise<string> {
    if (!this.metrics || this.metricsToken === undefined) {
      throw new AppError('INVALID_TOKEN', 'Metrics are disabled on this server: set IMKIT_METRICS_TOKEN (or --metrics-token) to a random string of 16 or more characters, and send it as "Authorization: Bearer <token>"');
    }
    const presented = (Array.isArray(authorization) ? authorization[0] : authorization)?.replace(/^Bearer\s+/i, '').trim() ?? '';
    if (!sameSecret(presented, this.metricsToken)) throw new AppError('INVALID_TOKEN', 'The metrics token is missing or wrong: send "Authorization: Bearer <IMKIT_METRICS_TOKEN>"');
    return this.metrics.text();
  }

  /** IMKIT's statistics report over the last hour (docs/monitoring.md says what each figure counts). */
  async stats(actor: Actor): Promise<Record<string, unknown>> {
    const end = this.clock.now();
    const start = end - HOUR;
    const appId = actor.app.id;
    const repo = new MonitoringRepo(this.db);
    const [tails, users, rooms, messageCount] = await Promise.all([
      repo.keyTails(appId, actor.kind === 'admin' ? actor.apiKeyId : ''),
      repo.activeUsers(appId, start),
      repo.roomCounts(appId, start),
      repo.messagesSince(appId, start),
    ]);
    return {
      clientKey: maskKey(tails.clientKey),
      apiKey: maskKey(tails.apiKey),
      startTime: new Date(start).toISOString(),
      endTime: new Date(end).toISOString(),
      start: Math.floor(start / 1000),
      end: Math.floor(end / 1000),
      userList: users,
      roomCount: rooms.active,
      totalRoomCount: rooms.total,
      messageCount,
      peakConnectionCount: this.peaks.peakSince(appId, start, this.liveSockets(appId)),
      totalMem: os.totalmem(),
      freeMem: os.freemem(),
    };
  }

  /**
   * The application's API keys (last 4 characters, never the key) with their use: last time and address, requests
   * in the last full minute, and a per-minute series of the last hour (minutes without requests left out). What the
   * usage meter has not yet written (up to its interval) is not included.
   */
  async usage(actor: Actor): Promise<Record<string, unknown>> {
    const now = this.clock.now();
    const since = now - HOUR;
    const { keys, rows, last } = await new MonitoringRepo(this.db).usageOf(actor.app.id, since - (since % MINUTE));
    const lastFull = now - (now % MINUTE) - MINUTE;
    const data = keys.map((k) => {
      const series = rows.filter((r) => r.key_id === k.id);
      const latest = last.find((r) => r.key_id === k.id);
      return {
        // The last 4 characters tell few keys apart (the key format leaves one in sixteen pairs the same): the
        // fingerprint, as the key lists show it, names the key.
        fingerprint: k.fingerprint,
        last4: k.last4,
        createdAt: new Date(k.created_at).toISOString(),
        expiresAt: k.expires_at === null ? null : new Date(k.expires_at).toISOString(),
        revokedAt: k.revoked_at === null ? null : new Date(k.revoked_at).toISOString(),
        lastUsedAt: latest ? new Date(latest.last_used_at).toISOString() : null,
        lastAddress: latest?.last_address ?? null,
        requestsLastMinute: series.find((r) => r.minute === lastFull)?.requests ?? 0,
        requestsLastHour: series.reduce((n, r) => n + r.requests, 0),
        perMinute: series.map((r) => ({ minute: new Date(r.minute).toISOString(), requests: r.requests, refused: r.refused })),
      };
    });
    return { keys: data };
  }
}

/** Compares digests, so the time taken says nothing about the token, its length included. */
function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(expected).digest());
}
