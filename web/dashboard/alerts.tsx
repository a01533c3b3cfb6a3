import { useEffect, useState } from 'preact/hooks';
import { errorText, when } from '../common';
import { api } from './api';

/** Key anomaly alerts as GET /admin/alerts and GET /dashboard/api/alerts answer them (docs/security.md, Alerts). */
interface Alert {
  _id: string;
  at: string;
  kind: 'key.new_address' | 'key.rate_jump' | 'key.invalid_keys' | string;
  key: { id: string; fingerprint: string | null; last4: string | null } | null;
  ip: string | null;
  detail: Record<string, unknown>;
}

function describe(a: Alert): string {
  const key = a.key ? `API key ${a.key.fingerprint ?? a.key.id} (…${a.key.last4 ?? ''})` : '';
  switch (a.kind) {
    case 'key.new_address':
      return `${key} was used from ${a.ip}, an address it had never been used from.`;
    case 'key.rate_jump':
      return `${key} made ${String(a.detail.requestsThisMinute)} requests in a minute, far above its usual ${String(a.detail.baselinePerMinute)} per minute.`;
    case 'key.invalid_keys': {
      const revoked = Array.isArray(a.detail.revokedKeys) && a.detail.revokedKeys.length ? ` Among them revoked or expired keys: ${a.detail.revokedKeys.join(', ')}.` : '';
      return `${a.ip} sent ${String(a.detail.attempts)} invalid API keys within ${String(a.detail.windowMinutes)} minutes.${revoked}`;
    }
    default:
      return a.kind;
  }
}

/**
 * The banner of open alerts: the application's (`appId`, through the admin routes), or the server's own (no
 * `appId`). Each can be acknowledged; it then leaves the banner and stays in the list and the audit log.
 */
export function AlertsBanner(props: { appId?: string }) {
  const { appId } = props;
  const [alerts, setAlerts] = useState<Alert[]>([]);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<string>();
  const load = async () => {
    try {
      const r = appId === undefined ? await api('GET', '/dashboard/api/alerts') : await api('GET', '/admin/alerts?open=true&limit=5', undefined, appId);
      setAlerts(r.data);
      setTotal(r.totalCount);
      setError(undefined);
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), [appId]);
  const acknowledge = async (id: string) => {
    try {
      if (appId === undefined) await api('POST', `/dashboard/api/alerts/${id}/acknowledge`);
      else await api('POST', `/admin/alerts/${id}/acknowledge`, undefined, appId);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };
  if (!alerts.length && !error) return null;
  return (
    <div class="notice alerts" role="alert" data-testid="alerts">
      {error && <p class="error">{error}</p>}
      {alerts.length > 0 && (
        <strong>
          {total} open {appId === undefined ? 'server' : 'key'} alert{total === 1 ? '' : 's'}
        </strong>
      )}
      <ul>
        {alerts.map((a) => (
          <li key={a._id} data-testid="alert">
            <span>
              {when(a.at)}: {describe(a)}
            </span>{' '}
            <button type="button" onClick={() => void acknowledge(a._id)}>
              Acknowledge
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
