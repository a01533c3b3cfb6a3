#!/usr/bin/env node
// npm run fuzz -- [--runs N] [--seed S] [--path P] [--only http|socket|child] [--socket-runs N] [--child-runs N] [--verbose]
// The long run of the protocol fuzzer (test/fuzz.test.ts, docs/operations.md, Fuzzing): builds, then runs the fuzz
// test file through vitest with the sizes given. It prints the cases tried and the seed of each part; a failure
// prints the seed and path to replay it. With IMKIT_TEST_POSTGRES_URL set, PostgreSQL is fuzzed too.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20000' },
    seed: { type: 'string' },
    path: { type: 'string' },
    only: { type: 'string' },
    'socket-runs': { type: 'string' },
    'child-runs': { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
for (const k of ['runs', 'seed', 'socket-runs', 'child-runs']) {
  if (values[k] !== undefined && !/^-?\d+$/.test(values[k])) {
    console.error(`--${k} takes a whole number, got ${values[k]}`);
    process.exit(2);
  }
}
if (values.only && !['http', 'socket', 'child'].includes(values.only)) {
  console.error('--only takes http, socket or child');
  process.exit(2);
}
if (values.path && values.seed === undefined) {
  console.error('--path replays a case of one seed: give --seed too');
  process.exit(2);
}
const env = { ...process.env, FUZZ_RUNS: values.runs };
if (values.seed !== undefined) env.FUZZ_SEED = values.seed;
if (values.path) env.FUZZ_PATH = values.path;
if (values.only) env.FUZZ_ONLY = values.only;
if (values['socket-runs']) env.FUZZ_SOCKET_RUNS = values['socket-runs'];
if (values['child-runs']) env.FUZZ_CHILD_RUNS = values['child-runs'];
if (values.verbose) env.FUZZ_VERBOSE = '1';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const build = spawnSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const run = spawnSync(npx, ['vitest', 'run', 'test/fuzz.test.ts', '--reporter', 'verbose'], { stdio: 'inherit', env });
process.exit(run.status ?? 1);
