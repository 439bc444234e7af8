#!/usr/bin/env bash
# Installs what the interop tests need: Node.js with npm (Debian's packages,
# when missing and we are root) and node-resque pinned by tests/interop's lockfile.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
say() { printf 'ensure-node: %s\n' "$*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "node/npm missing; installing Debian's nodejs and npm packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq nodejs npm >&2
  else
    say "Node.js and npm are needed for the interop tests (Debian: sudo apt-get install nodejs npm)"
    exit 1
  fi
fi
if [ ! -d node_modules/node-resque ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing node-resque from the lockfile"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
