#!/usr/bin/env bash
# Makes sure Redis is usable.
#   ensure-redis.sh installed   redis-server is on PATH (tests start their own)
#   ensure-redis.sh reachable   also: a Redis answers at REDIS_URL (default
#                               127.0.0.1:6379); if none does, start a throwaway
#                               one and print its pid on stdout
# Installs Debian's redis-server package when it is missing and we are root.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mode=${1:-installed}

need redis-server redis-server
[ "$mode" = installed ] && exit 0

url=${REDIS_URL:-redis://127.0.0.1:6379}
case "$url" in
  unix://*) cli_args=(-s "${url#unix://}") ;;
  redis://*)
    hostport=${url#redis://}; hostport=${hostport%%/*}; hostport=${hostport##*@}
    cli_args=(-h "${hostport%:*}" -p "${hostport##*:}") ;;
  *) say "cannot check REDIS_URL=$url by hand; assuming it is reachable"; exit 0 ;;
esac

if redis-cli "${cli_args[@]}" ping >/dev/null 2>&1; then
  say "Redis answers at $url"
  exit 0
fi
if [ -n "${REDIS_URL:-}" ]; then
  say "no Redis answers at REDIS_URL=$url; start it, or unset REDIS_URL to get a throwaway local one"
  exit 1
fi
dir=$(mktemp -d /tmp/resque-fork-redis.XXXXXX)
# Its own session, so a Ctrl-C meant for the worker does not stop Redis
# before the worker has unregistered; run-demo.sh stops it afterwards.
setsid redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --dir "$dir" \
  --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if redis-cli -p 6379 ping >/dev/null 2>&1; then
    say "started a throwaway redis-server (pid $pid, data discarded on exit)"
    echo "$pid"
    exit 0
  fi
  sleep 0.1
done
say "could not start redis-server on 127.0.0.1:6379; see $dir/redis.log"
exit 1
