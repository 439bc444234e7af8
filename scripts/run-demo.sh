#!/usr/bin/env bash
# `make run`: a Redis, a few demo jobs, and a worker in the foreground.
# Ctrl-C stops the worker cleanly (it unregisters) and any throwaway Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/resque-fork

redis_pid=$(scripts/ensure-redis.sh reachable)
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

echo "Enqueueing demo jobs:"
"$bin" enqueue demo Hello world
"$bin" enqueue demo Hello '{"name":"php-style","n":2}'
"$bin" enqueue demo Sleep 2
"$bin" enqueue demo Fail "this job fails on purpose"
id=$("$bin" enqueue critical Hello first)
echo "tracked job $id (see: $bin status $id)"
echo
echo "Running the worker on QUEUE=critical,* with demo jobs from scripts/demo-jobs; Ctrl-C to stop."
set +e
QUEUE=${QUEUE:-critical,*} JOBS_DIR=${JOBS_DIR:-scripts/demo-jobs} VERBOSE=${VERBOSE:-1} "$bin"
status=$?
set -e
echo "worker exited with status $status; job $id is $("$bin" status "$id" 2>&1)"
