#!/usr/bin/env node
// `npm start` runs this instead of a full build: it builds (npm run build) only when a source file is newer than the
// last build, so a restart with nothing changed starts at once. What counts as a source: everything under the
// directories and files below. The stamp is written after a successful build.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCES = ['src', 'web', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'];
const STAMP = path.join(root, 'dist', '.build-stamp');

function newest(p) {
  let st;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const name of fs.readdirSync(p)) if (name !== 'node_modules') max = Math.max(max, newest(path.join(p, name)));
  return max;
}

const sourcesAt = Math.max(...SOURCES.map((s) => newest(path.join(root, s))));
let builtAt = 0;
try {
  builtAt = fs.statSync(STAMP).mtimeMs;
} catch {
  builtAt = 0;
}
if (builtAt > sourcesAt && fs.existsSync(path.join(root, 'dist', 'main.js'))) process.exit(0);
process.stderr.write('imkit-server: sources changed since the last build; building...\n');
const r = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
fs.mkdirSync(path.dirname(STAMP), { recursive: true });
fs.writeFileSync(STAMP, `${new Date().toISOString()}\n`);
