# The two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: all build run test tools chaos soak failover bench

all: build

build:
	$(CARGO) build

# Redis (every test starts its own), and the other tools the tests use.
tools:
	scripts/ensure-test-tools.sh

## make run: build, make sure a Redis answers (a throwaway one if needed),
## enqueue demo jobs and run a worker in the foreground; Ctrl-C stops it.
run: build
	scripts/run-demo.sh

## make test: the Redis check, then fmt, clippy, the docs and every test
## (unit, integration, doc tests; cargo test also builds the examples they run).
test: tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet
	$(CARGO) test

## make chaos: the long chaos run (CHAOS_SECONDS, default 300; CHAOS_SEED to
## replay one; CHAOS_JOBS). make test runs a short round of the same test.
chaos: tools
	$(CARGO) test --release --test chaos chaos_long -- --ignored --nocapture

## make soak: the recurring-jobs soak (SOAK_SECONDS, default 300): three
## pools killed at random while an every-1s entry runs. make test runs 20 s.
soak: tools
	SOAK_SECONDS=$${SOAK_SECONDS:-300} $(CARGO) test --release --test recurring recurring_soak -- --nocapture

## make failover: the Sentinel failover marathon (SENTINEL_FAILOVERS, default
## 10): a pool through that many planned failovers, each job run once.
## make test runs two.
failover: tools
	SENTINEL_FAILOVERS=$${SENTINEL_FAILOVERS:-10} $(CARGO) test --release --test sentinel a_pool_works_through -- --nocapture

## make bench: the benchmark (not a test): one table, and target/bench.json.
## BENCH_SCALE=0.1 for a quick rough run.
bench: tools
	$(CARGO) bench --bench bench
