import { execSync } from 'node:child_process';
import os from 'node:os';

/** The machine every result is printed with. */
export function machine() {
  const cpus = os.cpus();
  let fdLimit = null;
  try {
    fdLimit = Number(execSync('ulimit -n', { shell: '/bin/sh', encoding: 'utf8' }).trim()) || null;
  } catch {}
  return {
    cores: cpus.length,
    model: cpus[0]?.model?.trim() ?? 'unknown',
    memoryGB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    fdLimit,
  };
}

export function describeMachine(m) {
  return `${m.cores} cores (${m.model}), ${m.memoryGB} GB RAM, Node ${m.node}, ${m.platform}, ulimit -n ${m.fdLimit ?? '?'}`;
}

/** The code under test: the commit, and how many files of src/ differ from it (the bench builds the working tree). */
export function codeVersion(root) {
  try {
    const commit = execSync('git rev-parse --short HEAD', { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execSync('git status --porcelain -- src', { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean).length;
    return { commit, srcFilesChanged: dirty };
  } catch {
    return { commit: null, srcFilesChanged: null };
  }
}
