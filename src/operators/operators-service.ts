import { Algorithm, hash, verify } from '@node-rs/argon2';
import type { Kysely } from 'kysely';
import type { RateLimitStore } from '../auth/rate-limit.js';
import { AppError, CredentialErrors, invalidRequest } from '../errors.js';
import { type Clock, iso } from '../lib/clock.js';
import { newObjectId } from '../lib/ids.js';
import { digest, randomHex } from '../lib/secrets.js';
import { isUniqueViolation } from '../store/database.js';
import { OperatorsRepo, type OperatorRow } from '../store/operators-repo.js';
import type { Database } from '../store/schema.js';

/** The operator a session belongs to, as the guard and the dashboard see it (never the hash). */
export interface OperatorIdentity {
  id: string;
  email: string;
}

export interface OperatorView extends OperatorIdentity {
  createdAt: string;
  lastLoginAt: string | null;
  lastLoginIp: string | null;
}

export interface NewSession {
  /** The cookie's value: shown to the browser once, stored as its digest. */
  token: string;
  csrfToken: string;
  expiresAt: number;
  /** The cookie's lifetime: relative, so a browser whose clock differs from the server's keeps it as long. */
  maxAgeSeconds: number;
  operator: OperatorIdentity;
}

/**
 * Login limits (docs/dashboard.md, Login limits). Failures are counted per (account, address) pair and per address;
 * a correct password is refused only while its own pair or its own address is over the limit, so someone guessing
 * from elsewhere never locks the real operator out.
 */
export const LOGIN_LIMITS = {
  perPair: 5,
  perAddress: 30,
  windowMs: 15 * 60_000,
} as const;

/** How long the setup link that `start` prints works (a new start prints a new one and voids the old). */
export const SETUP_TOKEN_TTL_MS = 60 * 60_000;

const EMAIL = /^[^\s@<>()[\]\\,;:"]{1,64}@[^\s@<>()[\]\\,;:"]{1,190}$/;
export const MIN_PASSWORD = 12;
const MAX_PASSWORD = 1024;

/** argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane), which are also the package's defaults. */
const ARGON2 = { algorithm: Algorithm.Argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/**
 * Dashboard operators (docs/dashboard.md): server-wide administrators, separate from every application's users.
 * Passwords are stored as argon2id hashes (@node-rs/argon2); sessions and the setup token as SHA-256 digests of
 * random values, so the database holds nothing that logs anyone in.
 */
export class OperatorsService {
  private readonly repo: OperatorsRepo;
  /** A hash to verify against when the email is unknown, so a wrong email costs as long as a wrong password. */
  private decoy: Promise<string> | undefined;

  constructor(
    db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly sessionTtlMs: number,
    private readonly rates?: RateLimitStore,
  ) {
    this.repo = new OperatorsRepo(db);
  }

  async count(): Promise<number> {
    return this.repo.count();
  }

  async list(): Promise<OperatorView[]> {
    return (await this.repo.list()).map(view);
  }

  async create(emailInput: string, password: string): Promise<OperatorView> {
    const email = checkEmail(emailInput);
    checkPassword(password);
    const row = await this.newRow(email, password);
    try {
      await this.repo.insert(row);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('OPERATOR_EXISTS', `An operator ${email} exists already`);
      throw err;
    }
    return view(row);
  }

  /** Sets a new password and ends every session of the operator. */
  async resetPassword(emailInput: string, password: string): Promise<OperatorView> {
    const email = checkEmail(emailInput);
    checkPassword(password);
    const op = await this.repo.byEmail(email);
    if (!op) throw new AppError('OPERATOR_NOT_FOUND', `No operator ${email}`);
    await this.repo.setPassword(op.id, await hash(password, ARGON2), this.clock.now());
    await this.repo.deleteSessionsOf(op.id);
    return view(op);
  }

  /**
   * IMKIT_ADMIN_EMAIL + IMKIT_ADMIN_PASSWORD, applied at every start: that operator exists and has that password
   * (a changed password ends its sessions; an unchanged one keeps them).
   */
  async ensureFromEnv(emailInput: string, password: string): Promise<{ created: boolean; passwordChanged: boolean }> {
    const email = checkEmail(emailInput);
    checkPassword(password, 'IMKIT_ADMIN_PASSWORD');
    const op = await this.repo.byEmail(email);
    if (!op) {
      await this.create(email, password);
      return { created: true, passwordChanged: false };
    }
    if (await verifyHash(op.password_hash, password)) return { created: false, passwordChanged: false };
    await this.resetPassword(email, password);
    return { created: false, passwordChanged: true };
  }

  /**
   * At start: while no operator exists, a new single-use setup token (its digest stored, valid SETUP_TOKEN_TTL_MS);
   * once one exists, none (and any left over is deleted).
   */
  async setupTokenIfNeeded(): Promise<string | undefined> {
    if ((await this.repo.count()) > 0) {
      await this.repo.deleteSetupTokens();
      return undefined;
    }
    const token = randomHex(24);
    const now = this.clock.now();
    await this.repo.addSetupToken(digest(token), now, now + SETUP_TOKEN_TTL_MS);
    return token;
  }

  /** The setup link's form: creates the first operator and logs it in; the token works once. */
  async completeSetup(token: string, emailInput: string, password: string, ip: string): Promise<NewSession> {
    const email = checkEmail(emailInput);
    checkPassword(password);
    const row = await this.newRow(email, password);
    const ok = await this.repo.consumeSetupToken(digest(token), this.clock.now(), row);
    if (!ok) throw new AppError('INVALID_SETUP_TOKEN', 'This setup link is invalid, expired or used; restart the server for a new one while no operator exists, or use imkit-server operator create');
    return this.openSession(row, ip);
  }

  /** Checks the login limits, then the password; a new session when it matches. */
  async login(emailInput: unknown, password: unknown, ip: string): Promise<NewSession> {
    if (typeof emailInput !== 'string' || typeof password !== 'string' || password.length > MAX_PASSWORD) throw invalidLogin();
    const email = emailInput.trim().toLowerCase();
    const now = this.clock.now();
    const pairKey = `oplogin:${digest(`${email}\n${ip}`)}`;
    const addressKey = `oploginip:${ip}`;
    if (this.rates) {
      for (const [key, limit] of [[addressKey, LOGIN_LIMITS.perAddress], [pairKey, LOGIN_LIMITS.perPair]] as const) {
        const d = await this.rates.peek(key, limit, LOGIN_LIMITS.windowMs, now);
        if (!d.allowed) throw CredentialErrors.rateLimited(d.retryAfter, d);
      }
    }
    const op = await this.repo.byEmail(email);
    const good = op ? await verifyHash(op.password_hash, password) : (await verifyHash(await this.decoyHash(), password), false);
    if (!op || !good) {
      if (this.rates) {
        await this.rates.hit(addressKey, LOGIN_LIMITS.perAddress, LOGIN_LIMITS.windowMs, now);
        await this.rates.hit(pairKey, LOGIN_LIMITS.perPair, LOGIN_LIMITS.windowMs, now);
      }
      throw invalidLogin();
    }
    await this.repo.deleteSessionsOf(op.id, now);
    await this.repo.loggedIn(op.id, now, ip);
    return this.openSession(op, ip);
  }

  /** The live session with this cookie value, or undefined. */
  async session(token: string): Promise<{ operator: OperatorIdentity; expiresAt: number } | undefined> {
    if (!token || token.length > 200) return undefined;
    const found = await this.repo.session(digest(token), this.clock.now());
    return found && { operator: { id: found.operator.id, email: found.operator.email }, expiresAt: found.session.expires_at };
  }

  async logout(token: string): Promise<void> {
    await this.repo.deleteSession(digest(token));
  }

  private async openSession(op: OperatorRow, ip: string): Promise<NewSession> {
    const token = randomHex(32);
    const now = this.clock.now();
    const expiresAt = now + this.sessionTtlMs;
    await this.repo.insertSession({ digest: digest(token), operator_id: op.id, created_at: now, expires_at: expiresAt, ip });
    return { token, csrfToken: csrfTokenFor(token), expiresAt, maxAgeSeconds: Math.floor(this.sessionTtlMs / 1000), operator: { id: op.id, email: op.email } };
  }

  private async newRow(email: string, password: string): Promise<OperatorRow> {
    const now = this.clock.now();
    return { id: newObjectId(now), email, password_hash: await hash(password, ARGON2), created_at: now, updated_at: now, last_login_at: null, last_login_ip: null };
  }

  private decoyHash(): Promise<string> {
    this.decoy ??= hash(randomHex(16), ARGON2);
    return this.decoy;
  }
}

/**
 * The CSRF token of a session: derived from the session's secret (a digest of it under another label), so it needs
 * no storage and cannot be computed by anyone who does not hold the session cookie. The page reads it from
 * GET /dashboard/api/session and sends it in `X-CSRF-Token` with every request that changes something.
 */
export function csrfTokenFor(sessionToken: string): string {
  return digest(`imkit csrf\n${sessionToken}`);
}

async function verifyHash(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

function invalidLogin(): AppError {
  return new AppError('INVALID_LOGIN', 'Wrong email or password');
}

function checkEmail(raw: string): string {
  const email = raw.trim().toLowerCase();
  if (!EMAIL.test(email)) throw invalidRequest('Invalid field email: an email address such as ops@example.com', { field: 'email' });
  return email;
}

function checkPassword(password: string, name = 'password'): void {
  if (typeof password !== 'string' || password.length < MIN_PASSWORD || password.length > MAX_PASSWORD) {
    throw invalidRequest(`Invalid field ${name}: ${MIN_PASSWORD} to ${MAX_PASSWORD} characters`, { field: name });
  }
}

function view(op: OperatorRow): OperatorView {
  return { id: op.id, email: op.email, createdAt: iso(op.created_at), lastLoginAt: op.last_login_at === null ? null : iso(op.last_login_at), lastLoginIp: op.last_login_ip };
}
