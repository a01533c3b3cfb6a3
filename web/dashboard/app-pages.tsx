import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { copyText, errorText, when } from '../common';
import { AlertsBanner } from './alerts';
import { api } from './api';
import { LineChart, type Series } from './chart';
import { ErrorLine, Link, ShownOnce } from './ui';

/** The pages of one application. Every call names the application (X-IMKIT-APP) and goes through the admin routes. */

const PAGES: Array<[string, string]> = [
  ['keys', 'API Settings'],
  ['usage', 'Usage'],
  ['users', 'Users and rooms'],
  ['webhooks', 'Webhooks'],
  ['settings', 'Settings'],
  ['audit', 'Audit log'],
];

export function AppLayout(props: { appId: string; page: string; shell: (nav: any, body: any) => any }) {
  const { appId, page } = props;
  const nav = (
    <>
      <div class="section">{appId}</div>
      {PAGES.map(([p, label]) => (
        <Link key={p} href={`/dashboard/apps/${encodeURIComponent(appId)}/${p}`} class={`item${p === page ? ' active' : ''}`}>
          {label}
        </Link>
      ))}
    </>
  );
  const body = (
    <>
      <AlertsBanner key={page} appId={appId} />
      {page === 'keys' && <KeysPage appId={appId} />}
      {page === 'usage' && <UsagePage appId={appId} />}
      {page === 'users' && <UsersPage appId={appId} />}
      {page === 'webhooks' && <WebhooksPage appId={appId} />}
      {page === 'settings' && <SettingsPage appId={appId} />}
      {page === 'audit' && <AuditPage appId={appId} />}
      {!PAGES.some(([p]) => p === page) && <p>No such page.</p>}
    </>
  );
  return props.shell(nav, body);
}

/** Loads `fn` on mount and when `deps` change; `reload` runs it again. */
function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: string | undefined; reload: () => Promise<void>; setError: (e: string | undefined) => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const reload = useCallback(async () => {
    try {
      setData(await fn());
      setError(undefined);
    } catch (err) {
      setError(errorText(err));
    }
  }, deps);
  useEffect(() => void reload(), [reload]);
  return { data, error, reload, setError };
}

interface ApiKey {
  id: string;
  fingerprint: string;
  last4: string;
  name: string | null;
  scopes: string[] | null;
  status: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  lastAddress: string | null;
}

function KeysPage({ appId }: { appId: string }) {
  const keys = useLoad<ApiKey[]>(() => api('GET', '/admin/api-keys', undefined, appId).then((r) => r.data), [appId]);
  const client = useLoad<any>(() => api('GET', `/dashboard/api/apps/${encodeURIComponent(appId)}/client-key`).then((r) => r.clientKey), [appId]);
  const apps = useLoad<any[]>(() => api('GET', '/dashboard/api/apps').then((r) => r.data), [appId]);
  const domains: string[] = apps.data?.find((a) => a.id === appId)?.domains ?? [];
  const [shown, setShown] = useState<{ label: string; value: string }>();
  const [name, setName] = useState('');
  const [expiresIn, setExpiresIn] = useState('');
  const [expiry, setExpiry] = useState('24h');
  const [domainText, setDomainText] = useState<string>();
  const [error, setError] = useState<string>();
  const act = async (fn: () => Promise<void>) => {
    setError(undefined);
    try {
      await fn();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <div>
      <h1>API Settings</h1>
      {shown && <ShownOnce label={shown.label} value={shown.value} testid="new-api-key" onDone={() => setShown(undefined)} />}
      <ErrorLine error={error ?? keys.error} />
      <section class="card">
        <h2>API keys</h2>
        <p class="small muted">
          A key is named by its fingerprint (the first 10 hex characters of its SHA-256) and its last 4 characters; the key itself is shown once, when it is made.
        </p>
        <label class="row">
          <span>Old key keeps working after a rotation for</span>
          <select value={expiry} onChange={(e) => setExpiry(e.currentTarget.value)} aria-label="Old key keeps working for">
            <option value="0">0 (revoke now)</option>
            <option value="1h">1 hour</option>
            <option value="24h">24 hours</option>
            <option value="7d">7 days</option>
          </select>
        </label>
        <table data-testid="api-keys">
          <thead>
            <tr>
              <th>Fingerprint</th>
              <th>Last 4</th>
              <th>Name</th>
              <th>Status</th>
              <th>Created</th>
              <th>Expires</th>
              <th>Last used</th>
              <th>From</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {keys.data?.map((k) => (
              <tr key={k.id} data-fingerprint={k.fingerprint}>
                <td class="mono">{k.fingerprint}</td>
                <td class="mono">…{k.last4}</td>
                <td>
                  {k.name ?? <span class="muted">—</span>}
                  {k.scopes && <div class="small muted">{k.scopes.join(', ')}</div>}
                </td>
                <td class={`status-${k.status}`}>{k.status}</td>
                <td>{when(k.createdAt)}</td>
                <td>{when(k.expiresAt)}</td>
                <td>{when(k.lastUsedAt)}</td>
                <td class="mono">{k.lastAddress ?? '—'}</td>
                <td class="row">
                  {(k.status === 'live' || k.status === 'expiring') && (
                    <>
                      <button
                        type="button"
                        onClick={() =>
                          act(async () => {
                            const r = await api('POST', `/admin/api-keys/${k.fingerprint}/rotate`, { expireOldIn: expiry }, appId);
                            setShown({ label: `New API key replacing …${k.last4}`, value: r.apiKey });
                            await keys.reload();
                          })
                        }
                      >
                        Rotate
                      </button>
                      <button
                        type="button"
                        class="danger"
                        onClick={() =>
                          confirm(`Revoke the API key …${k.last4} (${k.fingerprint})? Calls with it fail from the next request on.`) &&
                          act(async () => {
                            await api('DELETE', `/admin/api-keys/${k.fingerprint}`, undefined, appId);
                            await keys.reload();
                          })
                        }
                      >
                        Revoke
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            void act(async () => {
              const r = await api('POST', '/admin/api-keys', { ...(name ? { name } : {}), ...(expiresIn ? { expiresIn } : {}) }, appId);
              setShown({ label: `New API key${name ? ` "${name}"` : ''}`, value: r.apiKey });
              setName('');
              await keys.reload();
            });
          }}
        >
          <label>
            <span>Name</span>
            <input name="keyName" maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label>
            <span>Expires in (e.g. 90d; empty: never)</span>
            <input name="expiresIn" maxLength={16} value={expiresIn} onInput={(e) => setExpiresIn(e.currentTarget.value)} />
          </label>
          <button class="primary" type="submit">
            Create API key
          </button>
        </form>
      </section>

      <section class="card">
        <h2>Client key</h2>
        <p class="small muted">The client key goes into your apps and web pages (it is no secret); bind it to your domains below.</p>
        {client.data === null && <p>No client key.</p>}
        {client.data && (
          <>
            {client.data.clientKey ? (
              <code class="secret" data-testid="client-key">
                {client.data.clientKey}
              </code>
            ) : (
              <p>
                …{client.data.last4} <span class="muted">(set with IMKIT_CLIENT_KEY: not shown again)</span>
              </p>
            )}
            <div class="row">
              {client.data.clientKey && (
                <button type="button" onClick={() => void copyText(client.data.clientKey)}>
                  Copy
                </button>
              )}
              <button
                type="button"
                class="danger"
                onClick={() =>
                  confirm('Regenerate the client key? Apps and pages with the current one stop working at once.') &&
                  act(async () => {
                    await api('POST', `/dashboard/api/apps/${encodeURIComponent(appId)}/client-key/rotate`);
                    await client.reload();
                  })
                }
              >
                Regenerate
              </button>
              <span class="small muted">created {when(client.data.createdAt)}</span>
            </div>
          </>
        )}
      </section>

      <section class="card">
        <h2>Domains</h2>
        <p class="small muted">Sites the client key may be used from (chat.example.com, *.example.com), one per line; none: any site.</p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void act(async () => {
              const list = (domainText ?? domains.join('\n')).split(/[\s,]+/).filter(Boolean);
              await api('PUT', `/dashboard/api/apps/${encodeURIComponent(appId)}/domains`, { domains: list });
              setDomainText(undefined);
              await apps.reload();
            });
          }}
        >
          <textarea name="domains" rows={3} cols={50} aria-label="Domains" value={domainText ?? domains.join('\n')} onInput={(e) => setDomainText(e.currentTarget.value)} />
          <div>
            <button type="submit">Save domains</button>
          </div>
        </form>
      </section>
    </div>
  );
}

const COLORS = ['#2456b3', '#1f7a4d', '#a05a00', '#8a3ffc', '#b3261e', '#007d79'];
const MINUTE = 60_000;

/** Figures sampled while the page is open (the server keeps only the last hour's totals of these). */
interface Sample {
  t: number;
  messages: number;
  connections: number;
}

function UsagePage({ appId }: { appId: string }) {
  const usage = useLoad<any>(() => api('GET', '/admin/usage', undefined, appId), [appId]);
  const [stats, setStats] = useState<any>();
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<string>();
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => {
    const sample = async () => {
      try {
        const [s, c] = await Promise.all([api('GET', '/admin/stats', undefined, appId), api('GET', '/admin/connection-count', undefined, appId)]);
        setStats(s);
        setSamples((old) => [...old.slice(-120), { t: Date.now(), messages: s.messageCount, connections: c.count }]);
      } catch (err) {
        setError(errorText(err));
      }
    };
    void sample();
    timer.current = window.setInterval(() => {
      void sample();
      void usage.reload();
    }, 10_000);
    return () => clearInterval(timer.current);
  }, [appId]);
  const now = Date.now();
  const from = now - 60 * MINUTE;
  const keys: any[] = usage.data?.keys ?? [];
  const perKey: Series[] = keys
    .filter((k) => k.perMinute.length > 0)
    .map((k, i) => ({ name: keyLabel(k), color: COLORS[i % COLORS.length]!, points: k.perMinute.map((p: any) => ({ t: Date.parse(p.minute), v: p.requests })) }));
  const refused: Series[] = keys
    .filter((k) => k.perMinute.some((p: any) => p.refused > 0))
    .map((k, i) => ({ name: `${keyLabel(k)} 429s`, color: COLORS[i % COLORS.length]!, points: k.perMinute.map((p: any) => ({ t: Date.parse(p.minute), v: p.refused })) }));
  // Messages per minute between samples: the difference of the last hour's count, scaled to a minute.
  const rate: Series = {
    name: 'messages/min',
    color: COLORS[1]!,
    points: samples.slice(1).map((s, i) => ({ t: s.t, v: Math.max(0, Math.round(((s.messages - samples[i]!.messages) * MINUTE) / Math.max(1, s.t - samples[i]!.t))) })),
  };
  const conns: Series = { name: 'connections', color: COLORS[0]!, points: samples.map((s) => ({ t: s.t, v: s.connections })) };
  const since = samples[0]?.t ?? now;
  return (
    <div>
      <h1>Usage</h1>
      <ErrorLine error={error ?? usage.error} />
      <div class="figures">
        <div class="figure">
          <span class="muted small">Requests, last hour</span>
          <b data-testid="requests-last-hour">{keys.reduce((n, k) => n + k.requestsLastHour, 0)}</b>
        </div>
        <div class="figure">
          <span class="muted small">Messages, last hour</span>
          <b data-testid="messages-last-hour">{stats?.messageCount ?? '…'}</b>
        </div>
        <div class="figure">
          <span class="muted small">Live connections</span>
          <b data-testid="connections">{samples.length ? samples[samples.length - 1]!.connections : '…'}</b>
        </div>
        <div class="figure">
          <span class="muted small">Peak connections, last hour</span>
          <b>{stats?.peakConnectionCount ?? '…'}</b>
        </div>
        <div class="figure">
          <span class="muted small">Active users / rooms, last hour</span>
          <b>
            {stats ? `${stats.userList?.length ?? 0} / ${stats.roomCount}` : '…'}
          </b>
        </div>
      </div>
      <h2>Requests per minute per API key</h2>
      <LineChart label="Requests per minute" series={perKey} from={from} to={now} />
      <LineChart label="Refused (429) per minute" series={refused} from={from} to={now} />
      <h2>While this page is open</h2>
      <p class="small muted">Sampled every 10 seconds from /admin/stats and /admin/connection-count.</p>
      <LineChart label="Messages per minute" series={[rate]} from={since} to={Math.max(now, since + MINUTE)} />
      <LineChart label="Live connections" series={[conns]} from={since} to={Math.max(now, since + MINUTE)} />
      <table>
        <thead>
          <tr>
            <th>API key</th>
            <th>Last minute</th>
            <th>Last hour</th>
            <th>Last used</th>
            <th>From</th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k, i) => (
            <tr key={i}>
              <td class="mono">{keyLabel(k)}</td>
              <td>{k.requestsLastMinute}</td>
              <td data-testid={`key-hour-${k.fingerprint ?? k.last4}`}>{k.requestsLastHour}</td>
              <td>{when(k.lastUsedAt)}</td>
              <td class="mono">{k.lastAddress ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function UsersPage({ appId }: { appId: string }) {
  const [term, setTerm] = useState('');
  const [users, setUsers] = useState<any[]>();
  const [roomTerm, setRoomTerm] = useState('');
  const [rooms, setRooms] = useState<any[]>();
  const [roomId, setRoomId] = useState<string>();
  const [error, setError] = useState<string>();
  const [note, setNote] = useState<string>();
  const act = async (fn: () => Promise<void>) => {
    setError(undefined);
    setNote(undefined);
    try {
      await fn();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const searchUsers = () =>
    act(async () => {
      const escaped = term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const q = term ? JSON.stringify({ $or: [{ _id: { $regex: escaped, $options: 'i' } }, { nickname: { $regex: escaped, $options: 'i' } }] }) : undefined;
      const r = await api('GET', `/admin/clients?limit=50${q ? `&q=${encodeURIComponent(q)}` : ''}`, undefined, appId);
      setUsers(r.data);
    });
  useEffect(() => void searchUsers(), [appId]);
  return (
    <div>
      <h1>Users and rooms</h1>
      <ErrorLine error={error} />
      {note && <p class="notice">{note}</p>}
      <section class="card">
        <h2>Users</h2>
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            void searchUsers();
          }}
        >
          <input aria-label="Search users" placeholder="id or nickname" value={term} onInput={(e) => setTerm(e.currentTarget.value)} />
          <button type="submit">Search</button>
        </form>
        <table>
          <thead>
            <tr>
              <th>Id</th>
              <th>Nickname</th>
              <th>Last login</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {users?.map((u) => (
              <tr key={u._id}>
                <td class="mono">{u._id}</td>
                <td>{u.nickname}</td>
                <td>{when(u.lastLoginTimeMS ?? u.lastLoginTime)}</td>
                <td>
                  <button
                    type="button"
                    class="danger"
                    onClick={() =>
                      confirm(`Revoke every token of ${u._id}? Their apps are logged out at once.`) &&
                      act(async () => {
                        await api('DELETE', `/admin/clients/${encodeURIComponent(u._id)}/token`, undefined, appId);
                        setNote(`The tokens of ${u._id} are revoked.`);
                      })
                    }
                  >
                    Revoke tokens
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="card">
        <h2>Rooms</h2>
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            void act(async () => {
              const r = await api('POST', '/search', { type: ['roomName'], keyword: roomTerm, limit: 50 }, appId);
              setRooms(r.roomName?.data ?? r.roomName ?? []);
            });
          }}
        >
          <input aria-label="Search rooms" placeholder="room name" value={roomTerm} onInput={(e) => setRoomTerm(e.currentTarget.value)} />
          <button type="submit">Search</button>
          <button type="button" onClick={() => roomTerm && setRoomId(roomTerm)}>
            Open by id
          </button>
        </form>
        {rooms && (
          <ul>
            {rooms.map((r: any) => (
              <li key={r._id}>
                <button type="button" onClick={() => setRoomId(r._id)}>
                  {r.name || r._id}
                </button>{' '}
                <span class="muted mono">{r._id}</span>
              </li>
            ))}
            {rooms.length === 0 && <li class="muted">No room with that name.</li>}
          </ul>
        )}
      </section>
      {roomId && <RoomView appId={appId} roomId={roomId} act={act} />}
    </div>
  );
}

function RoomView(props: { appId: string; roomId: string; act: (fn: () => Promise<void>) => Promise<void> }) {
  const { appId, roomId, act } = props;
  const path = `/rooms/${encodeURIComponent(roomId)}`;
  const room = useLoad<any>(() => api('GET', path, undefined, appId), [appId, roomId]);
  const messages = useLoad<any[]>(() => api('GET', `${path}/messages?limit=50`, undefined, appId).then((r) => r.data ?? r), [appId, roomId]);
  const [banUser, setBanUser] = useState('');
  const r = room.data;
  const frozen = r?.status === 0;
  return (
    <section class="card" data-testid="room">
      <h2>
        Room {r?.name || roomId} <span class="muted mono small">{roomId}</span>
      </h2>
      <ErrorLine error={room.error ?? messages.error} />
      {r && (
        <>
          <p>
            {r.roomType} room, {frozen ? <b>frozen</b> : 'open'}, {r.members?.length ?? 0} members:{' '}
            {(r.members ?? []).map((m: any) => (typeof m === 'string' ? m : m._id)).join(', ')}
          </p>
          <div class="row">
            <button
              type="button"
              onClick={() =>
                act(async () => {
                  await api('PUT', path, { status: frozen ? 1 : 0 }, appId);
                  await room.reload();
                })
              }
            >
              {frozen ? 'Unfreeze' : 'Freeze'}
            </button>
            <form
              class="row"
              onSubmit={(e) => {
                e.preventDefault();
                void act(async () => {
                  await api('POST', `/blockStatus/room/${encodeURIComponent(roomId)}/${encodeURIComponent(banUser)}`, {}, appId);
                  setBanUser('');
                });
              }}
            >
              <input aria-label="User to ban" placeholder="user id" value={banUser} onInput={(e) => setBanUser(e.currentTarget.value)} />
              <button type="submit" class="danger">
                Ban from room
              </button>
            </form>
          </div>
        </>
      )}
      <h3>Messages (newest first)</h3>
      <div class="messages-list">
        <table>
          <tbody>
            {messages.data?.map((m: any) => (
              <tr key={m._id}>
                <td class="small muted">{when(m.messageTimeMS ?? m.createdAt)}</td>
                <td class="mono small">{m.sender?._id ?? m.sender}</td>
                <td>{m.messageType === 'text' ? m.message : <span class="muted">[{m.messageType}]</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

// The event types of docs/webhooks.md (src/webhooks/outbox.ts WEBHOOK_EVENT_TYPES; the server refuses any other).
const EVENT_TYPES = ['*', 'message.created', 'message.edited', 'message.recalled', 'message.deleted', 'room.created', 'room.updated', 'room.deleted', 'members.added', 'members.removed', 'user.created', 'user.deleted', 'user.banned', 'user.unbanned', 'user.muted', 'user.unmuted', 'key.alert'];

function WebhooksPage({ appId }: { appId: string }) {
  const endpoints = useLoad<any[]>(() => api('GET', '/admin/webhooks', undefined, appId).then((r) => r.data), [appId]);
  const deliveries = useLoad<any[]>(() => api('GET', '/admin/webhooks/deliveries?limit=50', undefined, appId).then((r) => r.data), [appId]);
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<string[]>(['*']);
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();
  return (
    <div>
      <h1>Webhooks</h1>
      {secret && <ShownOnce label="Signing secret of the new endpoint" value={secret} testid="webhook-secret" onDone={() => setSecret(undefined)} />}
      <ErrorLine error={error ?? endpoints.error} />
      <section class="card">
        <h2>Endpoints</h2>
        <table>
          <thead>
            <tr>
              <th>URL</th>
              <th>Events</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {endpoints.data?.map((e) => (
              <tr key={e.id}>
                <td class="mono">{e.url}</td>
                <td>{e.events.join(', ')}</td>
                <td>{when(e.createdAt)}</td>
                <td>
                  <button
                    type="button"
                    class="danger"
                    onClick={async () => {
                      if (!confirm(`Delete the endpoint ${e.url}?`)) return;
                      try {
                        await api('DELETE', `/admin/webhooks/${encodeURIComponent(e.id)}`, undefined, appId);
                        await endpoints.reload();
                      } catch (err) {
                        setError(errorText(err));
                      }
                    }}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <form
          onSubmit={async (ev) => {
            ev.preventDefault();
            setError(undefined);
            try {
              const r = await api('POST', '/admin/webhooks', { url, events }, appId);
              setSecret(r.secret);
              setUrl('');
              await endpoints.reload();
            } catch (err) {
              setError(errorText(err));
            }
          }}
        >
          <div class="row">
            <label class="grow">
              <span>URL</span>
              <input type="url" name="url" required value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
            </label>
            <label>
              <span>Events</span>
              <select multiple size={4} aria-label="Events" onChange={(e) => setEvents(Array.from(e.currentTarget.selectedOptions, (o) => o.value))}>
                {EVENT_TYPES.map((t) => (
                  <option key={t} value={t} selected={events.includes(t)}>
                    {t === '*' ? 'all events' : t}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <button class="primary" type="submit">
            Add endpoint
          </button>
        </form>
      </section>
      <section class="card">
        <div class="row">
          <h2 class="grow">Delivery log</h2>
          <button type="button" onClick={() => void deliveries.reload()}>
            Refresh
          </button>
        </div>
        <table>
          <thead>
            <tr>
              <th>Created</th>
              <th>Event</th>
              <th>Target</th>
              <th>Status</th>
              <th>Attempts</th>
              <th>Last answer</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.data?.map((d) => (
              <tr key={d.id}>
                <td>{when(d.createdAt)}</td>
                <td>{d.eventType}</td>
                <td class="mono small">{d.target}</td>
                <td>{d.status}</td>
                <td>{d.attempts}</td>
                <td class="small">{d.lastStatusCode ?? d.lastError ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}

function SettingsPage({ appId }: { appId: string }) {
  const config = useLoad<Record<string, unknown>>(() => api('GET', '/config', undefined, appId), [appId]);
  const keys = useLoad<ApiKey[]>(() => api('GET', '/admin/api-keys', undefined, appId).then((r) => r.data), [appId]);
  const [keywords, setKeywords] = useState<string>();
  const [mode, setMode] = useState<string>();
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const [error, setError] = useState<string>();
  const [saved, setSaved] = useState<string>();
  const censorship = (config.data?.censorship ?? null) as { keywords?: string[]; mode?: string } | null;
  const save = async (body: Record<string, unknown>, what: string) => {
    setError(undefined);
    setSaved(undefined);
    try {
      await api('POST', '/config', body, appId);
      await config.reload();
      setSaved(`${what} saved.`);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <div>
      <h1>Settings</h1>
      <ErrorLine error={error ?? config.error} />
      {saved && <p class="muted">{saved}</p>}
      <section class="card">
        <h2>Rate limits</h2>
        <p class="small muted">
          Each API key counts its requests per minute against its own limit, else the application's, else the server's IMKIT_RATE_LIMIT; user tokens against
          IMKIT_USER_RATE_LIMIT. A key's limit is chosen when it is made (imkit-server app create-api-key --rate-limit, POST /admin/api-keys).
        </p>
        <table>
          <thead>
            <tr>
              <th>API key</th>
              <th>Name</th>
              <th>Requests per minute</th>
            </tr>
          </thead>
          <tbody>
            {keys.data
              ?.filter((k) => k.status === 'live' || k.status === 'expiring')
              .map((k: any) => (
                <tr key={k.id}>
                  <td class="mono">…{k.last4}</td>
                  <td>{k.name ?? '—'}</td>
                  <td>{k.rateLimitPerMinute ?? <span class="muted">application / server default</span>}</td>
                </tr>
              ))}
          </tbody>
        </table>
      </section>
      <section class="card">
        <h2>Censorship</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const list = (keywords ?? censorship?.keywords?.join('\n') ?? '').split('\n').map((s) => s.trim()).filter(Boolean);
            void save({ censorship: { keywords: list, mode: mode ?? censorship?.mode ?? 'mask' } }, 'Censorship');
          }}
        >
          <label>
            <span>Keywords, one per line</span>
            <textarea name="keywords" rows={4} cols={40} value={keywords ?? censorship?.keywords?.join('\n') ?? ''} onInput={(e) => setKeywords(e.currentTarget.value)} />
          </label>
          <label>
            <span>Mode</span>
            <select value={mode ?? censorship?.mode ?? 'mask'} onChange={(e) => setMode(e.currentTarget.value)}>
              <option value="mask">mask (replace with *)</option>
              <option value="reject">reject the message</option>
            </select>
          </label>
          <div class="row">
            <button type="submit">Save censorship</button>
            {censorship && (
              <button
                type="button"
                onClick={async () => {
                  await api('DELETE', '/config/censorship', undefined, appId).catch((err) => setError(errorText(err)));
                  setKeywords(undefined);
                  await config.reload();
                }}
              >
                Turn off
              </button>
            )}
          </div>
        </form>
      </section>
      <section class="card">
        <h2>Config keys</h2>
        <table>
          <tbody>
            {Object.entries(config.data ?? {}).map(([k, v]) => (
              <tr key={k}>
                <td class="mono">{k}</td>
                <td class="mono small">{JSON.stringify(v)}</td>
                <td>
                  <button
                    type="button"
                    onClick={async () => {
                      await api('DELETE', `/config/${encodeURIComponent(k)}`, undefined, appId).catch((err) => setError(errorText(err)));
                      await config.reload();
                    }}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            let parsed: unknown;
            try {
              parsed = JSON.parse(value);
            } catch {
              return setError('The value must be JSON (a string in quotes, a number, an object, ...)');
            }
            void save({ [key]: parsed }, `Config key ${key}`);
          }}
        >
          <input aria-label="Config key" placeholder="key" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
          <input class="grow" aria-label="Config value (JSON)" placeholder='value as JSON, e.g. {"text":"Welcome"}' required value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          <button type="submit">Set</button>
        </form>
      </section>
    </div>
  );
}

function AuditPage({ appId }: { appId: string }) {
  const [filters, setFilters] = useState({ actor: '', action: '', target: '' });
  const [applied, setApplied] = useState(filters);
  const [entries, setEntries] = useState<any[]>([]);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<string>();
  const operators = useLoad<any[]>(() => api('GET', '/dashboard/api/operators').then((r) => r.data), []);
  const load = async (before?: string) => {
    const q = new URLSearchParams({ limit: '50' });
    for (const [k, v] of Object.entries(applied)) if (v) q.set(k, v);
    if (before) q.set('before', before);
    try {
      const r = await api('GET', `/admin/audit?${q}`, undefined, appId);
      setEntries((old) => (before ? [...old, ...r.data] : r.data));
      setTotal(r.totalCount);
      setError(undefined);
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), [appId, applied]);
  const who = (a: any) => {
    if (a.type === 'operator') return `operator ${operators.data?.find((o) => o.id === a.id)?.email ?? a.id}`;
    if (a.type === 'apiKey') return `API key ${a.fingerprint ?? ''} …${a.last4 ?? ''}`;
    return `${a.type} ${a.id}`;
  };
  return (
    <div>
      <h1>Audit log</h1>
      <ErrorLine error={error} />
      <form
        class="row card"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ ...filters });
        }}
      >
        {(['actor', 'action', 'target'] as const).map((f) => (
          <label key={f}>
            <span>{f === 'actor' ? 'Actor (key id, fingerprint or operator id)' : f === 'action' ? 'Action (e.g. api-keys.create)' : 'Target (e.g. key=…)'}</span>
            <input name={f} value={filters[f]} onInput={(e) => setFilters({ ...filters, [f]: e.currentTarget.value })} />
          </label>
        ))}
        <button type="submit">Filter</button>
      </form>
      <p class="muted small">{total} entries</p>
      <table data-testid="audit">
        <thead>
          <tr>
            <th>When</th>
            <th>Actor</th>
            <th>Address</th>
            <th>Action</th>
            <th>Target</th>
            <th>Outcome</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e._id}>
              <td>{when(e.at)}</td>
              <td>{who(e.actor)}</td>
              <td class="mono">{e.ip ?? '—'}</td>
              <td class="mono">{e.action}</td>
              <td class="mono small">{e.target ?? '—'}</td>
              <td class={e.outcome === 'ok' ? 'status-live' : 'status-revoked'}>{e.outcome}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {entries.length < total && (
        <button type="button" onClick={() => void load(entries[entries.length - 1]?._id)}>
          Older entries
        </button>
      )}
    </div>
  );
}

/** A key on the usage page: its last 4 characters, which several keys may share, and its fingerprint, which names it. */
function keyLabel(k: { last4: string; fingerprint: string | null }): string {
  return k.fingerprint ? `…${k.last4} (${k.fingerprint})` : `…${k.last4}`;
}
