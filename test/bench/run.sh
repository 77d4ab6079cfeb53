#!/usr/bin/env bash
# Runs every performance measurement of docs/performance.md and keeps the raw output in
# docs/bench/<UTC date>-*.txt: the Go benchmarks (for benchstat), the brain's CPU per turn on the
# built binary, and the load run of a thousand concurrent calls (driven by callsim load's engine,
# package test/loadgen), with a CPU profile of each.
# Starts a private redis-server on a free loopback port (installing it with apt when missing,
# as .ci/test does) unless TEST_REDIS_URL is set. Everything it starts stops with it.
#
#   bash test/bench/run.sh               # everything, ~10 minutes on 2 cores
#   BENCH_ONLY=bench bash test/bench/run.sh    # one part: bench, cpu or load
#   BENCH_ONLY=floor bash test/bench/run.sh    # issue 10 §2: the brain binary against the bare
#                                        # floor server, alternated (not part of "everything")
#   BENCH_COUNT=10 BENCH_TIME=3s ...     # more benchmark samples
set -euo pipefail
cd "$(dirname "$0")/../.."

count=${BENCH_COUNT:-6}
benchtime=${BENCH_TIME:-2s}
only=${BENCH_ONLY:-}
out=docs/bench
stamp=$(date -u +%Y%m%d-%H%M)
mkdir -p "$out"
tmp=$(mktemp -d)
cleanup() {
  if [ -f "$tmp/redis.pid" ]; then kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${TEST_REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "bench: redis-server not found; installing it" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)))
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export TEST_REDIS_URL="redis://127.0.0.1:$port/0"
fi

# The machine and the code measured, as benchstat configuration lines ("key: value").
header() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "kernel: $(uname -r)"
  echo "go: $(go env GOVERSION)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
  echo "chunker: agent/chunker.go sha256 $(sha256sum agent/chunker.go | cut -c1-12), modified $(date -u -r agent/chunker.go +%FT%TZ)"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [ -z "$only" ] || [ "$only" = bench ]; then
  echo "bench: benchmarks → $out/$stamp-bench.txt" >&2
  { header; go test -run '^$' -bench . -benchmem -count "$count" -benchtime "$benchtime" -timeout 60m \
      ./agent ./session ./test/bench; } 2>&1 | tee "$out/$stamp-bench.txt"
  # A CPU profile of the whole message turn, in process (client and stand-in model included).
  go test -run '^$' -bench 'BenchmarkMessageTurn/redis' -benchtime 5s -count 1 \
    -cpuprofile "$tmp/turn.pprof" -o "$tmp/bench.test" ./test/bench >/dev/null
  go tool pprof -top -nodecount 60 "$tmp/bench.test" "$tmp/turn.pprof" > "$out/$stamp-turn-profile.txt" 2>/dev/null
fi

if [ -z "$only" ] || [ "$only" = cpu ]; then
  echo "bench: CPU per turn of the brain binary → $out/$stamp-cpu.txt" >&2
  { header; BENCH=1 go test -run 'TestBrainCPU' -v -count 1 -timeout 30m ./test/bench; } 2>&1 | tee "$out/$stamp-cpu.txt"
fi

if [ -z "$only" ] || [ "$only" = load ]; then
  echo "bench: load run → $out/$stamp-load.txt" >&2
  perf=""
  if command -v perf >/dev/null 2>&1 && perf stat -e task-clock true >/dev/null 2>&1; then perf="$tmp/perf.data"; fi
  # The load engine (callsim load's) also writes its JSON and HTML report of each target:
  # $out/$stamp-load.binary.{json,html} and $out/$stamp-load.in_process.{json,html}.
  { header; BENCH_LOAD=1 BENCH_PERF="$perf" BENCH_CPUPROFILE="$tmp/load.pprof" BENCH_LOAD_REPORT="$PWD/$out/$stamp-load" \
      go test -run 'TestLoad' -v -count 1 -timeout 30m -o "$tmp/load.test" ./test/bench; } 2>&1 | tee "$out/$stamp-load.txt"
  if [ -n "$perf" ] && [ -s "$perf" ]; then
    perf report -i "$perf" --children --stdio --sort symbol -g none 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -120 > "$out/$stamp-load-perf.txt" || true
  fi
  if [ -s "$tmp/load.pprof" ]; then
    go tool pprof -top -cum -nodecount 80 "$tmp/load.test" "$tmp/load.pprof" > "$out/$stamp-load-profile.txt" 2>/dev/null || true
  fi
fi
# Issue 10 §2's comparison: 300 calls, 150 at once, the model at 300 ms to the first token and
# 20 ms per token, against the brain binary and test/bench/floor in turn, BENCH_FLOOR_ROUNDS
# times (2). Each run's raw output: $out/<UTC date-time>-floor-<target>.txt.
if [ "$only" = floor ]; then
  for _ in $(seq "${BENCH_FLOOR_ROUNDS:-2}"); do
    for target in binary floor; do
      file="$out/$(date -u +%Y%m%d-%H%M)-floor-$target.txt"
      [ ! -e "$file" ] || file="${file%.txt}-$(date -u +%S).txt"
      echo "bench: load run of issue 10's shape against $target → $file" >&2
      { header; BENCH_LOAD=1 BENCH_LOAD_CALLS=300 BENCH_LOAD_CONCURRENCY=150 BENCH_LOAD_TARGET=$target \
          go test -run 'TestLoad' -v -count 1 -timeout 20m ./test/bench; } 2>&1 | tee "$file"
    done
  done
fi
echo "bench: done; compare with an earlier run: go run golang.org/x/perf/cmd/benchstat@latest $out/<old>-bench.txt $out/$stamp-bench.txt" >&2
