// A small log-bucketed latency histogram (1% resolution from 1 µs to ~100 s) that merges across processes.
const R = Math.log(1.01);
const SIZE = 2000;

export class Hist {
  constructor() {
    this.counts = new Uint32Array(SIZE);
    this.n = 0;
    this.max = 0;
    this.sum = 0;
  }

  /** Adds one latency in milliseconds. */
  add(ms) {
    if (!(ms >= 0)) ms = 0;
    const us = ms * 1000;
    const i = us <= 1 ? 0 : Math.min(SIZE - 1, Math.floor(Math.log(us) / R));
    this.counts[i]++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  reset() {
    this.counts.fill(0);
    this.n = 0;
    this.max = 0;
    this.sum = 0;
  }

  /** Compact form for IPC: [index, count] pairs of the non-empty buckets. */
  toJSON() {
    const b = [];
    for (let i = 0; i < SIZE; i++) if (this.counts[i]) b.push(i, this.counts[i]);
    return { b, n: this.n, max: this.max, sum: this.sum };
  }

  static from(json) {
    const h = new Hist();
    h.merge(json);
    return h;
  }

  merge(json) {
    const { b, n, max, sum } = json instanceof Hist ? json.toJSON() : json;
    for (let k = 0; k < b.length; k += 2) this.counts[b[k]] += b[k + 1];
    this.n += n;
    this.sum += sum;
    if (max > this.max) this.max = max;
    return this;
  }

  /** The p-th percentile (0-100) in milliseconds: the upper edge of its bucket, capped by the exact max. */
  percentile(p) {
    if (this.n === 0) return null;
    const target = Math.max(1, Math.ceil((p / 100) * this.n));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i];
      if (seen >= target) return Math.min(this.max, Math.exp((i + 1) * R) / 1000);
    }
    return this.max;
  }

  summary() {
    const r = (v) => (v === null ? null : Math.round(v * 100) / 100);
    return { count: this.n, p50: r(this.percentile(50)), p99: r(this.percentile(99)), max: r(this.n ? this.max : null), mean: r(this.n ? this.sum / this.n : null) };
  }
}
