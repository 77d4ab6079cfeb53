.PHONY: run test bench bench-floor fuzz build

# Runs the server on embedded defaults (in-process store, offline demo model, dev secret on loopback).
run:
	go run ./cmd/brain

# Runs every test, starting a private redis-server (installed if missing).
test:
	bash .ci/test

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/ ./cmd/...

# Benchmarks, CPU per turn of the built brain and the 1000-call load run, against a private
# Redis; raw output in docs/bench/. See docs/performance.md.
bench:
	bash test/bench/run.sh

# Issue 10 §2's comparison: the brain binary and the bare floor server (test/bench/floor) on
# 300 calls, 150 at once, alternated twice; raw output in docs/bench/*-floor-<target>.txt.
bench-floor:
	BENCH_ONLY=floor bash test/bench/run.sh

fuzz:
	go test -run '^$$' -fuzz FuzzChunker -fuzztime 60s ./agent
	go test -run '^$$' -fuzz FuzzDecodeEvent -fuzztime 60s ./transport
	go test -run '^$$' -fuzz FuzzVerify -fuzztime 60s ./transport
	go test -run '^$$' -fuzz FuzzDecodeHooks -fuzztime 60s ./transport
