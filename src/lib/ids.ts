import { randomBytes } from 'node:crypto';

/**
 * The one id generator: 24-hex, ObjectId-shaped (4 bytes of seconds, 5 random bytes fixed per process,
 * 3 bytes of counter), so ids sort by creation time like the ids IMKIT clients already see.
 */
const processPart = randomBytes(5).toString('hex');
let counter = randomBytes(3).readUIntBE(0, 3);

export function newObjectId(nowMs: number = Date.now()): string {
  counter = (counter + 1) % 0x1000000;
  const seconds = Math.floor(nowMs / 1000).toString(16).padStart(8, '0');
  return seconds + processPart + counter.toString(16).padStart(6, '0');
}

export function isObjectId(value: string): boolean {
  return /^[0-9a-f]{24}$/.test(value);
}
