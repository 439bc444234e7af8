# The two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: all build run test fmt lint unit redis node

all: build

build:
	$(CARGO) build

redis:
	scripts/ensure-redis.sh installed

node:
	scripts/ensure-node.sh

## make run: build, make sure a Redis answers (a throwaway one if needed),
## enqueue demo jobs and run a worker in the foreground; Ctrl-C stops it.
run: build
	scripts/run-demo.sh

## make test: the Redis check, then fmt, clippy and every test.
test: redis node
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
