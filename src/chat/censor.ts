/**
 * Keyword censorship with one Aho-Corasick automaton: the text is read once, whatever the number of keywords,
 * so a list of tens of thousands of words costs about as much per message as a list of ten. It is written here
 * rather than taken from npm because the few packages that exist are unmaintained or report matches by UTF-16
 * offset after their own case handling, while masking needs exact code-point ranges of the original text
 * (about 100 lines).
 *
 * Case handling: letters match case-insensitively, one code point at a time (a code point whose lower case is a
 * single code point is folded to it: "SPAM" and "Spam" match "spam", "É" matches "é"). Nothing else is
 * normalised: no accent stripping, no full-width/half-width folding, no skipping of spaces or punctuation.
 * A keyword matches anywhere, also inside a longer word ("ass" in "class"), as CJK text has no word breaks.
 */
export class Censor {
  /** Transitions: key = node * 0x110000 + code point (fits a double exactly), value = child node. */
  private readonly next = new Map<number, number>();
  private readonly fail: number[] = [0];
  /** The longest keyword (in code points) that ends at each node, following suffix links; 0 when none. */
  private readonly longest: number[] = [0];

  constructor(keywords: readonly string[]) {
    for (const word of keywords) this.add(word);
    this.link();
  }

  get size(): number {
    return this.fail.length;
  }

  /** True when the text contains at least one keyword. */
  matches(text: string): boolean {
    let node = 0;
    for (const ch of text) {
      node = this.step(node, fold(ch.codePointAt(0)!));
      if (this.longest[node]! > 0) return true;
    }
    return false;
  }

  /** The text with every character of every keyword occurrence replaced by one `*` (overlaps included). */
  mask(text: string): string {
    const chars = Array.from(text);
    // The longest keyword ending at each character; a backward pass then masks each run it covers.
    const reach = new Uint32Array(chars.length);
    let node = 0;
    let hit = false;
    for (let i = 0; i < chars.length; i++) {
      node = this.step(node, fold(chars[i]!.codePointAt(0)!));
      reach[i] = this.longest[node]!;
      if (reach[i]! > 0) hit = true;
    }
    if (!hit) return text;
    let left = 0;
    for (let i = chars.length - 1; i >= 0; i--) {
      left = Math.max(left, reach[i]!);
      if (left > 0) {
        chars[i] = '*';
        left--;
      }
    }
    return chars.join('');
  }

  private add(word: string): void {
    let node = 0;
    let length = 0;
    for (const ch of word) {
      const key = node * 0x110000 + fold(ch.codePointAt(0)!);
      let child = this.next.get(key);
      if (child === undefined) {
        child = this.fail.length;
        this.fail.push(0);
        this.longest.push(0);
        this.next.set(key, child);
      }
      node = child;
      length++;
    }
    if (length > 0) this.longest[node] = Math.max(this.longest[node]!, length);
  }

  /** Breadth-first: each node's failure link is the longest proper suffix of its path that is also a path. */
  private link(): void {
    const children = new Map<number, Array<[number, number]>>();
    for (const [key, child] of this.next) {
      const parent = Math.floor(key / 0x110000);
      let list = children.get(parent);
      if (!list) children.set(parent, (list = []));
      list.push([key - parent * 0x110000, child]);
    }
    const queue: number[] = [0];
    for (let head = 0; head < queue.length; head++) {
      const node = queue[head]!;
      for (const [cp, child] of children.get(node) ?? []) {
        this.fail[child] = node === 0 ? 0 : this.step(this.fail[node]!, cp);
        this.longest[child] = Math.max(this.longest[child]!, this.longest[this.fail[child]!]!);
        queue.push(child);
      }
    }
  }

  private step(node: number, cp: number): number {
    for (;;) {
      const child = this.next.get(node * 0x110000 + cp);
      if (child !== undefined) return child;
      if (node === 0) return 0;
      node = this.fail[node]!;
    }
  }
}

/** Lower-cases one code point when its lower case is one code point; ASCII without a string round trip. */
function fold(cp: number): number {
  if (cp < 128) return cp >= 65 && cp <= 90 ? cp + 32 : cp;
  const lower = String.fromCodePoint(cp).toLowerCase();
  const folded = lower.codePointAt(0)!;
  return lower.length === (folded > 0xffff ? 2 : 1) ? folded : cp;
}
