import type { Kysely } from 'kysely';
import type { Config } from '../config.js';
import type { DomainEvent, EventBus } from '../events/bus.js';
import type { Clock } from '../lib/clock.js';
import type { Dialect } from '../store/database.js';
import type { PlannedStatement } from '../store/append-repo.js';
import type { Database } from '../store/schema.js';
import { MessageWriter } from './message-writer.js';
import { ChatRenderer } from './render.js';
import { RoomCache } from './room-cache.js';
import { UserCache } from './user-cache.js';
import { Outbox } from '../webhooks/outbox.js';

/** What every chat service is built from. */
export interface ChatContext {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  bus: EventBus;
  limits: Pick<Config, 'maxMessageBytes' | 'maxRoomMembers' | 'maxQueuedMessages' | 'webhookAllowPrivateNetworks'>;
  render: ChatRenderer;
  presence: PresenceSource;
  /** Rooms' settings, members and bans as the send and delivery paths need them (see room-cache.ts). */
  roomCache: RoomCache;
  /** Profiles new messages are rendered with (see user-cache.ts). */
  userCache: UserCache;
  /** Users' new messages, written in batches (see message-writer.ts). */
  writer: MessageWriter;
  /** The transactional outbox of webhook events (webhooks/outbox.ts). */
  outbox: Outbox;
}

/**
 * Runs `fn` in a transaction and, before it commits, adds the outbox rows of the domain events `fn` put in
 * `events` (those someone subscribes to): a change and the webhook events it causes commit together. The caller
 * emits `events` on the bus after this resolves.
 */
export function transact<T>(ctx: Pick<ChatContext, 'db' | 'outbox' | 'clock'>, events: DomainEvent[], fn: (trx: Kysely<Database>) => Promise<T>): Promise<T> {
  return ctx.db.transaction().execute(async (trx) => {
    const result = await fn(trx);
    await ctx.outbox.recordEvents(trx, events, ctx.clock.now());
    return result;
  });
}

/** Who has a live authenticated socket; the realtime layer fills it in once it runs (nobody is online before). */
export interface PresenceSource {
  online(appId: string, userId: string): boolean;
}

export function createChatContext(
  db: Kysely<Database>,
  dialect: Dialect,
  clock: Clock,
  bus: EventBus,
  limits: ChatContext['limits'],
  presence: PresenceSource,
  runBatch: (statements: PlannedStatement[]) => Promise<void>,
): ChatContext {
  const userCache = new UserCache(db, bus, clock);
  const outbox = new Outbox(db);
  return {
    db, dialect, clock, bus, limits, presence, outbox,
    render: new ChatRenderer(db, presence, userCache),
    roomCache: new RoomCache(db, bus, clock),
    userCache,
    writer: new MessageWriter(db, dialect, runBatch, limits.maxQueuedMessages, outbox),
  };
}

/** ISO-8601 or epoch milliseconds (as a number or digit string); undefined when absent, NaN when unparsable. */
export function parseTime(value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
  if (typeof value === 'string') return Date.parse(value);
  return Number.NaN;
}
