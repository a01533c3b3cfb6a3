import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

/** The soft and hard RLIMIT_NOFILE of this process from /proc/self/limits (Linux); undefined where unknown or unlimited. */
export function readFileLimits(text?: string): { soft: number | undefined; hard: number | undefined } {
  let content = text;
  if (content === undefined) {
    try {
      content = fs.readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return { soft: undefined, hard: undefined };
    }
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(content);
  const num = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

/**
 * Raises this process's soft open-file limit (RLIMIT_NOFILE) to its hard limit, where the system allows. Every
 * socket and HTTP connection is a descriptor, and a soft limit of 1024 (a common default) is reached long before
 * the machine's memory or CPU. Node usually raises it itself at start-up, but not in every build or embedding,
 * and it has no setrlimit for us to call; util-linux's `prlimit` changes a running process's limit. Best effort:
 * without prlimit, without /proc (not Linux), or when refused, the server starts with the limit it has, and
 * the socket caps are derived from that (docs/realtime.md, Admission).
 */
export async function raiseFileLimit(): Promise<{ soft?: number; hard?: number; raised: boolean; note?: string }> {
  const before = readFileLimits();
  if (before.soft === undefined || before.hard === undefined || before.soft >= before.hard) {
    return { soft: before.soft, hard: before.hard, raised: false };
  }
  try {
    await promisify(execFile)('prlimit', ['--pid', String(process.pid), `--nofile=${before.hard}:${before.hard}`], { timeout: 5000 });
  } catch (err) {
    return { soft: before.soft, hard: before.hard, raised: false, note: `prlimit failed: ${(err as Error).message.split('\n')[0]}` };
  }
  const after = readFileLimits();
  return { soft: after.soft, hard: after.hard, raised: (after.soft ?? 0) > before.soft };
}
