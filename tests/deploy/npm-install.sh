#!/usr/bin/env bash
# Installs the npm packages of deploy/kubernetes/ (the renderer's `yaml`, and
# kubernetes-models and dockerfile-utils for the tests) into DEST/node_modules
# with `npm ci` from the committed package-lock.json, so the source tree is
# not written to. Skips the install when DEST already holds that exact
# lockfile's packages. Tests run in parallel take turns through a lock.
# Usage: npm-install.sh NODE NPM SOURCE_DIR DEST
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 NODE NPM SOURCE_DIR DEST" >&2
  exit 2
fi
node=$1 npm=$2 src=$3/deploy/kubernetes dest=$4
if [ -z "$node" ] || [ -z "$npm" ]; then
  echo "error: node or npm was not found at configure time; run scripts/install-deps.sh and configure again" >&2
  exit 1
fi
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
stamp="$dest/installed-package-lock.json"
if cmp -s "$src/package-lock.json" "$stamp" && [ -d "$dest/node_modules/yaml" ]; then
  exit 0
fi
rm -f "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# npm through node itself: its `#!/usr/bin/env node` would need PATH. No
# install scripts: none of these packages needs one.
"$node" "$npm" ci --prefix "$dest" --ignore-scripts --no-audit --no-fund --loglevel=error
cp "$src/package-lock.json" "$stamp"
