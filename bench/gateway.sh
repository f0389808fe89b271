#!/usr/bin/env bash
# Gateway benchmark: the same upstream reached directly, through nginx as a
# reverse proxy, and through the Flagbase gateway. See docs/benchmarks.md.
#
#   upstream  nginx, one worker, `return 200` (no file I/O), on UPSTREAM_CPU
#   direct    wrk → upstream
#   nginx     wrk → nginx (one worker, HTTP/1.1 keep-alive pool to the
#             upstream, access log off) → upstream; pinned to SERVER_CPU
#   gateway   wrk → flagbase /gateway/bench (a flag-gated route: the flag's
#             rule `role equals user` sends the caller to the upstream, its
#             fallback is a dead port) with an API token as Bearer → upstream;
#             pinned to SERVER_CPU, log level warn
# Each scenario runs with CONNECTIONS connections (throughput, p50/p99) and
# with one connection (the p50 a lone client sees); ROUNDS rounds,
# interleaved, so noise from other work on the machine hits all three.
# The CPU (user+system time / wall time) and RSS of both proxies (the
# gateway, nginx's worker) are read from /proc during their runs, and CPU
# time per request derived from them.
#
# Settings (environment): DURATION (10s), WARMUP (2s), CONNECTIONS (32),
# ROUNDS (2), SERVER_CPU (1), CLIENT_CPU (0), UPSTREAM_CPU (0), SKIP_BUILD=1,
# FLAGBASE_BIN (a flagbase binary to measure instead of building one),
# PROFILE=1 (instead of the rounds: perf samples the gateway, then nginx's
# proxy worker, with call graphs, under the CONNECTIONS load for DURATION;
# reports go to PROFILE_OUT.{gateway,nginx}[.children].txt and the samples
# to PROFILE_OUT.{gateway,nginx}.data (for perf report -i), PROFILE_OUT
# defaulting to /tmp/gateway-profile; PROFILE_CALLGRAPH=dwarf for call
# graphs through code built without frame pointers, PROFILE_FREQ (2000);
# PROFILE_TOOL=strace counts system calls instead, into PROFILE_OUT.*.strace.txt),
# PROFILE_TOOL=callgrind (the gateway runs under valgrind's callgrind, and
# the instructions it executes per proxied request are counted over
# CALLGRIND_REQUESTS (20000) requests on one connection after a warm-up:
# a deterministic figure for comparing two builds where wall-clock runs
# move by ±15 %; the breakdown goes to PROFILE_OUT.callgrind.txt),
# FLOOR=1 (adds examples/proxy_floor.rs, a bare tokio + httparse proxy with
# none of the gateway's work, pinned like the proxies: how much of the gap to
# nginx is the runtime and the kernel, and how much the HTTP stack above).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-2}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-0}
LUA=$REPO/bench/wrk-report.lua

NAME=gateway.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

for tool in curl python3 taskset cargo wrk; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install wrk)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx is required: apt-get install nginx-light (or nginx)"

RESULTS=$WORK/results
: >"$RESULTS"
NGINX_PIDS=()
stop_nginx() {
    for pid in "${NGINX_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_nginx; cleanup' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

call() { # EXPECTED METHOD URL [BODY] [HEADER]
    local want=$1 method=$2 url=$3 body=${4:-} header=${5:-} code
    local args=(-sS -o "$WORK/resp" -w '%{http_code}' -X "$method" "$url")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    [[ -n "$header" ]] && args+=(-H "$header")
    code=$(curl "${args[@]}") || die "$method $url: curl failed"
    [[ "$code" == "$want" ]] || die "$method $url: HTTP $code, expected $want: $(head -c 600 "$WORK/resp")"
    cat "$WORK/resp"
}


# nginx NAME CPU CONFIG-BODY: one master + one worker in the foreground.
start_nginx() {
    local name=$1 cpu=$2 body=$3 dir=$WORK/nginx-$1
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    keepalive_requests 1000000;
$body
}
CONF
    taskset -c "$cpu" "$NGINX" -p "$dir" -c "$dir/nginx.conf" &
    NGINX_PIDS+=($!)
}

UP_PORT=$(free_port)
PROXY_PORT=$(free_port)
DEAD_PORT=$(free_port)
start_nginx upstream "$UPSTREAM_CPU" "    server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"ok\\n\"; } }"
start_nginx proxy "$SERVER_CPU" "    upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server { listen 127.0.0.1:$PROXY_PORT; location / {
        proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
UP=http://127.0.0.1:$UP_PORT
wait_http "$UP/"
wait_http "http://127.0.0.1:$PROXY_PORT/"

echo "== building Flagbase (cargo build --release)"
if [[ "${SKIP_BUILD:-}" != 1 && -z "${FLAGBASE_BIN:-}" ]]; then
    cargo build --release --quiet --bin flagbase
fi
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" = /* ]] || TARGET=$REPO/$TARGET
BIN=${FLAGBASE_BIN:-$TARGET/release/flagbase}
[[ -x "$BIN" ]] || die "no release binary at $BIN"
mkdir -p "$WORK/flagbase"
WRAP=()
EXTRA_SETTINGS=()
if [[ "${PROFILE:-}" == 1 && "${PROFILE_TOOL:-}" == callgrind ]]; then
    command -v valgrind >/dev/null || die "PROFILE_TOOL=callgrind needs valgrind (apt-get install valgrind)"
    WRAP=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out")
    # valgrind cannot reserve wasmtime's default instance pool.
    EXTRA_SETTINGS=(--set functions.max_concurrency=1 --set functions.max_memory_limit=67108864
        --set functions.default_memory_limit=67108864)
fi
(cd "$WORK/flagbase" && exec taskset -c "$SERVER_CPU" "${WRAP[@]}" "$BIN" --log-level warn \
    start --host 127.0.0.1 --port 0 --set events.nats_port=0 "${EXTRA_SETTINGS[@]}" >"$WORK/flagbase.out" 2>"$WORK/flagbase.err") &
SERVER_PID=$!
for _ in $(seq 1200); do grep -q '^Ready\.' "$WORK/flagbase.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^ *http: *//p' "$WORK/flagbase.out" | head -n1)
SETUP=$(sed -n 's/^ *setup token: *//p' "$WORK/flagbase.out" | head -n1)
[[ -n "$BASE" ]] || die "flagbase did not start: $(cat "$WORK/flagbase.err")"
JWT=$(call 201 POST "$BASE/setup" \
    "{\"token\":\"$SETUP\",\"email\":\"bench@example.com\",\"password\":\"correct horse battery\"}" | json token)
AUTH="Authorization: Bearer $JWT"
TOKEN=$(call 201 POST "$BASE/api/v1/tokens" '{"name":"bench","role":"user"}' "$AUTH" | json token)
call 201 POST "$BASE/api/v1/flags" '{"key":"bench-route","enabled":true,"default_value":false,"rules":[{"attribute":"role","operator":"equals","value":"user","variant":true}]}' "$AUTH" >/dev/null
call 201 POST "$BASE/api/v1/gateway/routes" "{\"path\":\"/gateway/bench\",\"flag_key\":\"bench-route\",\"target\":\"$UP\",\"fallback_target\":\"http://127.0.0.1:$DEAD_PORT\"}" "$AUTH" >/dev/null
GW_URL=$BASE/gateway/bench/
echo "   sample: $(call 200 GET "$GW_URL" "" "Authorization: Bearer $TOKEN")"
echo "== upstream $UP (cpu $UPSTREAM_CPU), nginx :$PROXY_PORT and flagbase $BASE (cpu $SERVER_CPU), wrk on cpu $CLIENT_CPU"

FLOOR_PID=
if [[ "${FLOOR:-}" == 1 ]]; then
    if [[ "${SKIP_BUILD:-}" != 1 ]]; then
        cargo build --release --quiet --example proxy_floor
    fi
    FLOOR_BIN=$TARGET/release/examples/proxy_floor
    [[ -x "$FLOOR_BIN" ]] || die "no $FLOOR_BIN (cargo build --release --example proxy_floor)"
    taskset -c "$SERVER_CPU" "$FLOOR_BIN" 127.0.0.1:0 "127.0.0.1:$UP_PORT" >"$WORK/floor.out" 2>&1 &
    FLOOR_PID=$!
    for _ in $(seq 50); do grep -q '^listening on ' "$WORK/floor.out" 2>/dev/null && break; sleep 0.1; done
    FLOOR_URL="http://$(sed -n 's/^listening on //p' "$WORK/floor.out")/"
    echo "   floor: $(curl -sS "$FLOOR_URL")"
fi
trap 'stop_nginx; [[ -n "$FLOOR_PID" ]] && kill "$FLOOR_PID" 2>/dev/null; cleanup' EXIT

# cpu_ticks PID: user + system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)

# The proxy nginx's worker (its master only forks it), whose CPU is measured
# like the gateway's: on a core shared with other work, CPU time per request
# compares the proxies where requests/s alone swing with the load.
NGINX_WORKER=$(pgrep -P "${NGINX_PIDS[1]}" | head -n1)
[[ -n "$NGINX_WORKER" ]] || die "no nginx proxy worker"

# bench LABEL CONNECTIONS URL [HEADER]
bench() {
    local label=$1 conns=$2 url=$3 header=${4:-} before after start end pid=
    local -a cmd=(taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" --latency -s "$LUA")
    case "$label" in
        gateway*) pid=$SERVER_PID ;;
        nginx*) pid=$NGINX_WORKER ;;
        floor*) pid=$FLOOR_PID ;;
    esac
    WRK_LABEL=warmup WRK_HEADER=$header "${cmd[@]}" -d"$WARMUP" "$url" >/dev/null
    [[ -n "$pid" ]] && before=$(cpu_ticks "$pid")
    start=$(date +%s.%N)
    WRK_LABEL=$label WRK_HEADER=$header "${cmd[@]}" -d"$DURATION" "$url" >"$WORK/wrk.out"
    [[ -n "$pid" ]] && after=$(cpu_ticks "$pid")
    end=$(date +%s.%N)
    local line
    line=$(grep '^RESULT ' "$WORK/wrk.out") || { cat "$WORK/wrk.out"; die "wrk failed for $label"; }
    if [[ -n "$pid" ]]; then
        line="$line cpu_pct=$(python3 -c "print(round(100*($after-$before)/$TICKS/($end-$start)))") rss_mib=$(( $(rss_kib "$pid") / 1024 ))"
    fi
    echo "$line" | tee -a "$RESULTS"
    grep -q 'non2xx=0 socket_errors=0' <<<"$line" || echo "  WARNING: $label had failed requests" >&2
}

if [[ "${PROFILE:-}" == 1 ]]; then
    command -v perf >/dev/null || die "PROFILE=1 needs perf (apt-get install linux-perf)"
    OUT=${PROFILE_OUT:-/tmp/gateway-profile}
    if [[ "${PROFILE_TOOL:-}" == callgrind ]]; then
        # Instructions per request: a fixed number of requests, one
        # connection, counted only between the toggles.
        n=${CALLGRIND_REQUESTS:-20000}
        python3 "$REPO/bench/fixed_requests.py" "$GW_URL" 2000 "Authorization: Bearer $TOKEN" >/dev/null
        callgrind_control -i on "$SERVER_PID" >/dev/null
        python3 "$REPO/bench/fixed_requests.py" "$GW_URL" "$n" "Authorization: Bearer $TOKEN"
        callgrind_control -i off "$SERVER_PID" >/dev/null
        callgrind_control -d "$SERVER_PID" >/dev/null
        sleep 1
        files=("$WORK"/callgrind.out.*); cp "${files[@]}" "$OUT.callgrind.out"
        total=0
        for f in "${files[@]}"; do
            ir=$(sed -n 's/^totals: *//p' "$f" | awk '{print $1}')
            total=$((total + ${ir:-0}))
        done
        callgrind_annotate --inclusive=no "${files[@]}" 2>/dev/null | head -n 80 >"$OUT.callgrind.txt" || true
        echo "INSTRUCTIONS per proxied request: $((total / n)) ($total over $n requests; breakdown in $OUT.callgrind.txt)"
        exit 0
    fi
    # profile LABEL PID URL [HEADER]
    profile() {
        if [[ "${PROFILE_TOOL:-perf}" == strace ]]; then
            # System calls per request: counts over the run, then divide.
            timeout -s INT "${DURATION%s}" strace -c -f -p "$2" -o "$OUT.$1.strace.txt" 2>/dev/null &
            local strace_pid=$!
            bench "profile.$1.c$CONNECTIONS" "$CONNECTIONS" "$3" "${4:-}"
            wait "$strace_pid" || true
            echo "SYSCALLS $1: $OUT.$1.strace.txt"
            return
        fi
        perf record -q ${PROFILE_CALLGRAPH:+--call-graph "$PROFILE_CALLGRAPH"} -g -F "${PROFILE_FREQ:-2000}" -p "$2" -o "$WORK/perf.data" -- sleep "${DURATION%s}" 2>/dev/null &
        local perf_pid=$!
        bench "profile.$1.c$CONNECTIONS" "$CONNECTIONS" "$3" "${4:-}"
        wait "$perf_pid" || true
        perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null >"$OUT.$1.txt"
        perf report -i "$WORK/perf.data" --children --sort sym --stdio -g none 2>/dev/null >"$OUT.$1.children.txt"
        mv "$WORK/perf.data" "$OUT.$1.data"
        echo "SUMMARY $1: $(grep -v '^#' "$OUT.$1.txt" | awk '{s[$2]+=$1} END {for (k in s) if (s[k] >= 0.5) printf "%s %.1f%%  ", k, s[k]}')"
    }
    profile gateway "$SERVER_PID" "$GW_URL" "Authorization: Bearer $TOKEN"
    profile nginx "$NGINX_WORKER" "http://127.0.0.1:$PROXY_PORT/"
    echo "== profiles: $OUT.{gateway,nginx}.txt (self), $OUT.{gateway,nginx}.children.txt (with callees)"
    exit 0
fi

for round in $(seq "$ROUNDS"); do
    echo "== round $round"
    for conns in "$CONNECTIONS" 1; do
        bench "direct.c$conns" "$conns" "$UP/"
        bench "nginx.c$conns" "$conns" "http://127.0.0.1:$PROXY_PORT/"
        bench "gateway.c$conns" "$conns" "$GW_URL" "Authorization: Bearer $TOKEN"
        if [[ -n "$FLOOR_PID" ]]; then bench "floor.c$conns" "$conns" "$FLOOR_URL"; fi
    done
done

echo
echo "== results (wrk -t1 -d$DURATION; proxies on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU, upstream on cpu $UPSTREAM_CPU)"
python3 - "$RESULTS" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    parts = line.split()
    rows.append((parts[1], dict(p.split("=", 1) for p in parts[2:])))
print(f"{'scenario':14} {'req/s':>8} {'p50 µs':>8} {'p99 µs':>8} {'cpu %':>6} {'CPU µs/req':>10} {'RSS MiB':>8} {'failed':>6}")
for name, f in rows:
    failed = int(f["non2xx"]) + int(f["socket_errors"])
    per = f"{10000 * int(f['cpu_pct']) / float(f['rps']):.1f}" if "cpu_pct" in f else ""
    print(f"{name:14} {f['rps']:>8} {1000*float(f['p50_ms']):>8.0f} {1000*float(f['p99_ms']):>8.0f} "
          f"{f.get('cpu_pct', ''):>6} {per:>10} {f.get('rss_mib', ''):>8} {failed:>6}")
# Added p50 with one connection: gateway (or nginx) minus direct, per round.
def p50(prefix):
    return [1000 * float(f["p50_ms"]) for n, f in rows if n == prefix]
d, n, g = p50("direct.c1"), p50("nginx.c1"), p50("gateway.c1")
for i in range(min(len(d), len(n), len(g))):
    print(f"round {i+1}: added p50 with one connection: nginx {n[i]-d[i]:.0f} µs, gateway {g[i]-d[i]:.0f} µs")
PY
