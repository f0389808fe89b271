#!/usr/bin/env bash
# Functions benchmark: a trivial module (examples/functions/hello.wasm)
# through HTTP, and `wasmtime serve` with a hello-world wasi-http component
# as the peer when one is given. See docs/benchmarks.md.
#
# The server runs pinned to one CPU, wrk to another (loopback only):
#   first      the first call after upload, and the first after a restart
#              (compiled artifact from the disk cache), curl's total time
#   warm       wrk POST /functions/hello: requests/s and latency
#   inside     p50/p99 of the runs' own durations (instantiate + run, no
#              HTTP), from GET /api/v1/functions/hello/invocations
#   peer       wrk GET against `wasmtime serve` with a wasi-http hello
#              component: PEER_COMPONENT, or built from
#              bench/wasi-http-hello (hand-written WAT + wit-component,
#              WIT from the wasmtime-wasi-http 48 crate in the cargo
#              registry). Needs PEER_WASMTIME (default `wasmtime` on PATH):
#              `cargo install wasmtime-cli@48.0.8 --locked`.
#
# Settings (environment): DURATION (10s), WARMUP (2s), CONNECTIONS (32),
# THREADS (1), SERVER_CPU (1), CLIENT_CPU (0), SKIP_BUILD=1.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PEER_WASMTIME=${PEER_WASMTIME:-$(command -v wasmtime || true)}
PEER_COMPONENT=${PEER_COMPONENT:-}
LUA=$REPO/bench/wrk-report.lua
MODULE=$REPO/examples/functions/hello.wasm

NAME=functions.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

for tool in curl python3 taskset wrk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done


bench() { # LABEL METHOD URL BODY HEADER
    local label=$1 method=$2 url=$3 body=$4 header=$5 line
    local -a cmd=(taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" --latency -s "$LUA")
    WRK_LABEL=warmup WRK_METHOD=$method WRK_BODY=$body WRK_HEADER=$header "${cmd[@]}" -d"$WARMUP" "$url" >/dev/null
    WRK_LABEL=$label WRK_METHOD=$method WRK_BODY=$body WRK_HEADER=$header "${cmd[@]}" -d"$DURATION" "$url" >"$WORK/wrk.out"
    line=$(grep '^RESULT ' "$WORK/wrk.out") || { cat "$WORK/wrk.out"; die "wrk failed for $label"; }
    echo "$line"
    grep -q 'non2xx=0 socket_errors=0' <<<"$line" || echo "  WARNING: $label had failed requests" >&2
}


if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    echo "== building Flagbase (cargo build --release)"
    cargo build --release --quiet --bin flagbase
fi
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" = /* ]] || TARGET=$REPO/$TARGET
BIN=$TARGET/release/flagbase
[[ -x "$BIN" ]] || die "no release binary at $BIN"

mkdir -p "$WORK/flagbase"
start_flagbase() {
    : >"$WORK/flagbase.out"
    (cd "$WORK/flagbase" && exec taskset -c "$SERVER_CPU" "$BIN" --log-level warn \
        start --host 127.0.0.1 --port 0 >"$WORK/flagbase.out" 2>"$WORK/flagbase.out.err") &
    SERVER_PID=$!
    wait_for_line '^Ready\.' "$WORK/flagbase.out"
    BASE=$(sed -n 's/^ *http: *//p' "$WORK/flagbase.out" | head -n1)
}
start_flagbase
SETUP=$(sed -n 's/^ *setup token: *//p' "$WORK/flagbase.out" | head -n1)
JWT=$(curl -sS -X POST "$BASE/setup" -H 'Content-Type: application/json' \
    -d "{\"token\":\"$SETUP\",\"email\":\"bench@example.com\",\"password\":\"correct horse battery\"}" | json token)
AUTH="Authorization: Bearer $JWT"

code=$(curl -sS -o "$WORK/deploy" -w '%{http_code}' -X PUT "$BASE/api/v1/functions/hello" -H "$AUTH" \
    -H 'Content-Type: application/wasm' --data-binary @"$MODULE")
[[ "$code" == 201 ]] || die "deploy: HTTP $code $(cat "$WORK/deploy")"
echo "RESULT flagbase.functions.first_after_upload_ms=$(curl -sS -o /dev/null -w '%{time_total}' -X POST -H "$AUTH" -d ping "$BASE/functions/hello" | python3 -c 'import sys; print(round(float(sys.stdin.read())*1000,3))')"
echo "   sample: $(curl -sS -X POST -H "$AUTH" -d ping "$BASE/functions/hello")"

bench flagbase.functions.warm POST "$BASE/functions/hello" ping "$AUTH"
echo "RESULT flagbase.functions.rss_kib=$(awk '/VmRSS/{print $2}' /proc/$SERVER_PID/status)"
CONNECTIONS=1 bench flagbase.functions.warm.1conn POST "$BASE/functions/hello" ping "$AUTH"
curl -sS -H "$AUTH" "$BASE/api/v1/functions/hello/invocations" | python3 -c '
import json, sys
runs = sorted(r["duration_us"] for r in json.load(sys.stdin)["invocations"])
print("RESULT flagbase.functions.inside p50_us=%d p99_us=%d runs=%d" % (runs[len(runs)//2], runs[int(len(runs)*0.99)-1], len(runs)))'

stop_server
start_flagbase
echo "RESULT flagbase.functions.first_after_restart_ms=$(curl -sS -o /dev/null -w '%{time_total}' -X POST -H "$AUTH" -d ping "$BASE/functions/hello" | python3 -c 'import sys; print(round(float(sys.stdin.read())*1000,3))')"
stop_server

[[ -n "$PEER_WASMTIME" ]] || die "no peer: install it with 'cargo install wasmtime-cli@48.0.8 --locked' or set PEER_WASMTIME"
if [[ -z "$PEER_COMPONENT" ]]; then
    WIT=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wasmtime-wasi-http-48.*/wit 2>/dev/null | head -n1)
    [[ -n "$WIT" ]] || die "the wasi:http WIT files are not in the cargo registry: 'cargo install wasmtime-cli@48.0.8 --locked' fetches them"
    PEER_COMPONENT=$WORK/hello.component.wasm
    echo "== building the peer component (bench/wasi-http-hello)"
    (cd "$REPO/bench/wasi-http-hello" && cargo run --release --quiet -- "$WIT" "$PEER_COMPONENT")
fi
PEER_PORT=${PEER_PORT:-8089}
taskset -c "$SERVER_CPU" "$PEER_WASMTIME" serve --addr "127.0.0.1:$PEER_PORT" "$PEER_COMPONENT" \
    >"$WORK/peer.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$PEER_PORT/" && break; sleep 0.1; done
echo "   sample: $(curl -sS "http://127.0.0.1:$PEER_PORT/")"
bench wasmtime-serve.hello GET "http://127.0.0.1:$PEER_PORT/" "" ""
echo "RESULT wasmtime-serve.rss_kib=$(awk '/VmRSS/{print $2}' /proc/$SERVER_PID/status)"
CONNECTIONS=1 bench wasmtime-serve.hello.1conn GET "http://127.0.0.1:$PEER_PORT/" "" ""
stop_server
