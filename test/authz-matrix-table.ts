import type { ErrorCode } from '../src/errors.js';

/**
 * The expected answers of the object-level authorization matrix (issue #15), as data. test/authz-matrix.test.ts
 * calls every route of `server.routes` and every client event the gateway registers with each credential kind and
 * compares the answer with what this table says the policy SHOULD answer (not what some version of the code does).
 * A route or event without an entry here, or an entry without a route or event, fails the test.
 *
 * Credential kinds (application A is the caller's, B another tenant):
 *   none      no credential at all
 *   otherApp  B's API key (plus IM-CLIENT-ID: member on user routes, naming a user of A) - always on A's ids
 *   noToken   A's client key without a user token
 *   outsider  a user of A who is not a member of the room R
 *   banned    a member of R banned from R: a role below member
 *   member    a plain member of R;  manager: member with role "admin";  owner: R's owner
 *   apiKey    A's API key alone (the platform administrator)
 *   apiKeyAs  A's API key with IM-CLIENT-ID naming a plain member of R (only called on user and either routes)
 *   apiKeyAsBanned  A's API key with IM-CLIENT-ID naming the banned member (user and either routes). A ban binds
 *             the user it acts as, whoever submits (docs/chat.md, "A ban is a role"): in R it is banned like the
 *             member, for every room action but what the banned keep (leaving, their own state). The API key alone
 *             keeps every power of the platform.
 *
 * Targets: every kind is called on A's objects (R, its messages, A's users). A's member, owner, apiKey and apiKeyAs
 * are also called on B's objects (B's room, message, user, batch) where the route names an object: that answer
 * is `foreign`, and it must never carry B's data.
 */
export const KINDS = ['none', 'otherApp', 'noToken', 'outsider', 'banned', 'member', 'manager', 'owner', 'apiKey', 'apiKeyAs', 'apiKeyAsBanned'] as const;
export type Kind = (typeof KINDS)[number];
/** The kinds of A called on B's objects too. */
export const FOREIGN_KINDS: Kind[] = ['member', 'owner', 'apiKey', 'apiKeyAs'];

/** 'allow' is any 2xx; a deny is named by its error code (the status comes from src/errors.ts ERROR_STATUS). */
export type Expect = 'allow' | ErrorCode;

/**
 * Who a route lets through on A's objects, once authentication passed:
 *   public    anyone, no credential needed
 *   anyone    any authenticated caller (the route concerns the caller only, or the whole application)
 *   member / manager / owner   that room role or stronger in R (the platform passes every room check);
 *             below it: outsider 403 NOT_ROOM_MEMBER, banned 403 USER_BANNED, a weaker member 403 INSUFFICIENT_PERMISSIONS
 *   platform  the API key only (admin routes)
 */
export type Need = 'public' | 'anyone' | 'member' | 'manager' | 'owner' | 'platform';

export interface CaseSpec {
  /** Names one of several calls of the same route (e.g. removing another member vs leaving). */
  name: string;
  need: Need;
  /** A banned member is refused with 403 USER_BANNED unless this says allow (with a comment saying why). */
  banned?: 'allow';
  /** B's API key on A's ids: a not-found or a refusal, or 'allow' where the call acts in B's own namespace. */
  otherApp: Expect;
  /** A's credentials on B's ids; absent when the route names no object. */
  foreign?: Expect;
  /** Answers that differ from what `need` gives, per kind. */
  except?: Partial<Record<Kind, Expect>>;
}

const one = (spec: Omit<CaseSpec, 'name'>): CaseSpec[] => [{ name: 'default', ...spec }];

/**
 * Auth-level answers by the route's `auth` mode, before any object is looked at. 'route' means "see the route's
 * entry". apiKeyAs is not called on admin and public routes (IM-CLIENT-ID means nothing there).
 */
export const AUTH_LEVEL: Record<'admin' | 'user' | 'either' | 'public', Record<Kind, Expect | 'route' | 'skip'>> = {
  public: { none: 'allow', otherApp: 'allow', noToken: 'allow', outsider: 'allow', banned: 'allow', member: 'allow', manager: 'allow', owner: 'allow', apiKey: 'allow', apiKeyAs: 'skip', apiKeyAsBanned: 'skip' },
  admin: {
    none: 'MISSING_API_KEY',
    otherApp: 'route',
    noToken: 'INVALID_TOKEN',
    // A client key and user token never reach an admin route.
    outsider: 'INSUFFICIENT_PERMISSIONS',
    banned: 'INSUFFICIENT_PERMISSIONS',
    member: 'INSUFFICIENT_PERMISSIONS',
    manager: 'INSUFFICIENT_PERMISSIONS',
    owner: 'INSUFFICIENT_PERMISSIONS',
    apiKey: 'route',
    apiKeyAs: 'skip',
    apiKeyAsBanned: 'skip',
  },
  user: {
    none: 'MISSING_CLIENT_KEY',
    otherApp: 'route',
    noToken: 'INVALID_TOKEN',
    outsider: 'route',
    banned: 'route',
    member: 'route',
    manager: 'route',
    owner: 'route',
    // The API key must name the user it acts as.
    apiKey: 'INVALID_REQUEST',
    apiKeyAs: 'route',
    apiKeyAsBanned: 'route',
  },
  either: { none: 'MISSING_CLIENT_KEY', otherApp: 'route', noToken: 'INVALID_TOKEN', outsider: 'route', banned: 'route', member: 'route', manager: 'route', owner: 'route', apiKey: 'route', apiKeyAs: 'route', apiKeyAsBanned: 'route' },
};

/** Every route, by "METHOD url" exactly as in the route table. */
export const HTTP_MATRIX: Record<string, CaseSpec[]> = {
  // ------------------------------------------------------------ public
  'GET /healthz': one({ need: 'public', otherApp: 'allow' }),
  'GET /openapi.json': one({ need: 'public', otherApp: 'allow' }),
  'GET /docs': one({ need: 'public', otherApp: 'allow' }),

  // ------------------------------------------------------------ users (admin): B acts in its own namespace or finds nothing of A
  'POST /admin/clients': one({ need: 'platform', otherApp: 'allow' }),
  'POST /admin/clients/list': one({ need: 'platform', otherApp: 'allow' }),
  'GET /admin/clients': one({ need: 'platform', otherApp: 'allow' }),
  'DELETE /admin/clients/:id': one({ need: 'platform', otherApp: 'CLIENT_NOT_FOUND', foreign: 'CLIENT_NOT_FOUND' }),
  'PUT /admin/clients/:id/token': one({ need: 'platform', otherApp: 'CLIENT_NOT_FOUND', foreign: 'CLIENT_NOT_FOUND' }),
  'DELETE /admin/clients/:id/token': one({ need: 'platform', otherApp: 'CLIENT_NOT_FOUND', foreign: 'CLIENT_NOT_FOUND' }),
  // B's key naming A's user: B has no such user.
  'GET /me': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),
  'POST /me': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),

  // ------------------------------------------------------------ rooms
  // Creating a room is open to every user (the room is new, the caller owns it); B creates in B.
  'POST /rooms': one({ need: 'anyone', otherApp: 'allow' }),
  // createAndJoin on R (an open room) joins it: the outsider may; a banned member may not (a ban bars joining).
  // B's key with R's id creates a room of its own in B; A's callers with B's room id likewise create A's own room.
  'POST /rooms/createAndJoin': one({ need: 'member', otherApp: 'allow', foreign: 'allow', except: { outsider: 'allow' } }),
  // B's key naming A's user lists that id's rooms in B: none, never A's.
  'GET /rooms': one({ need: 'anyone', otherApp: 'allow' }),
  'GET /rooms/ids': one({ need: 'anyone', otherApp: 'allow' }),
  'GET /rooms/:id': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'PUT /rooms/:id': one({ need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'DELETE /rooms/:id': one({ need: 'owner', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  // Join an open room: the outsider may; members are members already (no-op); a ban bars joining.
  'POST /rooms/:id/join': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND', except: { outsider: 'allow' } }),
  // The SDKs set botState ("CONTACT" asks for a human agent) as members.
  'PUT /rooms/:id/bot': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /rooms/:id/count': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  // R is open: every member may add members.
  'POST /rooms/:id/members': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /rooms/:id/members/:uid': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /rooms/:id/delete/members': one({ need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'DELETE /rooms/:id/members/:uid': [
    { name: 'remove another member', need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
    // Leaving concerns only the leaver: a banned member may leave (the answer must carry none of the room's
    // messages). The outsider is not a member, so there is nothing to leave.
    { name: 'leave (own id)', need: 'member', banned: 'allow', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
  ],
  'PUT /rooms/:id/member/:client': [
    { name: 'role of another member', need: 'owner', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
    // A member property is shown to every member: a banned member writes nothing of the room's members.
    { name: 'own custom property', need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
  ],
  // A read receipt is fanned out to the members: refused to a banned member.
  'PUT /rooms/:id/lastRead': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),

  // ------------------------------------------------------------ invitations
  'GET /me/invitations': one({ need: 'anyone', otherApp: 'allow' }),
  'GET /rooms/:id/invitations': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  // In a fresh copy of R with a pending invitation for the caller when the caller is the outsider: accepting joins.
  // Members are members already (no-op); a ban bars joining even when invited.
  'POST /rooms/:id/invitations/accept': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND', except: { outsider: 'allow' } }),
  // Declining concerns only the invitee: only the outsider holds an invitation; everyone else has none to decline.
  'POST /rooms/:id/invitations/decline': one({
    need: 'anyone',
    otherApp: 'INVITATION_NOT_FOUND',
    foreign: 'INVITATION_NOT_FOUND',
    except: { banned: 'INVITATION_NOT_FOUND', member: 'INVITATION_NOT_FOUND', manager: 'INVITATION_NOT_FOUND', owner: 'INVITATION_NOT_FOUND', apiKeyAs: 'INVITATION_NOT_FOUND', apiKeyAsBanned: 'INVITATION_NOT_FOUND' },
  }),
  // Withdrawing another's invitation (made by the platform): managers and up.
  'DELETE /rooms/:id/invitations/:uid': one({ need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),

  // ------------------------------------------------------------ messages
  'POST /rooms/:id/message': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /messages': one({ need: 'platform', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /rooms/:id/messages/v3': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /rooms/:id/messages': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /rooms/:id/messages/:messageId': [
    { name: "R and R's message", need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
    // A's own room with B's message id: not a message of this room.
    { name: "R and B's message id", need: 'member', otherApp: 'ROOM_NOT_FOUND', except: { member: 'MESSAGE_NOT_FOUND', manager: 'MESSAGE_NOT_FOUND', owner: 'MESSAGE_NOT_FOUND', apiKey: 'MESSAGE_NOT_FOUND', apiKeyAs: 'MESSAGE_NOT_FOUND' } },
  ],
  'DELETE /rooms/:id/messages/:messageId': one({ need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /messages/:id/pin': one({ need: 'manager', otherApp: 'MESSAGE_NOT_FOUND', foreign: 'MESSAGE_NOT_FOUND' }),
  'DELETE /messages/:id/pin': one({ need: 'manager', otherApp: 'MESSAGE_NOT_FOUND', foreign: 'MESSAGE_NOT_FOUND' }),

  // ------------------------------------------------------------ preferences, typing, badges
  // Muting and room preferences concern only the caller's own notifications and view: a banned member keeps them.
  'POST /me/mute/:room': one({ need: 'member', banned: 'allow', otherApp: 'USER_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'DELETE /me/mute/:room': one({ need: 'member', banned: 'allow', otherApp: 'USER_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /roomPrefs/:id': one({ need: 'member', banned: 'allow', otherApp: 'USER_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /roomPrefs/:id/group/:tag': one({ need: 'member', banned: 'allow', otherApp: 'USER_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /me/pref': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),
  'POST /me/pref/:key': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),
  'DELETE /me/pref/:key': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),
  'POST /rooms/:id/typing': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /me/badge': one({ need: 'anyone', otherApp: 'allow' }),
  'POST /badges/byRoomTags': one({ need: 'anyone', otherApp: 'allow' }),

  // ------------------------------------------------------------ search, reactions, hiding
  'POST /search': [
    // Naming a room: only who may read it.
    { name: 'naming R', need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
    // Over the caller's rooms: always answered, never with R's messages for the outsider or the banned member.
    { name: "over the caller's rooms", need: 'anyone', otherApp: 'allow' },
  ],
  'POST /messages/search': one({ need: 'anyone', otherApp: 'allow' }),
  'GET /messages': [
    { name: 'naming R', need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' },
    { name: "over the caller's rooms", need: 'anyone', otherApp: 'allow' },
  ],
  'POST /messages/:id/reaction': one({ need: 'member', otherApp: 'MESSAGE_NOT_FOUND', foreign: 'MESSAGE_NOT_FOUND' }),
  // Removing one's own reaction still answers with the message: refused to a banned member.
  'DELETE /messages/:id/reaction': one({ need: 'member', otherApp: 'MESSAGE_NOT_FOUND', foreign: 'MESSAGE_NOT_FOUND' }),
  // Hiding checks that the ids are messages of R (an oracle of R's messages) and hide-all lists them: refused to a banned member.
  'POST /messages/user-delete': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  // The ids the caller hid themself: their own data, kept for a banned member.
  'GET /messages/user-delete': one({ need: 'member', banned: 'allow', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /messages/user-delete/all-in-room': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),

  // ------------------------------------------------------------ files (a file of R uploaded by its owner)
  // Uploading into R is sending there; a file of R is read by whoever reads R (and its uploader), deleted by its
  // uploader or whoever may delete R's messages. Another tenant's file is not found.
  'POST /files/:bucket': one({ need: 'member', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /files/:bucket/:id': one({ need: 'member', otherApp: 'FILE_NOT_FOUND', foreign: 'FILE_NOT_FOUND' }),
  'GET /files/:bucket/:id/metadata': one({ need: 'member', otherApp: 'FILE_NOT_FOUND', foreign: 'FILE_NOT_FOUND' }),
  'DELETE /files/:bucket/:id': one({ need: 'manager', otherApp: 'FILE_NOT_FOUND', foreign: 'FILE_NOT_FOUND' }),
  // Reads the upload's video facts; stores nothing without autoUpload.
  'POST /files/video-info': one({ need: 'anyone', otherApp: 'allow' }),

  // ------------------------------------------------------------ batch, groups
  'POST /messages/batch': one({ need: 'platform', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'GET /messages/batch/:batchID': one({ need: 'platform', otherApp: 'BATCH_NOT_FOUND', foreign: 'BATCH_NOT_FOUND' }),
  // B's group naming A's users: B has none of them.
  'POST /admin/groups': one({ need: 'platform', otherApp: 'USER_NOT_FOUND' }),
  'GET /admin/groups': one({ need: 'platform', otherApp: 'allow' }),

  // ------------------------------------------------------------ moderation
  'POST /blockStatus/my/:blockee': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND', foreign: 'USER_NOT_FOUND' }),
  'GET /blockStatus/my': one({ need: 'anyone', otherApp: 'allow' }),
  'GET /blockStatus/my/:blockee': one({ need: 'anyone', otherApp: 'BLOCK_NOT_FOUND', foreign: 'BLOCK_NOT_FOUND' }),
  'DELETE /blockStatus/my/:blockee': one({ need: 'anyone', otherApp: 'BLOCK_NOT_FOUND', foreign: 'BLOCK_NOT_FOUND' }),
  // Banning, listing and lifting bans: managers and up. The banned member lifting their own ban is refused.
  'POST /blockStatus/room/:roomID/:blockee': one({ need: 'manager', otherApp: 'ROOM_OR_USER_NOT_FOUND', foreign: 'ROOM_OR_USER_NOT_FOUND' }),
  'GET /blockStatus/room/:roomID': one({ need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'DELETE /blockStatus/room/:roomID/:blockee': one({ need: 'manager', otherApp: 'ROOM_NOT_FOUND', foreign: 'ROOM_NOT_FOUND' }),
  'POST /admin/clients/:uid/mute/:room': one({ need: 'platform', otherApp: 'CLIENT_NOT_FOUND', foreign: 'CLIENT_NOT_FOUND' }),
  'DELETE /admin/clients/:uid/mute/:room': one({ need: 'platform', otherApp: 'CLIENT_NOT_FOUND', foreign: 'CLIENT_NOT_FOUND' }),

  // ------------------------------------------------------------ runtime config, monitoring
  // Every user of the application reads its config (announcement, feature flags); B reads B's.
  'GET /config': one({ need: 'anyone', otherApp: 'allow' }),
  'POST /config': one({ need: 'platform', otherApp: 'allow' }),
  'DELETE /config/:key': one({ need: 'platform', otherApp: 'CONFIG_NOT_FOUND' }),
  'GET /admin/connection-count': one({ need: 'platform', otherApp: 'allow' }),

  // ------------------------------------------------------------ webhooks
  // B's key adds and lists in B's own namespace; it never finds A's endpoints or deliveries by id.
  'POST /admin/webhooks': one({ need: 'platform', otherApp: 'allow' }),
  'GET /admin/webhooks': one({ need: 'platform', otherApp: 'allow' }),
  'DELETE /admin/webhooks/:id': one({ need: 'platform', otherApp: 'WEBHOOK_NOT_FOUND', foreign: 'WEBHOOK_NOT_FOUND' }),
  'POST /admin/webhooks/:id/rotate-secret': one({ need: 'platform', otherApp: 'WEBHOOK_NOT_FOUND', foreign: 'WEBHOOK_NOT_FOUND' }),
  'GET /admin/webhooks/deliveries': one({ need: 'platform', otherApp: 'allow' }),
  'POST /admin/webhooks/deliveries/:id/retry': one({ need: 'platform', otherApp: 'DELIVERY_NOT_FOUND', foreign: 'DELIVERY_NOT_FOUND' }),
  // ------------------------------------------------------------ push (docs/push.md)
  // The caller's own devices (a body the service refuses still proves the call got through the guard: see bodies).
  'POST /me/subscribe': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),
  'POST /me/unsubscribe': one({ need: 'anyone', otherApp: 'USER_NOT_FOUND' }),
  'POST /push/push2clients': one({ need: 'platform', otherApp: 'allow' }),
  'POST /push/push2tokens': one({ need: 'platform', otherApp: 'allow' }),
  'PUT /admin/push/credentials/:provider': one({ need: 'platform', otherApp: 'allow' }),
  'GET /admin/push/credentials': one({ need: 'platform', otherApp: 'allow' }),
  'DELETE /admin/push/credentials/:provider': one({ need: 'platform', otherApp: 'PUSH_CREDENTIALS_NOT_FOUND' }),

  // ------------------------------------------------------------ API keys (only keys without scopes; see the scope test)
  'POST /admin/api-keys': one({ need: 'platform', otherApp: 'allow' }),
  'GET /admin/api-keys': one({ need: 'platform', otherApp: 'allow' }),
  'DELETE /admin/api-keys/:key': one({ need: 'platform', otherApp: 'KEY_NOT_FOUND', foreign: 'KEY_NOT_FOUND' }),
  'POST /admin/api-keys/:key/rotate': one({ need: 'platform', otherApp: 'KEY_NOT_FOUND', foreign: 'KEY_NOT_FOUND' }),
  // B's key reads B's own figures (never A's: the answer is checked for A's data).
  'GET /admin/stats': one({ need: 'platform', otherApp: 'allow' }),
  'GET /admin/usage': one({ need: 'platform', otherApp: 'allow' }),
  // B's key reads B's own audit log (never A's entries: the answer is checked for A's data).
  'GET /admin/audit': one({ need: 'platform', otherApp: 'allow' }),
  // B's key reads B's own alerts; acknowledging one of A's by B's key finds nothing.
  'GET /admin/alerts': one({ need: 'platform', otherApp: 'allow' }),
  'POST /admin/alerts/:id/acknowledge': one({ need: 'platform', otherApp: 'ALERT_NOT_FOUND', foreign: 'ALERT_NOT_FOUND' }),
  // Public in the route table, guarded by the operator's metrics token alone: no application credential opens it
  // (every kind without the token gets 401), and with the token every kind gets in, whatever else it sends.
  'GET /metrics': [
    { name: 'without the metrics token', need: 'public', otherApp: 'INVALID_TOKEN', except: Object.fromEntries(KINDS.map((k) => [k, 'INVALID_TOKEN'])) },
    { name: 'with the metrics token', need: 'public', otherApp: 'allow' },
  ],
};

const RANK: Record<string, number> = { outsider: 0, banned: 1, member: 2, manager: 3, owner: 4 };

/** The expected answer of one call, from the tables above. 'skip' = the kind is not called on this route. */
export function expectedAnswer(auth: 'admin' | 'user' | 'either' | 'public', spec: CaseSpec, kind: Kind, target: 'own' | 'foreign'): Expect | 'skip' {
  const level = AUTH_LEVEL[auth][kind];
  // A public route may still check a credential of its own (GET /metrics): its entry says so per kind.
  if (auth === 'public' && level !== 'skip' && spec.except?.[kind]) return spec.except[kind]!;
  if (level !== 'route') return level;
  if (target === 'foreign') return spec.foreign ?? 'skip';
  const special = spec.except?.[kind];
  if (special) return special;
  if (kind === 'otherApp') return spec.otherApp;
  switch (spec.need) {
    case 'public':
    case 'anyone':
    case 'platform':
      return 'allow';
    default: {
      if (kind === 'apiKey' || kind === 'apiKeyAs') return 'allow';
      if (kind === 'apiKeyAsBanned') return spec.banned === 'allow' ? 'allow' : 'USER_BANNED';
      if (kind === 'outsider') return 'NOT_ROOM_MEMBER';
      if (kind === 'banned') return spec.banned === 'allow' ? 'allow' : 'USER_BANNED';
      return RANK[kind]! >= RANK[spec.need]! ? 'allow' : 'INSUFFICIENT_PERMISSIONS';
    }
  }
}

// ------------------------------------------------------------------------------------------------ sockets

/**
 * Client events the gateway registers, and what each kind of socket gets. The socket kinds: `none` (connected,
 * never logged in), `otherApp` (its login with B's client key and A's member token is refused; it then logs in
 * as B's own user, so its room events on R are another tenant's), `noToken` (A's client key, no token), and
 * logged-in sockets of outsider, banned, member, manager, owner. For events without an ack (typing) the answer
 * is whether a member of R (who is none of the kinds) receives it. The test also checks what the banned
 * member's and the outsider's sockets receive of R (see SOCKET_DELIVERY).
 */
export type SocketKind = 'none' | 'otherApp' | 'noToken' | 'outsider' | 'banned' | 'member' | 'manager' | 'owner';
export const SOCKET_KINDS: SocketKind[] = ['none', 'otherApp', 'noToken', 'outsider', 'banned', 'member', 'manager', 'owner'];

/** Ack RC per kind: 0 = accepted; otherwise the RC and error code. */
export type SocketExpect = { rc: 0 } | { rc: number; error: ErrorCode };
const ok: SocketExpect = { rc: 0 };
const e = (error: ErrorCode, rc: number): SocketExpect => ({ rc, error });

export interface SocketEventSpec {
  /** On R (A's room), by socket kind. */
  onR: Record<SocketKind, SocketExpect>;
  /** On B's room, by A's member socket (never B's data); absent when the event names no room. */
  onB?: SocketExpect;
}

const notLoggedIn = e('INVALID_TOKEN', 401);

export const SOCKET_MATRIX: Record<string, SocketEventSpec> = {
  // Encoding choice: any socket, logged in or not.
  conf: { onR: { none: ok, otherApp: ok, noToken: ok, outsider: ok, banned: ok, member: ok, manager: ok, owner: ok } },
  // Login with the client key and a token: every user of A logs in (a ban is per room, not a logout);
  // B's client key with A's token and a missing token are refused.
  auth2: { onR: { none: e('MISSING_CLIENT_KEY', 401), otherApp: notLoggedIn, noToken: notLoggedIn, outsider: ok, banned: ok, member: ok, manager: ok, owner: ok } },
  // Legacy token-only login: off by default (issue #15), so refused to everyone with the default settings.
  auth: { onR: { none: notLoggedIn, otherApp: notLoggedIn, noToken: notLoggedIn, outsider: notLoggedIn, banned: notLoggedIn, member: notLoggedIn, manager: notLoggedIn, owner: notLoggedIn } },
  'chat message': {
    onR: { none: notLoggedIn, otherApp: e('ROOM_NOT_FOUND', 404), noToken: notLoggedIn, outsider: e('NOT_ROOM_MEMBER', 403), banned: e('USER_BANNED', 403), member: ok, manager: ok, owner: ok },
    onB: e('ROOM_NOT_FOUND', 404),
  },
  // typing has no ack: its answer is whether the other members receive it (checked with SOCKET_DELIVERY).
  typing: {
    onR: { none: notLoggedIn, otherApp: e('ROOM_NOT_FOUND', 404), noToken: notLoggedIn, outsider: e('NOT_ROOM_MEMBER', 403), banned: e('USER_BANNED', 403), member: ok, manager: ok, owner: ok },
    onB: e('ROOM_NOT_FOUND', 404),
  },
};

/** Server events about R that a member's socket receives and a banned member's (or outsider's) socket must not. */
export const SOCKET_DELIVERY = ['chat message', 'room', 'typing', 'lastRead'] as const;
