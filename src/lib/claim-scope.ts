import { AsyncLocalStorage } from 'node:async_hooks';

/** An idempotency key's claim (apps/idempotency-service.ts): whose key it is, and the key. */
export interface ClaimRef {
  appId: string;
  subject: string;
  key: string;
  /** Set by the message writer once a message of this request took the claim (one message per claim). */
  taken?: boolean;
}

/**
 * The claim of the request or socket send running now, for the message writer: the message it stores records its
 * id in the claim, in the same transaction (docs/reliability.md, Idempotency). Async context rather than a
 * parameter through every service between the transport and the writer: only sends with a key run inside one.
 */
const scope = new AsyncLocalStorage<ClaimRef>();

export function withClaim<T>(claim: ClaimRef, fn: () => Promise<T>): Promise<T> {
  return scope.run(claim, fn);
}

/** The current request's claim, for the first message it stores in application `appId`; then no more. */
export function takeClaim(appId: string): ClaimRef | undefined {
  const claim = scope.getStore();
  if (!claim || claim.taken || claim.appId !== appId) return undefined;
  claim.taken = true;
  return claim;
}
