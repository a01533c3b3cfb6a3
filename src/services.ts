import type { Kysely } from 'kysely';
import { AppsService } from './apps/apps-service.js';
import { UsersService } from './chat/users-service.js';
import type { Config } from './config.js';
import type { Clock } from './lib/clock.js';
import type { Dialect } from './store/database.js';
import type { Database } from './store/schema.js';

/** Every service, built once per server from its store and clock; transports receive this object. */
export interface Services {
  apps: AppsService;
  users: UsersService;
}

export function createServices(db: Kysely<Database>, dialect: Dialect, clock: Clock, config: Pick<Config, 'tokenTtlMs'>): Services {
  return {
    apps: new AppsService(db, clock),
    users: new UsersService(db, dialect, clock, config.tokenTtlMs),
  };
}
