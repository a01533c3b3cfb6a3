import { AppError } from '../errors.js';

/**
 * Nesting depth is bounded before anything recurses over a value (JSON.stringify, the renderers, Ajv): a body
 * nested some thousands of levels deep overflows the stack of every recursive walk. Both checks below are
 * loops with no recursion, so they are safe on any input.
 */

/** Whether JSON text nests arrays and objects deeper than `limit`; a linear scan that skips strings. */
export function jsonTextTooDeep(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > limit) return true;
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return false;
}

/**
 * Whether a parsed value (a socket payload) nests arrays and objects deeper than `limit`. Payloads come off the
 * wire as trees (no cycles), so no visited set is kept; binary attachments (Buffers) are leaves. Runs on every
 * client event, so it allocates only its two stacks.
 */
export function valueTooDeep(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: object[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop()!;
    const depth = depths.pop()!;
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) continue;
    if (Array.isArray(v)) {
      for (const child of v) {
        if (typeof child !== 'object' || child === null) continue;
        if (depth + 1 > limit) return true;
        stack.push(child);
        depths.push(depth + 1);
      }
    } else {
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        const child = (v as Record<string, unknown>)[key];
        if (typeof child !== 'object' || child === null) continue;
        if (depth + 1 > limit) return true;
        stack.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}

export function tooDeep(limit: number): AppError {
  return new AppError('INVALID_REQUEST', `JSON is nested too deeply: at most ${limit} levels of arrays and objects`, { maxDepth: limit });
}
