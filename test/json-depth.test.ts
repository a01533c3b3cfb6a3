import { describe, expect, it } from 'vitest';
import { jsonTextTooDeep, valueTooDeep } from '../src/lib/json-depth.js';

const nested = (levels: number, leaf: unknown = 1): unknown => {
  let v: unknown = leaf;
  for (let i = 0; i < levels; i++) v = i % 2 ? [v] : { a: v };
  return v;
};

describe('depth checks (no recursion)', () => {
  it('counts levels of arrays and objects the same way in text and in values, up to the limit and one past it', () => {
    for (const levels of [1, 2, 31, 32, 33, 100]) {
      const value = nested(levels);
      expect(valueTooDeep(value, 32), `value ${levels}`).toBe(levels > 32);
      expect(jsonTextTooDeep(JSON.stringify(value), 32), `text ${levels}`).toBe(levels > 32);
    }
    expect(valueTooDeep('plain', 1)).toBe(false);
    expect(valueTooDeep({ a: 1, b: 'x' }, 1)).toBe(false);
    expect(valueTooDeep({ a: {} }, 1)).toBe(true);
  });

  it('brackets inside strings are text, not nesting; escaped quotes do not end a string', () => {
    expect(jsonTextTooDeep(JSON.stringify({ s: '[[[[{{{{"\\\\"' }), 2)).toBe(false);
    expect(jsonTextTooDeep('{"s":"\\"[[[[","t":{}}', 2)).toBe(false);
    expect(jsonTextTooDeep('{"s":"\\"","t":{"u":{}}}', 2)).toBe(true);
  });

  it('a binary attachment is a leaf, whatever its size; 100,000 levels are answered without a stack overflow', () => {
    expect(valueTooDeep({ file: Buffer.alloc(1_000_000) }, 2)).toBe(false);
    expect(valueTooDeep(nested(100_000), 32)).toBe(true);
    expect(jsonTextTooDeep('['.repeat(100_000) + ']'.repeat(100_000), 32)).toBe(true);
  });
});
