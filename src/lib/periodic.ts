/**
 * Asks whether this process should do a named piece of periodic work now (a clean-up). Alone, the answer is always
 * yes: each module keeps its own period. In a cluster a lease in the store answers (src/store/leases-repo.ts), so
 * that one node does it per period, whichever is alive (docs/cluster.md).
 */
export type PeriodicGate = (name: string, periodMs: number) => Promise<boolean>;

export const alwaysDue: PeriodicGate = async () => true;
