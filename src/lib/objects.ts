/**
 * Adds the custom fields a stored object carries (a message's extra keys, a user's or room's custom fields) to a
 * rendered object, without replacing what the object already has: the same result as `{ ...custom, ...fixed }`.
 * Written out because V8 (Node 20) builds `{ ...custom, a, b, c, ... }` on a slow path when `custom` varies in
 * shape: about 14 µs per message object against 0.1 µs for this loop, measured with bench-like objects.
 * `__proto__` as an own key (JSON.parse makes one) is skipped: assigning it would change the prototype.
 */
export function withCustom<T extends Record<string, unknown>>(out: T, custom: Record<string, unknown>): T {
  for (const key in custom) {
    if (key === '__proto__' || Object.prototype.hasOwnProperty.call(out, key) || !Object.prototype.hasOwnProperty.call(custom, key)) continue;
    (out as Record<string, unknown>)[key] = custom[key];
  }
  return out;
}
