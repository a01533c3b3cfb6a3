const MINUTE = 60_000;
/** Minutes kept per application: the stats window (an hour) and the minute in progress. */
const KEEP = 61;

/**
 * The most sockets each application had logged in on this node, per minute, for the last hour (GET /admin/stats,
 * `peakConnectionCount`). The count changes only when a socket joins or leaves its application's channel, so
 * recording the count before and after each change, in the minute it happened, gives the peak of every minute
 * that saw a change; a minute without one had the count the last change left, which is the current count or
 * one recorded in an earlier minute. Memory: at most 61 numbers per application with sockets.
 */
export class ConnectionPeaks {
  private readonly byApp = new Map<string, Array<{ minute: number; max: number }>>();

  constructor(private readonly now: () => number) {}

  /** The application's count of logged-in sockets is now `after`, and was `before`. */
  changed(appId: string, before: number, after: number): void {
    const count = Math.max(before, after);
    const t = this.now();
    const minute = t - (t % MINUTE);
    let list = this.byApp.get(appId);
    if (!list) this.byApp.set(appId, (list = []));
    const last = list[list.length - 1];
    if (last && last.minute === minute) last.max = Math.max(last.max, count);
    else {
      list.push({ minute, max: count });
      while (list.length > KEEP || (list[0] && list[0].minute < minute - KEEP * MINUTE)) list.shift();
    }
  }

  /** The peak since `since` (epoch ms), given the count now. */
  peakSince(appId: string, since: number, current: number): number {
    let peak = current;
    const from = since - (since % MINUTE);
    for (const e of this.byApp.get(appId) ?? []) if (e.minute >= from && e.max > peak) peak = e.max;
    return peak;
  }
}
