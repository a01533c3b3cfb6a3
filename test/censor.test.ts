import { describe, expect, it } from 'vitest';
import { Censor } from '../src/chat/censor.js';

/** A slow, obviously correct reference: mark every occurrence of every keyword, case-folded per character. */
function naiveMask(text: string, keywords: string[]): string {
  const chars = Array.from(text);
  const low = chars.map((c) => (c.toLowerCase().length === c.length ? c.toLowerCase() : c));
  const out = [...chars];
  for (const k of keywords) {
    const kw = Array.from(k).map((c) => (c.toLowerCase().length === c.length ? c.toLowerCase() : c));
    if (kw.length === 0) continue;
    for (let i = 0; i + kw.length <= low.length; i++) {
      if (kw.every((c, j) => low[i + j] === c)) for (let j = 0; j < kw.length; j++) out[i + j] = '*';
    }
  }
  return out.join('');
}

describe('Censor (Aho-Corasick)', () => {
  it('masks every occurrence with one * per character, case-insensitively for letters', () => {
    const c = new Censor(['spam', 'Bad']);
    expect(c.mask('SPAM and spam, not spa; BAD badge')).toBe('**** and ****, not spa; *** ***ge');
    expect(c.matches('Spam')).toBe(true);
    expect(c.matches('sp am')).toBe(false);
    expect(c.mask('clean text')).toBe('clean text');
  });

  it('handles overlapping and nested keywords (suffix links)', () => {
    const c = new Censor(['he', 'she', 'hers', 'his']);
    expect(c.mask('ushers')).toBe('u*****');
    expect(c.mask('ahishe')).toBe('a*****');
    const d = new Censor(['abcd', 'bc']);
    expect(d.mask('xabcx abcd')).toBe('xa**x ****');
  });

  it('counts characters as code points: CJK and emoji keywords become one * each', () => {
    const c = new Censor(['廣告', '💩', 'Éclair']);
    expect(c.mask('這是廣告💩!')).toBe('這是***!');
    expect(c.mask('ÉCLAIR éclair')).toBe('****** ******');
  });

  it('an empty list or empty keywords match nothing', () => {
    expect(new Censor([]).mask('anything')).toBe('anything');
    expect(new Censor(['']).matches('anything')).toBe(false);
  });

  it('agrees with a naive scan on random texts and keyword sets', () => {
    let seed = 42;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const alphabet = ['a', 'b', 'A', 'B', 'c', '廣', '😀', ' '];
    const word = (max: number) => Array.from({ length: 1 + rnd(max) }, () => alphabet[rnd(alphabet.length)]).join('');
    for (let round = 0; round < 300; round++) {
      const keywords = Array.from({ length: 1 + rnd(6) }, () => word(4));
      const c = new Censor(keywords);
      for (let k = 0; k < 5; k++) {
        const text = word(30);
        const expected = naiveMask(text, keywords);
        expect(c.mask(text), `${JSON.stringify(keywords)} on ${JSON.stringify(text)}`).toBe(expected);
        expect(c.matches(text)).toBe(expected !== text);
      }
    }
  });

  it('builds 10,000 keywords into one automaton', () => {
    const keywords = Array.from({ length: 10_000 }, (_, i) => `kw${i.toString(36)}x`);
    const c = new Censor(keywords);
    expect(c.mask('say kw0x and KW7PRX now')).toBe('say **** and ****** now');
    expect(c.matches('kw')).toBe(false);
  });
});
