import type { Kysely } from 'kysely';
import { AppsService } from './apps/apps-service.js';
import { BatchService } from './chat/batch-service.js';
import { GroupsService } from './chat/groups-service.js';
import { type ChatContext, createChatContext, type PresenceSource } from './chat/chat-context.js';
import { AppConfigService } from './chat/config-service.js';
import { MessagesService } from './chat/messages-service.js';
import { HiddenMessagesService } from './chat/hidden-messages-service.js';
import { ModerationService } from './chat/moderation-service.js';
import { PrefsService } from './chat/prefs-service.js';
import { ReactionsService } from './chat/reactions-service.js';
import { RoomsService } from './chat/rooms-service.js';
import { SearchService } from './chat/search-service.js';
import { UsersService } from './chat/users-service.js';
import type { Config } from './config.js';
import type { EventBus } from './events/bus.js';
import type { Clock } from './lib/clock.js';
import type { PlannedStatement } from './store/append-repo.js';
import type { Dialect } from './store/database.js';
import type { Database } from './store/schema.js';
import { WebhooksService } from './webhooks/webhooks-service.js';
import { PushService } from './push/push-service.js';
import { createPushProviders, type ProviderName, type PushProvider } from './push/providers.js';
import { WebhooksRepo } from './store/webhooks-repo.js';
import { newWebhookSecret, liveSecrets } from './webhooks/signing.js';
import { FilesService, type FileSettings } from './files/files-service.js';
import { createStorage } from './files/storage.js';
import { OperatorsService } from './operators/operators-service.js';
import type { RateLimitStore } from './auth/rate-limit.js';

/** Every service, built once per server from its store and clock; transports receive this object. */
export interface Services {
  apps: AppsService;
  users: UsersService;
  rooms: RoomsService;
  messages: MessagesService;
  batch: BatchService;
  groups: GroupsService;
  prefs: PrefsService;
  search: SearchService;
  reactions: ReactionsService;
  hiddenMessages: HiddenMessagesService;
  config: AppConfigService;
  moderation: ModerationService;
  webhooks: WebhooksService;
  push: PushService;
  /** The push providers (FCM, APNs, Web Push, the custom hook), shared by the routes (credential checks) and the sender. */
  pushProviders: Record<ProviderName, PushProvider>;
  /** Uploaded files (docs/files.md); `files.storage.close()` is the server's to call. */
  files: FilesService;
  /** Dashboard operators and their sessions (docs/dashboard.md). */
  operators: OperatorsService;
  bus: EventBus;
  /** The context the chat services share (the batch worker runs on it). */
  chat: ChatContext;
  /** Replaced by the realtime layer with its view of who is connected. */
  presence: PresenceSource;
}

export function createServices(
  db: Kysely<Database>,
  dialect: Dialect,
  clock: Clock,
  bus: EventBus,
  config: Pick<Config, 'tokenTtlMs' | 'maxMessageBytes' | 'maxRoomMembers' | 'maxQueuedMessages' | 'webhookAllowPrivateNetworks' | 'webhookTimeoutMs' | 'pushFcmBaseUrl' | 'pushFcmTokenUrl' | 'pushApnsBaseUrl' | 'pushApnsCaFile' | 'operatorSessionTtlMs'> & FileSettings & Parameters<typeof createStorage>[0],
  runBatch: (statements: PlannedStatement[]) => Promise<void>,
  /** The rate-limit counters of the server (login limits of the operators). */
  rates?: RateLimitStore,
): Services {
  const presence: PresenceSource = { online: () => false };
  const chat = createChatContext(db, dialect, clock, bus, config, presence, runBatch);
  const rooms = new RoomsService(chat);
  const appConfig = new AppConfigService(chat);
  const messages = new MessagesService(chat, rooms, appConfig);
  const prefs = new PrefsService(chat, rooms);
  // The custom hook signs with the application's webhook secret (the one room webhooks given as a URL use).
  const hookSecrets = async (appId: string) => {
    const row = await new WebhooksRepo(db).ensureAppSecret({ app_id: appId, secret: newWebhookSecret(), previous_secret: null, previous_expires_at: null, created_at: clock.now() });
    return liveSecrets(row, clock.now());
  };
  const pushProviders = createPushProviders(config, clock, hookSecrets);
  const files = new FilesService(chat, rooms, appConfig, createStorage(config), config);
  return {
    apps: new AppsService(db, clock, bus),
    users: new UsersService(db, dialect, clock, config.tokenTtlMs, bus, chat.outbox),
    rooms,
    messages,
    batch: new BatchService(chat, messages),
    groups: new GroupsService(chat),
    prefs,
    search: new SearchService(chat, rooms),
    files,
    reactions: new ReactionsService(chat, rooms),
    hiddenMessages: new HiddenMessagesService(chat, rooms),
    config: appConfig,
    moderation: new ModerationService(chat, rooms, prefs),
    webhooks: new WebhooksService(db, clock, chat.outbox, { allowPrivate: config.webhookAllowPrivateNetworks }),
    push: new PushService(db, clock, chat.outbox, () => pushProviders, { allowPrivate: config.webhookAllowPrivateNetworks }),
    pushProviders,
    operators: new OperatorsService(db, clock, config.operatorSessionTtlMs, rates),
    bus,
    presence,
    chat,
  };
}
