/**
 * Asks whether this process should do a named piece of periodic work now (a clean-up). Alone, the answer is always
 * yes. In a cluster a lease in the store answers (src/store/leases-repo.ts), so that one node does it per period,
 * whichever is alive (docs/cluster.md).
 */
export type PeriodicGate = (name: string, periodMs: number) => Promise<boolean>;

export const alwaysDue: PeriodicGate = async () => true;

/**
 * One named piece of periodic work of a module: due once per period in this process, and then only if the gate
 * (set by the server in a cluster) gives it to this node. A gate that fails answers no; the next period asks again.
 */
export class Periodic {
  private last = 0;
  gate: PeriodicGate = alwaysDue;

  constructor(
    readonly name: string,
    readonly periodMs: number,
  ) {}

  async due(now: number): Promise<boolean> {
    if (now - this.last < this.periodMs) return false;
    this.last = now;
    return this.gate(this.name, this.periodMs).catch(() => false);
  }

  /** The work failed: it is due again at the next ask. */
  again(): void {
    this.last = 0;
  }
}
