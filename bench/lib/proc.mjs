import { execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CHILDREN = path.join(here, '..', 'children');
const live = new Set();
/** CPU used by bench children that have been stopped (ms); with the live ones, what the bench itself used. */
let stoppedCpuMs = 0;

/** CPU time used so far by this orchestrator and every child it started (ms). */
export function benchCpuMs() {
  const own = process.cpuUsage();
  let total = stoppedCpuMs + (own.user + own.system) / 1000;
  for (const c of live) total += cpuMsOf(c.pid) ?? 0;
  return total;
}

/**
 * Forks one bench child (a server or a load generator) and talks to it over IPC. Every child is killed when
 * the orchestrator exits, whatever the reason.
 */
export async function startChild(name, { env = {}, execArgv = [], logFile, readyTimeoutMs = 30_000 } = {}) {
  const out = logFile ? fs.openSync(logFile, 'a') : 'ignore';
  const child = fork(path.join(CHILDREN, name), [], {
    env: { ...process.env, ...env },
    execArgv,
    stdio: ['ignore', out, logFile ? out : 'inherit', 'ipc'],
  });
  if (typeof out === 'number') fs.closeSync(out);
  live.add(child);
  let nextId = 1;
  const pending = new Map();
  let exited = false;
  const exitedP = new Promise((resolve) => child.once('exit', (code, signal) => {
    exited = true;
    live.delete(child);
    for (const p of pending.values()) p.reject(new Error(`${name} exited (${code ?? signal}) during ${p.cmd}`));
    pending.clear();
    resolve();
  }));
  const readyP = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} did not start within ${readyTimeoutMs} ms${logFile ? ` (log: ${logFile})` : ''}`)), readyTimeoutMs);
    child.on('message', (msg) => {
      if (msg?.ready) {
        clearTimeout(t);
        resolve(msg);
        return;
      }
      const p = pending.get(msg?.id);
      if (!p) return;
      pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${name} ${p.cmd}: ${msg.error}`));
      else p.resolve(msg.result);
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${name} exited with ${code} before it was ready${logFile ? ` (log: ${logFile})` : ''}`));
    });
  });
  const info = await readyP;
  return {
    info,
    pid: child.pid,
    call(cmd, args = {}, timeoutMs = 120_000) {
      if (exited) return Promise.reject(new Error(`${name} has exited`));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name} ${cmd}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer, cmd });
        child.send({ id, cmd, args });
      });
    },
    async stop(graceMs = 5000) {
      if (exited) return;
      stoppedCpuMs += cpuMsOf(child.pid) ?? 0;
      live.delete(child);
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exitedP;
      clearTimeout(t);
    },
  };
}

export function killAll() {
  for (const c of live) c.kill('SIGKILL');
}

/** Resident memory of a process in bytes, from /proc (Linux). */
export function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used so far, in ms, from /proc (Linux). */
export function cpuMsOf(pid) {
  return cpuMsOfStat(`/proc/${pid}/stat`);
}

/** CPU time used so far by the main thread of a process (its JavaScript event loop), in ms; null when unknown. */
export function mainThreadCpuMsOf(pid) {
  return cpuMsOfStat(`/proc/${pid}/task/${pid}/stat`);
}

/**
 * How long a process's main thread (its event loop) has waited, runnable, for a core so far, in ms: the second
 * field of /proc/<pid>/task/<pid>/schedstat (ns), kept by the scheduler. Null where it is missing.
 */
export function mainThreadRunQueueMsOf(pid) {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return null;
  }
}

function cpuMsOfStat(file) {
  try {
    const fields = fs.readFileSync(file, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks, USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** CPU time all cores spent busy so far, in ms (from /proc/stat), to tell how much other processes used. */
export function machineBusyMs() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    return (user + nice + system + irq + softirq + steal) * 10;
  } catch {
    return null;
  }
}

/**
 * CPU time used so far by the server listening on each of `ports` on this machine (PostgreSQL, Redis): the
 * listener's own, what its children that ended left in its cutime/cstime (PostgreSQL's backends end with their
 * connections), and its live children's. Null when a listener cannot be found (`ss` missing, or not allowed to name
 * another user's processes): the caller then counts these services as other processes, as before.
 */
export function serviceCpuMs(ports) {
  let total = 0;
  for (const port of ports) {
    let pid;
    try {
      const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      pid = Number(/pid=(\d+)/.exec(out)?.[1]);
    } catch {
      return null;
    }
    if (!pid) return null;
    const stat = statFields(pid);
    if (!stat) return null;
    total += ((stat[11] + stat[12] + stat[13] + stat[14]) * 1000) / 100;
    for (const child of childrenOf(pid)) {
      const f = statFields(child);
      if (f) total += ((f[11] + f[12]) * 1000) / 100;
    }
  }
  return total;
}

/** The fields of /proc/<pid>/stat after the command name, as numbers (index 0 is the state; 1 the parent). */
function statFields(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ').map(Number);
  } catch {
    return null;
  }
}

function childrenOf(pid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (f && f[1] === pid) out.push(Number(name));
  }
  return out;
}
