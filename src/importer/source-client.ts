/**
 * The importer's view of a source server: GET requests (and the read-only POST /search) of the IMKIT Platform API
 * with the application's API key (and IM-CLIENT-ID to act as a user), kept under a request budget per minute,
 * honouring 429 with its retryAfter / Retry-After, and retrying transient failures (5xx, network errors) with
 * exponential backoff.
 */

export interface ImportTimer {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realTimer: ImportTimer = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(t);
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export interface SourceClientOptions {
  baseUrl: string;
  apiKey: string;
  /** Requests per rolling minute this client allows itself (the source's documented limit: 1000). */
  limitPerMinute?: number;
  /** Attempts per request before a transient failure is given up (429s do not count). */
  maxAttempts?: number;
  timer?: ImportTimer;
  signal?: AbortSignal;
  /** Stop (abort) after this many requests: how tests interrupt an import at a chosen point. */
  maxRequests?: number;
  fetch?: typeof fetch;
  /** A request without an answer after this long is retried as a network error (default 60 s). */
  timeoutMs?: number;
  /** Called when a request must wait this long for the budget (the progress shows it). */
  onWait?: (ms: number) => void;
}

export class SourceError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

const WINDOW_MS = 60_000;

export class SourceClient {
  /** Requests sent (answered or not), 429s received, retries after transient failures. */
  requests = 0;
  throttled = 0;
  retries = 0;
  readonly limitPerMinute: number;
  private readonly timer: ImportTimer;
  private readonly base: string;
  /** Times the answers of the requests of the last minute arrived (the source counted them no later). */
  private readonly done: number[] = [];
  private inFlight = 0;
  private waiters: Array<() => void> = [];

  constructor(private readonly opts: SourceClientOptions) {
    this.limitPerMinute = opts.limitPerMinute ?? 1000;
    this.timer = opts.timer ?? realTimer;
    this.base = opts.baseUrl.replace(/\/+$/, '');
  }

  /** Requests counted against the budget in the last minute, now. */
  usedInWindow(): number {
    this.expire();
    return this.done.length + this.inFlight;
  }

  /** GET a path; the envelope's `result` is returned. 404 answers resolve to undefined when `allow404`. */
  get<T = any>(path: string, query: Record<string, string | number | undefined> = {}, opts: { userId?: string; allow404?: boolean } = {}): Promise<T> {
    return this.send<T>('GET', path, query, opts);
  }

  /** POST a JSON body to a route that only reads (POST /search); otherwise as `get`. */
  post<T = any>(path: string, body: unknown, opts: { userId?: string; allow404?: boolean } = {}): Promise<T> {
    return this.send<T>('POST', path, {}, opts, body);
  }

  private async send<T>(method: 'GET' | 'POST', path: string, query: Record<string, string | number | undefined>, opts: { userId?: string; allow404?: boolean }, body?: unknown): Promise<T> {
    const qs = Object.entries(query)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join('&');
    const url = `${this.base}${path}${qs ? `?${qs}` : ''}`;
    const headers: Record<string, string> = { 'IM-API-KEY': this.opts.apiKey, accept: 'application/json' };
    if (opts.userId !== undefined) headers['IM-CLIENT-ID'] = opts.userId;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const maxAttempts = this.opts.maxAttempts ?? 6;
    let attempt = 0;
    for (;;) {
      await this.acquire();
      let res: Response;
      let text: string;
      try {
        const timeout = AbortSignal.timeout(this.opts.timeoutMs ?? 60_000);
        const signal = this.opts.signal ? AbortSignal.any([this.opts.signal, timeout]) : timeout;
        res = await (this.opts.fetch ?? fetch)(url, { method, headers, body: payload, signal });
        text = await res.text();
      } catch (err) {
        this.release();
        if (this.opts.signal?.aborted) throw abortError(this.opts.signal);
        attempt++;
        if (attempt >= maxAttempts) throw new SourceError(`${method} ${path}: ${(err as Error).message}`, 0);
        this.retries++;
        await this.timer.sleep(backoff(attempt), this.opts.signal);
        continue;
      }
      this.release();
      let answer: any;
      try {
        answer = text ? JSON.parse(text) : undefined;
      } catch {
        answer = undefined;
      }
      if (res.status === 429) {
        this.throttled++;
        const after = Number(answer?.retryAfter ?? res.headers.get('retry-after') ?? 1);
        this.opts.onWait?.(Math.max(1, Number.isFinite(after) ? after : 1) * 1000);
        await this.timer.sleep(Math.max(1, Number.isFinite(after) ? after : 1) * 1000, this.opts.signal);
        continue;
      }
      if (res.status >= 500 || res.status === 408) {
        attempt++;
        if (attempt >= maxAttempts) throw new SourceError(`${method} ${path}: ${res.status} ${answer?.message ?? text.slice(0, 200)}`, res.status, answer?.error);
        this.retries++;
        const after = Number(answer?.retryAfter ?? res.headers.get('retry-after'));
        await this.timer.sleep(Number.isFinite(after) && after > 0 ? after * 1000 : backoff(attempt), this.opts.signal);
        continue;
      }
      if (res.status === 404 && opts.allow404) return undefined as T;
      if (res.status !== 200) throw new SourceError(`${method} ${path}: ${res.status} ${answer?.message ?? text.slice(0, 200)}`, res.status, answer?.error);
      return (answer?.result ?? answer) as T;
    }
  }

  private expire(): void {
    const floor = this.timer.now() - WINDOW_MS;
    while (this.done.length && this.done[0]! <= floor) this.done.shift();
  }

  /** Waits until one more request fits in the budget, then counts it as in flight. */
  private async acquire(): Promise<void> {
    for (;;) {
      if (this.opts.signal?.aborted) throw abortError(this.opts.signal);
      if (this.opts.maxRequests !== undefined && this.requests >= this.opts.maxRequests) {
        throw new SourceError(`request budget of ${this.opts.maxRequests} used up`, 0, 'REQUEST_BUDGET');
      }
      this.expire();
      if (this.done.length + this.inFlight < this.limitPerMinute) {
        this.inFlight++;
        this.requests++;
        return;
      }
      if (this.done.length === 0) {
        // Everything in the window is in flight: wait for an answer.
        await new Promise<void>((resolve) => this.waiters.push(resolve));
        continue;
      }
      const ms = Math.max(1, this.done[0]! + WINDOW_MS - this.timer.now() + 1);
      this.opts.onWait?.(ms);
      await this.timer.sleep(ms, this.opts.signal);
    }
  }

  private release(): void {
    this.inFlight--;
    this.done.push(this.timer.now());
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }
}

function backoff(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  return reason instanceof Error ? reason : new SourceError('import aborted', 0, 'ABORTED');
}
