#!/usr/bin/env bash
# What `make test` needs besides Rust, installed from Debian's packages when
# missing and we are root: redis-server (every test starts its own), openssl
# (a throwaway certificate for the TLS test), redis-sentinel (the Sentinel
# failover tests start their own), supervisor (the supervisord test),
# Node.js and npm with node-resque pinned by tests/interop's lockfile (the
# interop tests), and Prometheus with promtool (the metrics tests; a
# server of its own is started by each test, never the packaged service).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"

"$here/ensure-redis.sh" installed
need openssl openssl
need redis-sentinel redis-sentinel
need supervisord supervisor
need node nodejs
need npm npm
NO_RECOMMENDS=1 need promtool prometheus

cd "$here/../tests/interop"
if [ ! -d node_modules/node-resque ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing node-resque from the lockfile"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
