// Run before the tests (npm test's pretest): the browser tests drive Debian's chromium through playwright-core and
// must fail, not skip, without it. Installs the `chromium` package when it is missing and this runs as root with
// apt-get; otherwise stops with a message saying what to install.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const BROWSER = process.env.IMKIT_TEST_CHROMIUM ?? '/usr/bin/chromium';
if (fs.existsSync(BROWSER)) process.exit(0);

const hasAptGet = ['/usr/bin/apt-get', '/bin/apt-get'].some((p) => fs.existsSync(p));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!hasAptGet || !isRoot) {
  console.error(
    `The browser tests need Chromium at ${BROWSER}, which is missing.\n` +
      (hasAptGet ? 'Install it as root: apt-get install -y chromium\n' : 'Install Chromium (Debian/Ubuntu: apt-get install -y chromium), or point IMKIT_TEST_CHROMIUM at a Chromium binary.\n'),
  );
  process.exit(1);
}
console.log('Installing chromium for the browser tests (apt-get install chromium)...');
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'inherit', env });
if (!fs.existsSync(BROWSER)) {
  console.error(`apt-get installed chromium, but ${BROWSER} is still missing.`);
  process.exit(1);
}
