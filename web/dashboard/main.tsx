import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, errorText, request, when } from '../common';
import { api, type Operator, setCsrf } from './api';
import { AlertsBanner } from './alerts';
import { AppLayout } from './app-pages';
import { ErrorLine, Link, navigate, ShownOnce } from './ui';

/** The dashboard (docs/dashboard.md): one page, routed by its path under /dashboard. */

function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return path;
}

function Login(props: { onLogin: (op: Operator) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <main class="login card">
      <h1>imkit-server dashboard</h1>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          try {
            const r = await request('POST', '/dashboard/api/login', { body: { email, password } });
            setCsrf(r.csrfToken);
            props.onLogin(r.operator);
          } catch (err) {
            setError(errorText(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label>
          <span>Email</span>
          <input type="email" name="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          <span>Password</span>
          <input type="password" name="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>
          Log in
        </button>
      </form>
      <p class="small muted">
        No account yet? The first operator comes from the setup link <code>imkit-server start</code> prints, from <code>imkit-server operator create</code>, or from
        IMKIT_ADMIN_EMAIL and IMKIT_ADMIN_PASSWORD.
      </p>
    </main>
  );
}

function Setup(props: { onLogin: (op: Operator) => void }) {
  // The token is in the fragment, which the browser never sends to the server; it is read once and removed.
  const [token] = useState(() => new URLSearchParams(location.hash.slice(1)).get('token') ?? '');
  useEffect(() => history.replaceState(null, '', '/dashboard/setup'), []);
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [again, setAgain] = useState('');
  const [error, setError] = useState<string>();
  return (
    <main class="login card">
      <h1>Create the first operator</h1>
      {!token && <p class="error">This link has no setup token. Use the link that imkit-server start printed.</p>}
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (password !== again) return setError('The passwords differ');
          try {
            const r = await request('POST', '/dashboard/api/setup', { body: { token, email, password } });
            setCsrf(r.csrfToken);
            props.onLogin(r.operator);
            navigate('/dashboard');
          } catch (err) {
            setError(errorText(err));
          }
        }}
      >
        <label>
          <span>Email</span>
          <input type="email" name="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          <span>Password (12 characters or more)</span>
          <input type="password" name="password" autocomplete="new-password" minLength={12} required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <label>
          <span>Password again</span>
          <input type="password" name="again" autocomplete="new-password" minLength={12} required value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
        </label>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={!token}>
          Create operator
        </button>
      </form>
    </main>
  );
}

interface AppSummary {
  id: string;
  name: string;
  domains: string[];
  createdAt: string;
  apiKeys: Array<{ status: string }>;
}

function Apps() {
  const [apps, setApps] = useState<AppSummary[]>();
  const [error, setError] = useState<string>();
  const [name, setName] = useState('');
  const [id, setId] = useState('');
  const [created, setCreated] = useState<{ id: string; apiKey: string; clientKey: string }>();
  const load = useCallback(() => api('GET', '/dashboard/api/apps').then((r) => setApps(r.data), (e) => setError(errorText(e))), []);
  useEffect(() => void load(), [load]);
  return (
    <div>
      <h1>Applications</h1>
      <AlertsBanner />
      {created && (
        <div>
          <ShownOnce label={`API key of ${created.id}`} value={created.apiKey} testid="new-app-api-key" onDone={() => setCreated(undefined)} />
          <p>
            Client key (shown again on the application's API Settings): <code data-testid="new-app-client-key">{created.clientKey}</code>
          </p>
        </div>
      )}
      <ErrorLine error={error} />
      <div class="card">
        <table>
          <thead>
            <tr>
              <th>Id</th>
              <th>Name</th>
              <th>Domains</th>
              <th>Live API keys</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {apps?.map((a) => (
              <tr key={a.id}>
                <td>
                  <Link href={`/dashboard/apps/${encodeURIComponent(a.id)}/keys`}>{a.id}</Link>
                </td>
                <td>{a.name}</td>
                <td>{a.domains.join(', ') || <span class="muted">any</span>}</td>
                <td>{a.apiKeys.filter((k) => k.status === 'live' || k.status === 'expiring').length}</td>
                <td>{when(a.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <form
        class="card"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          try {
            const r = await api('POST', '/dashboard/api/apps', { name, ...(id ? { id } : {}) });
            setCreated(r);
            setName('');
            setId('');
            await load();
          } catch (err) {
            setError(errorText(err));
          }
        }}
      >
        <h2>New application</h2>
        <div class="row">
          <label class="grow">
            <span>Name</span>
            <input name="name" required maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label>
            <span>Id (optional)</span>
            <input name="id" maxLength={64} value={id} onInput={(e) => setId(e.currentTarget.value)} />
          </label>
        </div>
        <button class="primary" type="submit">
          Create application
        </button>
      </form>
    </div>
  );
}

function Shell(props: { operator: Operator; onLogout: () => void; children: any; nav?: any }) {
  return (
    <div class="shell">
      <nav aria-label="Dashboard">
        <Link href="/dashboard" class="brand">
          imkit-server
        </Link>
        <Link href="/dashboard" class="item">
          Applications
        </Link>
        {props.nav}
      </nav>
      <main>
        <div class="topbar">
          <span />
          <span class="row">
            <span class="muted" data-testid="operator">
              {props.operator.email}
            </span>
            <button
              type="button"
              onClick={async () => {
                await api('POST', '/dashboard/api/logout').catch(() => undefined);
                props.onLogout();
              }}
            >
              Log out
            </button>
          </span>
        </div>
        {props.children}
      </main>
    </div>
  );
}

function Root() {
  const path = usePath();
  const [operator, setOperator] = useState<Operator | null | undefined>(undefined);
  useEffect(() => {
    request('GET', '/dashboard/api/session').then(
      (r) => {
        if (r.operator) setCsrf(r.csrfToken);
        setOperator(r.operator ?? null);
      },
      (err) => {
        if (!(err instanceof ApiError) || err.status !== 401) console.warn(err);
        setOperator(null);
      },
    );
  }, []);
  if (path === '/dashboard/setup') return <Setup onLogin={setOperator} />;
  if (operator === undefined) return <p class="muted">Loading…</p>;
  if (operator === null) return <Login onLogin={setOperator} />;
  const onLogout = () => {
    setOperator(null);
    navigate('/dashboard');
  };
  const m = /^\/dashboard\/apps\/([^/]+)(?:\/([a-z-]+))?/.exec(path);
  if (m) {
    const appId = decodeURIComponent(m[1]!);
    return <AppLayout appId={appId} page={m[2] ?? 'keys'} shell={(nav, body) => <Shell operator={operator} onLogout={onLogout} nav={nav} children={body} />} />;
  }
  return (
    <Shell operator={operator} onLogout={onLogout}>
      <Apps />
    </Shell>
  );
}

render(<Root />, document.getElementById('root')!);
