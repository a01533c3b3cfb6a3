// What bench/import.mjs and bench/import-sustained.mjs begin with: their options (the defaults differ), the log
// (stderr under --json, which keeps stdout for the JSON report), the first line naming the machine and the code,
// and the source's and target's data directories.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { codeVersion, describeMachine, machine } from './machine.mjs';

export function importBench(title, defaults) {
  const { values: opts } = parseArgs({
    options: {
      messages: { type: 'string', default: defaults.messages },
      rooms: { type: 'string', default: defaults.rooms },
      users: { type: 'string', default: defaults.users },
      limit: { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
    },
  });
  const [nMessages, nRooms, nUsers, limit] = [opts.messages, opts.rooms, opts.users, opts.limit].map(Number);
  const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..');
  const log = (s) => (opts.json ? process.stderr.write(`${s}\n`) : console.log(s));
  log(`${title} — ${describeMachine(machine())}; code ${codeVersion(root).commit ?? '?'}`);
  return {
    opts, nMessages, nRooms, nUsers, limit, root, log,
    srcDir: fs.mkdtempSync(path.join(os.tmpdir(), 'imkit-bench-import-src-')),
    dstDir: fs.mkdtempSync(path.join(os.tmpdir(), 'imkit-bench-import-dst-')),
    base: { logLevel: 'silent', port: 0, host: '127.0.0.1' },
  };
}
