import { randomBytes } from 'node:crypto';

/**
 * The one id generator: 24 hex characters, ObjectId-shaped (the first 8 are the Unix seconds, as clients and
 * `ObjectId(ts)` comparisons expect), then 3 for the milliseconds, 7 random per process, 6 of counter.
 * Within one process every id is strictly greater than the one before, as string and in time, so clients
 * can order messages by comparing ids.
 */
const processPart = randomBytes(4).toString('hex').slice(0, 7);
let counter = 0;
let last = '';

/** The first 11 characters of an id: the Unix seconds (8), then the milliseconds (3). */
function timePart(nowMs: number): string {
  return Math.floor(nowMs / 1000).toString(16).padStart(8, '0') + (nowMs % 1000).toString(16).padStart(3, '0');
}

export function newObjectId(nowMs: number = Date.now()): string {
  counter = (counter + 1) % 0x1000000;
  let id = timePart(nowMs) + processPart + counter.toString(16).padStart(6, '0');
  if (id <= last) id = increment(last);
  last = id;
  return id;
}

/**
 * The smallest id `newObjectId` can return for a time at or after `nowMs`: its seconds and milliseconds, then
 * zeros. Every id made at a later millisecond compares greater (ids never go back, see above), so "created after
 * T" can be looked up as an id range.
 */
export function objectIdFloor(nowMs: number): string {
  return timePart(Math.max(0, Math.floor(nowMs))) + '0'.repeat(13);
}

export function isObjectId(value: string): boolean {
  return /^[0-9a-f]{24}$/.test(value);
}

function increment(id: string): string {
  return (BigInt(`0x${id}`) + 1n).toString(16).padStart(24, '0');
}

/** An application id: 1-64 letters, digits, "_", "." or "-", starting with a letter or digit. */
export const APP_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
