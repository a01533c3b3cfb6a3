import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { io, type Socket } from 'socket.io-client';
import { errorText, request } from '../common';

/**
 * The web chat (/chat?token=T[&clientKey=K], docs/dashboard.md): a client of the server's own REST API and
 * Socket.IO protocol, as the SDKs are. Messages are sent, edited and recalled over the socket (`chat message`);
 * history, rooms and read marks over REST; after a reconnect, what was missed is read over REST.
 */

interface Msg {
  _id: string;
  room: string;
  message?: unknown;
  messageType: string;
  sender?: { _id: string; nickname?: string } | string | null;
  messageTimeMS?: number;
  editedAt?: string;
  /** Image messages (as the SDKs send them): the file's path on this server, and its thumbnail's. */
  originalUrl?: string;
  thumbnailUrl?: string;
  width?: number;
  height?: number;
}
interface Room {
  _id: string;
  name?: string;
  unread?: number;
  members?: Array<{ _id: string; nickname?: string } | string>;
  memberProperties?: Array<{ client: string; lastRead?: string }>;
  lastMessage?: Msg;
}

const params = new URLSearchParams(location.search);
const token = params.get('token') ?? '';
let clientKey = params.get('clientKey') ?? '';

const senderId = (m: Msg) => (typeof m.sender === 'string' ? m.sender : m.sender?._id ?? '');
const senderName = (m: Msg) => (typeof m.sender === 'object' && m.sender ? m.sender.nickname || m.sender._id : String(m.sender ?? 'system'));
const memberId = (m: Room['members'] extends Array<infer T> | undefined ? T : never) => (typeof m === 'string' ? m : m._id);
const roomName = (r: Room, me: string) =>
  r.name ||
  (r.members ?? [])
    .filter((m) => memberId(m) !== me)
    .map((m) => (typeof m === 'string' ? m : m.nickname || m._id))
    .join(', ') ||
  r._id;

function call<T = any>(method: string, url: string, body?: unknown): Promise<T> {
  return request<T>(method, url, { body, headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token } });
}

/**
 * An uploaded file as an <img>: a file is read with credentials, which an <img> cannot send, so the page asks for
 * a signed URL (GET ...?signedUrlOnly=1, docs/files.md) and shows that. Only paths of this server's file API are
 * asked for; anything else in a message is not loaded.
 */
const signed = new Map<string, Promise<string>>();
function SignedImage(props: { path: string; alt: string; width?: number; height?: number }) {
  const [src, setSrc] = useState<string>();
  useEffect(() => {
    if (!/^\/files\/[A-Za-z0-9._-]+\/[0-9a-f]{24}$/.test(props.path)) return;
    let p = signed.get(props.path);
    if (!p) {
      p = call<{ url: string }>('GET', `${props.path}?signedUrlOnly=1`).then((r) => r.url);
      signed.set(props.path, p);
      p.catch(() => signed.delete(props.path));
    }
    p.then(setSrc, () => setSrc(undefined));
  }, [props.path]);
  return src ? <img src={src} alt={props.alt} width={props.width} height={props.height} data-testid="image" /> : <span class="small muted">[image]</span>;
}

/** Merges messages by id, oldest first (message ids begin with their time). */
function merge(list: Msg[], more: Msg[]): Msg[] {
  const byId = new Map(list.map((m) => [m._id, m]));
  for (const m of more) byId.set(m._id, { ...byId.get(m._id), ...m });
  return [...byId.values()].sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
}

function Chat() {
  const [me, setMe] = useState<{ _id: string; nickname?: string }>();
  const [rooms, setRooms] = useState<Room[]>([]);
  const [current, setCurrent] = useState<string>();
  const [messages, setMessages] = useState<Msg[]>([]);
  const [complete, setComplete] = useState(false);
  const [typing, setTyping] = useState<string>();
  const [reads, setReads] = useState<Record<string, string>>({});
  const [text, setText] = useState('');
  const [editing, setEditing] = useState<string>();
  const [status, setStatus] = useState('connecting…');
  const [error, setError] = useState<string>();
  const socket = useRef<Socket | undefined>(undefined);
  const currentRef = useRef<string | undefined>(undefined);
  const meRef = useRef<string | undefined>(undefined);
  const historyRef = useRef<HTMLDivElement>(null);
  const stickToBottom = useRef(true);
  const typingTimer = useRef<number | undefined>(undefined);
  const lastTypingSent = useRef(0);
  currentRef.current = current;

  const loadRooms = async () => {
    const r = await call('GET', '/rooms?limit=100&sort=-lastMessage');
    setRooms(r.data ?? r);
  };

  const markRead = async (roomId: string, list: Msg[]) => {
    const last = list[list.length - 1];
    if (!last || document.visibilityState === 'hidden') return;
    await call('PUT', `/rooms/${encodeURIComponent(roomId)}/lastRead`, { message: last._id }).catch(() => undefined);
    setRooms((rs) => rs.map((r) => (r._id === roomId ? { ...r, unread: 0 } : r)));
  };

  // Sign in: the client key (asked of the server when the URL has none), the user, the rooms, the socket.
  useEffect(() => {
    (async () => {
      if (!token) throw new Error('Open this page as /chat?token=USER_TOKEN');
      if (!clientKey) clientKey = (await request('POST', '/chat/api/client-key', { headers: { 'IM-Authorization': token } })).clientKey;
      const user = await call('GET', '/me');
      setMe(user);
      meRef.current = user._id;
      await loadRooms();
      const s = io(location.origin, { transports: ['websocket'] });
      socket.current = s;
      let connectedBefore = false;
      s.on('connect', () => {
        s.emit('auth2', token, { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token }, async (ack: any) => {
          if (ack?.RC !== 0) {
            setStatus(`not signed in: ${ack?.RM ?? 'refused'}`);
            return;
          }
          setStatus('connected');
          if (connectedBefore) await resync();
          connectedBefore = true;
        });
      });
      s.on('disconnect', () => setStatus('offline: reconnecting…'));
      s.on('chat message', (m: Msg) => {
        if (m.room === currentRef.current) {
          setMessages((list) => {
            const next = merge(list, [m]);
            if (senderId(m) !== meRef.current) void markRead(m.room, next);
            return next;
          });
        }
        setRooms((rs) => {
          const known = rs.some((r) => r._id === m.room);
          if (!known) void loadRooms();
          return rs.map((r) =>
            r._id === m.room ? { ...r, lastMessage: m, unread: m.room === currentRef.current || senderId(m) === meRef.current ? r.unread : (r.unread ?? 0) + (m.editedAt ? 0 : 1) } : r,
          );
        });
      });
      s.on('typing', (t: any) => {
        if (t.room !== currentRef.current) return;
        setTyping(t.senderInfo?.nickname || t.sender);
        clearTimeout(typingTimer.current);
        typingTimer.current = window.setTimeout(() => setTyping(undefined), 3000);
      });
      s.on('lastRead', (r: any) => {
        if (r.roomID === currentRef.current && r.memberID !== meRef.current) setReads((old) => ({ ...old, [r.memberID]: r.messageID }));
      });
      s.on('room', () => void loadRooms());
    })().catch((err) => setError(errorText(err)));
    return () => socket.current?.close();
  }, []);

  /** After a reconnect: the rooms again, and the open room's messages after the last one shown. */
  const resync = async () => {
    await loadRooms();
    const roomId = currentRef.current;
    if (!roomId) return;
    let list: Msg[] = [];
    setMessages((l) => (list = l));
    const last = list[list.length - 1];
    const r = await call('GET', `/rooms/${encodeURIComponent(roomId)}/messages/v3?limit=100&sortOrder=asc${last ? `&afterMessage=${last._id}` : ''}`);
    const next = merge(list, r.data ?? []);
    setMessages(next);
    void markRead(roomId, next);
  };

  const openRoom = async (roomId: string) => {
    setCurrent(roomId);
    currentRef.current = roomId;
    setMessages([]);
    setComplete(false);
    setTyping(undefined);
    setEditing(undefined);
    stickToBottom.current = true;
    try {
      const [room, history] = await Promise.all([call('GET', `/rooms/${encodeURIComponent(roomId)}`), call('GET', `/rooms/${encodeURIComponent(roomId)}/messages/v3?limit=30`)]);
      const reads: Record<string, string> = {};
      for (const p of (room as Room).memberProperties ?? []) if (p.client !== meRef.current && p.lastRead) reads[p.client] = p.lastRead;
      setReads(reads);
      const list = merge([], history.data ?? []);
      setMessages(list);
      setComplete((history.data ?? []).length < 30);
      void markRead(roomId, list);
    } catch (err) {
      setError(errorText(err));
    }
  };

  /** Infinite scroll back: older messages when the history is scrolled to its top. */
  const loadOlder = async () => {
    const roomId = currentRef.current;
    const oldest = messages[0];
    if (!roomId || !oldest || complete) return;
    const el = historyRef.current!;
    const before = el.scrollHeight;
    const r = await call('GET', `/rooms/${encodeURIComponent(roomId)}/messages/v3?limit=30&beforeMessage=${oldest._id}`);
    const older: Msg[] = r.data ?? [];
    if (older.length < 30) setComplete(true);
    stickToBottom.current = false;
    setMessages((list) => merge(list, older));
    requestAnimationFrame(() => (el.scrollTop += el.scrollHeight - before));
  };

  useEffect(() => {
    const el = historyRef.current;
    if (el && stickToBottom.current) el.scrollTop = el.scrollHeight;
  }, [messages]);

  const emit = (payload: Record<string, unknown>) =>
    new Promise<void>((resolve, reject) =>
      socket.current!.timeout(10_000).emit('chat message', payload, (err: unknown, ack: any) => {
        if (err) return reject(new Error('The server did not answer'));
        if (ack?.RC !== 0) return reject(new Error(ack?.message ?? ack?.RM ?? 'refused'));
        resolve();
      }),
    );

  const send = async (e: Event) => {
    e.preventDefault();
    if (!current || !text.trim()) return;
    setError(undefined);
    stickToBottom.current = true;
    try {
      if (editing) await emit({ _id: editing, room: current, message: text, messageType: 'text' });
      else await emit({ room: current, message: text, messageType: 'text' });
      setText('');
      setEditing(undefined);
    } catch (err) {
      setError(errorText(err));
    }
  };

  // An image: uploaded to the SDKs' default bucket for this room (multipart, `extra` first, then `file`), then sent
  // as an `image` message carrying the file's and its thumbnail's paths and the dimensions the server measured.
  const upload = async (file: File | undefined) => {
    if (!current || !file) return;
    setError(undefined);
    stickToBottom.current = true;
    try {
      const form = new FormData();
      form.append('extra', JSON.stringify({ roomId: current }));
      form.append('file', file, file.name);
      const res = await fetch('/files/chatserver-upload', { method: 'POST', body: form, headers: { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token }, cache: 'no-store' });
      const json = (await res.json().catch(() => undefined)) as any;
      if (!res.ok || json?.RC !== 0) throw new Error(json?.message ?? `Upload failed (HTTP ${res.status})`);
      const f = json.result;
      await emit({
        room: current,
        messageType: 'image',
        message: file.name,
        originalUrl: f.url,
        ...(f.thumbnailUrl ? { thumbnailUrl: f.thumbnailUrl } : {}),
        ...(typeof f.width === 'number' ? { width: f.width, height: f.height } : {}),
      });
    } catch (err) {
      setError(errorText(err));
    }
  };

  const room = rooms.find((r) => r._id === current);
  const myId = me?._id ?? '';
  const readBy = (m: Msg) => Object.entries(reads).filter(([, id]) => id >= m._id).map(([u]) => u);
  return (
    <div class="chat">
      <aside aria-label="Rooms">
        <header>
          {me ? me.nickname || me._id : '…'} <span class="small muted" data-testid="status">{status}</span>
        </header>
        {rooms.map((r) => (
          <button type="button" key={r._id} class={`room${r._id === current ? ' active' : ''}`} data-room={r._id} onClick={() => void openRoom(r._id)}>
            <span class="name">{roomName(r, myId)}</span>
            {(r.unread ?? 0) > 0 && (
              <span class="badge" data-testid="unread">
                {r.unread}
              </span>
            )}
          </button>
        ))}
      </aside>
      <section aria-label="Conversation">
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {room ? (
          <>
            <div class="status">{roomName(room, myId)}</div>
            <div
              class="history"
              ref={historyRef}
              data-testid="history"
              onScroll={(e) => {
                const el = e.currentTarget;
                stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
                if (el.scrollTop < 30) void loadOlder();
              }}
            >
              {complete && <p class="small muted">Beginning of the conversation</p>}
              {messages.map((m) => {
                const mine = senderId(m) === myId;
                const recalled = m.messageType === 'recall';
                const readers = mine ? readBy(m) : [];
                return (
                  <div key={m._id} class={`msg${mine ? ' mine' : ''}${recalled ? ' recalled' : ''}`} data-id={m._id}>
                    <div class="meta">
                      {senderName(m)} · {m.messageTimeMS ? new Date(m.messageTimeMS).toLocaleTimeString() : ''}
                      {m.editedAt && !recalled ? ' · edited' : ''}
                    </div>
                    <div class="body">
                      {recalled ? (
                        'This message was recalled'
                      ) : m.messageType === 'text' ? (
                        String(m.message ?? '')
                      ) : m.messageType === 'image' && typeof (m.thumbnailUrl ?? m.originalUrl) === 'string' ? (
                        <SignedImage path={(m.thumbnailUrl ?? m.originalUrl)!} alt={String(m.message ?? 'image')} />
                      ) : (
                        `[${m.messageType}]`
                      )}
                    </div>
                    {mine && !recalled && (
                      <div class="actions">
                        <button
                          type="button"
                          onClick={() => {
                            setEditing(m._id);
                            setText(String(m.message ?? ''));
                          }}
                        >
                          Edit
                        </button>
                        <button type="button" onClick={() => void emit({ _id: m._id, room: m.room, messageType: 'recall' }).catch((err) => setError(errorText(err)))}>
                          Recall
                        </button>
                        {readers.length > 0 && <span class="small muted" data-testid="read">Read</span>}
                      </div>
                    )}
                  </div>
                );
              })}
            </div>
            <div class="typing" data-testid="typing" aria-live="polite">
              {typing ? `${typing} is typing…` : ''}
            </div>
            <form class="compose" onSubmit={send}>
              <input
                aria-label={editing ? 'Edit message' : 'Message'}
                name="message"
                value={text}
                autocomplete="off"
                onInput={(e) => {
                  setText(e.currentTarget.value);
                  const now = Date.now();
                  if (now - lastTypingSent.current > 2000 && current) {
                    lastTypingSent.current = now;
                    socket.current?.emit('typing', current);
                  }
                }}
              />
              {editing && (
                <button
                  type="button"
                  onClick={() => {
                    setEditing(undefined);
                    setText('');
                  }}
                >
                  Cancel
                </button>
              )}
              {!editing && (
                <label class="button" title="Send an image">
                  Image
                  <input
                    type="file"
                    accept="image/*"
                    hidden
                    data-testid="image-input"
                    onChange={(e) => {
                      const input = e.currentTarget;
                      void upload(input.files?.[0]).finally(() => (input.value = ''));
                    }}
                  />
                </label>
              )}
              <button class="primary" type="submit">
                {editing ? 'Save' : 'Send'}
              </button>
            </form>
          </>
        ) : (
          <p class="muted" style="padding:16px">
            Choose a room.
          </p>
        )}
      </section>
    </div>
  );
}

render(<Chat />, document.getElementById('root')!);
