// Run before the tests (npm test's pretest): test/deploy-files.test.ts checks deploy/nginx.conf with nginx itself
// (nginx -t, then a real nginx in front of real server processes) and the systemd unit with systemd-analyze, and
// must fail, not skip, without them. Installs Debian's `nginx` and `systemd` packages when one is missing and this
// runs as root with apt-get; otherwise stops with a message saying what to install. The services are not started
// by this (the test runs its own nginx on a spare port, in a temporary directory).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const TOOLS = [
  { binary: ['/usr/sbin/nginx'], pkg: 'nginx' },
  { binary: ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'], pkg: 'systemd' },
];
const missing = TOOLS.filter((t) => !t.binary.some((p) => fs.existsSync(p)));
if (missing.length === 0) process.exit(0);

const packages = missing.map((t) => t.pkg);
const hasAptGet = ['/usr/bin/apt-get', '/bin/apt-get'].some((p) => fs.existsSync(p));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!hasAptGet || !isRoot) {
  console.error(
    `The deployment file tests need ${missing.map((t) => t.binary[0]).join(' and ')}, missing here.\n` +
      `Install as root: apt-get install -y --no-install-recommends ${packages.join(' ')}\n`,
  );
  process.exit(1);
}
console.log(`Installing ${packages.join(' and ')} for the deployment file tests (apt-get install)...`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { stdio: 'inherit', env });
const still = missing.filter((t) => !t.binary.some((p) => fs.existsSync(p)));
if (still.length > 0) {
  console.error(`apt-get installed ${packages.join(' ')}, but ${still.map((t) => t.binary[0]).join(' and ')} is still missing.`);
  process.exit(1);
}
