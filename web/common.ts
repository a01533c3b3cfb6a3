// What the dashboard and the web chat share: calling the server's API in its envelope, and small formatters.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly status: number,
  ) {
    super(message);
  }
}

/** One call in the server's envelope ({RC, RM, result} or {RC, error, message}); the result, or an ApiError. */
export async function request<T = any>(method: string, url: string, opts: { body?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(url, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError('The server cannot be reached', 'NETWORK', 0);
  }
  let json: any;
  try {
    json = await res.json();
  } catch {
    json = undefined;
  }
  if (!res.ok || !json || json.RC !== 0) throw new ApiError(json?.message ?? json?.RM ?? `HTTP ${res.status}`, json?.error, res.status);
  return json.result as T;
}

export function when(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined || iso === '') return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleString();
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.code ? `${err.message} (${err.code})` : err.message;
  return err instanceof Error ? err.message : String(err);
}

export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
