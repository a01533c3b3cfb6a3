import { invalidRequest } from '../errors.js';

/**
 * What one push says, whatever the provider: the fields of IMKIT's push payload (spec §3.11: `type`, `expiry`,
 * `alert`, `badge`, `sound`, `topic`, `title`, `body`, `icon`, `collapseKey`) and the string data a chat push carries.
 * Each provider renders it in its own format (src/push/providers.ts); docs/push.md shows the result.
 */
export interface Notice {
  type?: string;
  /** Unix seconds after which the push is no longer worth delivering (APNs apns-expiration, FCM ttl, Web Push TTL). */
  expiry?: number;
  alert?: string | { 'loc-key'?: string; 'loc-args'?: string[] };
  badge?: number;
  sound?: string;
  topic?: string;
  title?: string;
  body?: string;
  icon?: string;
  collapseKey?: string;
  /** FCM `click_action` (chat pushes: "push_chatroom"). */
  clickAction?: string;
  /** String data for the app (FCM `data`, top-level keys of the APNs payload, `data` of a web notification). */
  data?: Record<string, string>;
}

const STRING_FIELDS = ['type', 'sound', 'topic', 'title', 'body', 'icon', 'collapseKey'] as const;
const MAX_TEXT = 4_000;

/**
 * Checks a `payload` of POST /push/push2clients or /push/push2tokens (field by field, every value hostile) and
 * answers the notice it stands for. `badge` may be a number or a digit string (spec §6.9: both were seen).
 */
export function noticeFromPayload(payload: Record<string, unknown>): Notice {
  const out: Notice = {};
  const bad = (field: string, what: string) => invalidRequest(`Invalid field payload.${field}: ${what}`, { field: `payload.${field}` });
  for (const k of STRING_FIELDS) {
    const v = payload[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || v.length > MAX_TEXT) throw bad(k, `must be a string of at most ${MAX_TEXT} characters`);
    out[k] = v;
  }
  if (payload.expiry !== undefined && payload.expiry !== null) {
    if (typeof payload.expiry !== 'number' || !Number.isSafeInteger(payload.expiry) || payload.expiry < 0) throw bad('expiry', 'must be a Unix time in seconds');
    out.expiry = payload.expiry;
  }
  if (payload.badge !== undefined && payload.badge !== null) {
    const b = typeof payload.badge === 'string' && /^\d{1,9}$/.test(payload.badge) ? Number(payload.badge) : payload.badge;
    if (typeof b !== 'number' || !Number.isSafeInteger(b) || b < 0 || b > 999_999_999) throw bad('badge', 'must be a whole number from 0');
    out.badge = b;
  }
  const alert = payload.alert;
  if (alert !== undefined && alert !== null) {
    if (typeof alert === 'string') {
      if (alert.length > MAX_TEXT) throw bad('alert', `must have at most ${MAX_TEXT} characters`);
      out.alert = alert;
    } else if (typeof alert === 'object' && !Array.isArray(alert)) {
      const a = alert as Record<string, unknown>;
      const key = a['loc-key'];
      const args = a['loc-args'];
      if (key !== undefined && (typeof key !== 'string' || key.length > 256)) throw bad('alert.loc-key', 'must be a string of at most 256 characters');
      if (args !== undefined && (!Array.isArray(args) || args.length > 20 || args.some((x) => typeof x !== 'string' || x.length > MAX_TEXT))) {
        throw bad('alert.loc-args', 'must be an array of at most 20 strings');
      }
      out.alert = { ...(key !== undefined ? { 'loc-key': key as string } : {}), ...(args !== undefined ? { 'loc-args': args as string[] } : {}) };
    } else throw bad('alert', 'must be a string or an object with loc-key and loc-args');
  }
  return out;
}

/** Text cut to `max` characters (a push shows a line or two; providers refuse payloads over 4 KB). */
export function preview(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * The push of a new chat message, as IMKIT's chat pushes are shaped ([wiki], spec §3.11): `loc-key`
 * `im_loc_<messageType>` with `loc-args` [sender's nickname, text], category `chatroom_chat:<room>`, click action
 * `push_chatroom`, and the message itself as `payload` in the data (left out when it would not fit).
 */
export function chatNotice(m: { roomId: string; roomName: string | null; messageId: string; messageType: string; senderName: string; text: string; message: Record<string, unknown> }, badge: number | undefined, expiry: number): Notice {
  const text = preview(m.text);
  const locArgs = [m.senderName, text];
  const data: Record<string, string> = {
    'loc-key': `im_loc_${m.messageType}`,
    'loc-args': JSON.stringify(locArgs),
    type: `chatroom_chat:${m.roomId}`,
    roomID: m.roomId,
    messageID: m.messageId,
  };
  const payload = JSON.stringify(m.message);
  // APNs and FCM take 4 KB; what else the push carries stays well under 1 KB.
  if (Buffer.byteLength(payload) <= 2_500) data.payload = payload;
  return {
    type: `chatroom_chat:${m.roomId}`,
    expiry,
    alert: { 'loc-key': `im_loc_${m.messageType}`, 'loc-args': locArgs },
    ...(badge !== undefined ? { badge } : {}),
    sound: 'default',
    title: m.roomName && m.roomName !== m.senderName ? `${m.senderName} @ ${m.roomName}` : m.senderName,
    body: text,
    clickAction: 'push_chatroom',
    collapseKey: m.roomId,
    data,
  };
}

/** The text a message shows in a push: its `message` when a string, else its type in brackets ("[image]"). */
export function messageText(message: unknown, messageType: string): string {
  if (typeof message === 'string' && message.length > 0 && messageType !== 'encrypted') return message;
  return `[${messageType}]`;
}
