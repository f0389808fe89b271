#!/usr/bin/env bash
# HTTP evaluation load benchmark: Flagbase, and Unleash Edge as the peer when
# it is installed (bench/install-peer.sh). See docs/benchmarks.md.
#
# The server runs pinned to one CPU, wrk to another (loopback only):
#   Flagbase  (a) GET  /api/v1/flags/{key}/evaluate        one flag (JWT, API token)
#             (a') POST /ofrep/v1/evaluate/flags/{key}     one flag over OFREP
#             (b) POST /ofrep/v1/evaluate/flags            bulk, 20 flags
#             (c) POST /ofrep/v1/evaluate/flags            bulk, 500 flags
#   Edge      (a) GET  /api/frontend/features/{name}       one flag
#             (b) GET  /api/frontend/all                   20 features (all, like OFREP bulk)
#                 GET  /api/frontend                       20 features (only the enabled ones)
#             (c) the same two with 500 features
# Every flag has one attribute rule and a 25 % rollout; the context
# (user-42, plan=free) misses the rule, so the rollout is computed.
#
# Settings (environment): DURATION (10s), WARMUP (2s), CONNECTIONS (32),
# THREADS (1), SERVER_CPU (1), CLIENT_CPU (0), PEER_BIN, SKIP_BUILD=1,
# FLAGBASE_BIN (a flagbase binary to measure instead of building one).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PEER_ROOT=${PEER_ROOT:-$(dirname "$REPO")/.peer-tools}
PEER_BIN=${PEER_BIN:-$PEER_ROOT/bin/unleash-edge}
LUA=$REPO/bench/wrk-report.lua
CONTEXT_KEY=user-42

NAME=http.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

for tool in curl python3 taskset cargo; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if ! command -v wrk >/dev/null; then
    echo "wrk is missing: installing it (apt-get install -y wrk)"
    apt-get install -y -q wrk >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
        || die "cannot install wrk; install the Debian package \`wrk\`"
fi


RESULTS=$WORK/results
: >"$RESULTS"

# ---------------------------------------------------------------- helpers
# json FIELD: prints a top-level field of the JSON on stdin.

# call EXPECTED_STATUS METHOD URL [BODY] [HEADER]: prints the body; dies on
# another status.
call() {
    local want=$1 method=$2 url=$3 body=${4:-} header=${5:-} code
    local args=(-sS -o "$WORK/resp" -w '%{http_code}' -X "$method" "$url")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    [[ -n "$header" ]] && args+=(-H "$header")
    code=$(curl "${args[@]}") || die "$method $url: curl failed"
    [[ "$code" == "$want" ]] || die "$method $url: HTTP $code, expected $want: $(head -c 600 "$WORK/resp")"
    cat "$WORK/resp"
}

# bench LABEL METHOD URL BODY HEADER: a warm-up run, then the measured run.
bench() {
    local label=$1 method=$2 url=$3 body=$4 header=$5
    local -a cmd=(taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" --latency -s "$LUA")
    WRK_LABEL=warmup WRK_METHOD=$method WRK_BODY=$body WRK_HEADER=$header \
        "${cmd[@]}" -d"$WARMUP" "$url" >/dev/null
    WRK_LABEL=$label WRK_METHOD=$method WRK_BODY=$body WRK_HEADER=$header \
        "${cmd[@]}" -d"$DURATION" "$url" >"$WORK/wrk.out"
    local line
    line=$(grep '^RESULT ' "$WORK/wrk.out") || { cat "$WORK/wrk.out"; die "wrk failed for $label"; }
    echo "$line" | tee -a "$RESULTS"
    if ! grep -q 'non2xx=0 socket_errors=0' <<<"$line"; then
        echo "  WARNING: $label had failed requests; the figures above are not valid" >&2
    fi
}



flag_json() {
    printf '{"key":"%s","enabled":true,"default_value":false,"rollout_percentage":25,"rules":[{"attribute":"plan","operator":"equals","value":"pro","variant":true,"priority":0}]}' "$1"
}

# ---------------------------------------------------------------- Flagbase
echo "== building Flagbase (cargo build --release)"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    cargo build --release --quiet --bin flagbase
fi
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" = /* ]] || TARGET=$REPO/$TARGET
BIN=${FLAGBASE_BIN:-$TARGET/release/flagbase}
[[ -x "$BIN" ]] || die "no release binary at $BIN"

mkdir -p "$WORK/flagbase"
(cd "$WORK/flagbase" && exec taskset -c "$SERVER_CPU" "$BIN" --log-level warn \
    start --host 127.0.0.1 --port 0 >"$WORK/flagbase.out" 2>"$WORK/flagbase.out.err") &
SERVER_PID=$!
wait_for_line '^Ready\.' "$WORK/flagbase.out"
BASE=$(sed -n 's/^ *http: *//p' "$WORK/flagbase.out" | head -n1)
SETUP=$(sed -n 's/^ *setup token: *//p' "$WORK/flagbase.out" | head -n1)
echo "== Flagbase $("$BIN" --version 2>/dev/null || true) at $BASE (pid $SERVER_PID, cpu $SERVER_CPU)"

JWT=$(call 201 POST "$BASE/setup" \
    "{\"token\":\"$SETUP\",\"email\":\"bench@example.com\",\"password\":\"correct horse battery\"}" | json token)
API_TOKEN=$(call 201 POST "$BASE/api/v1/tokens" '{"name":"bench","role":"user"}' \
    "Authorization: Bearer $JWT" | json token)

create_flags() { # FROM TO
    for i in $(seq "$1" "$2"); do
        call 201 POST "$BASE/api/v1/flags" "$(flag_json "$(printf 'bench-%03d' "$i")")" \
            "Authorization: Bearer $JWT" >/dev/null
    done
}
count_flags() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)["flags"]))'; }

create_flags 1 20
OFREP_BODY="{\"context\":{\"targetingKey\":\"$CONTEXT_KEY\",\"plan\":\"free\"}}"
EVAL_URL="$BASE/api/v1/flags/bench-001/evaluate?plan=free"
echo "   sample (a):  $(call 200 GET "$EVAL_URL" "" "Authorization: Bearer $JWT")"
echo "   sample (a'): $(call 200 POST "$BASE/ofrep/v1/evaluate/flags/bench-001" "$OFREP_BODY" "Authorization: Bearer $API_TOKEN")"
n=$(call 200 POST "$BASE/ofrep/v1/evaluate/flags" "$OFREP_BODY" "Authorization: Bearer $API_TOKEN" | count_flags)
[[ "$n" == 20 ]] || die "bulk evaluation returned $n flags, expected 20"

bench flagbase.eval.1flag.jwt GET "$EVAL_URL" "" "Authorization: Bearer $JWT"
bench flagbase.eval.1flag.apitoken GET "$EVAL_URL" "" "Authorization: Bearer $API_TOKEN"
bench flagbase.ofrep.1flag POST "$BASE/ofrep/v1/evaluate/flags/bench-001" "$OFREP_BODY" "Authorization: Bearer $API_TOKEN"
bench flagbase.ofrep.bulk20 POST "$BASE/ofrep/v1/evaluate/flags" "$OFREP_BODY" "Authorization: Bearer $API_TOKEN"

create_flags 21 500
n=$(call 200 POST "$BASE/ofrep/v1/evaluate/flags" "$OFREP_BODY" "Authorization: Bearer $API_TOKEN" | count_flags)
[[ "$n" == 500 ]] || die "bulk evaluation returned $n flags, expected 500"
bench flagbase.ofrep.bulk500 POST "$BASE/ofrep/v1/evaluate/flags" "$OFREP_BODY" "Authorization: Bearer $API_TOKEN"
stop_server

# ---------------------------------------------------------------- the peer
if [[ ! -x "$PEER_BIN" ]]; then
    echo "== peer not installed: run bench/install-peer.sh (looked for $PEER_BIN)"
else
    EDGE_TOKEN='*:development.flagbase-bench-frontend-token'
    EDGE_PORT=${EDGE_PORT:-3063}
    # Unleash client-features bootstrap with N features equivalent to
    # Flagbase's: a constraint plan IN [pro], else a 25 % gradual rollout.
    bootstrap() {
        python3 - "$1" <<'PY'
import json, sys
n = int(sys.argv[1])
features = []
for i in range(1, n + 1):
    name = f"bench-{i:03d}"
    features.append({
        "name": name, "type": "release", "enabled": True, "project": "default",
        "strategies": [
            {"name": "default", "parameters": {},
             "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]},
            {"name": "flexibleRollout", "constraints": [],
             "parameters": {"rollout": "25", "stickiness": "default", "groupId": name}},
        ],
    })
print(json.dumps({"version": 2, "features": features}))
PY
    }
    start_edge() { # N
        bootstrap "$1" >"$WORK/edge-$1.json"
        (cd "$WORK" && exec taskset -c "$SERVER_CPU" "$PEER_BIN" \
            --port "$EDGE_PORT" --interface 127.0.0.1 \
            offline --bootstrap-file "$WORK/edge-$1.json" \
            --client-tokens "$EDGE_TOKEN" --frontend-tokens "$EDGE_TOKEN" \
            >"$WORK/edge.out" 2>&1) &
        SERVER_PID=$!
        EDGE=http://127.0.0.1:$EDGE_PORT
        wait_http "$EDGE/internal-backstage/health"
    }
    count_toggles() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)["toggles"]))'; }
    EDGE_QUERY="userId=$CONTEXT_KEY&properties%5Bplan%5D=free"
    EDGE_AUTH="Authorization: $EDGE_TOKEN"

    start_edge 20
    echo "== peer: unleash-edge ($PEER_BIN) offline at $EDGE (pid $SERVER_PID, cpu $SERVER_CPU)"
    echo "   sample (a): $(call 200 GET "$EDGE/api/frontend/features/bench-001?$EDGE_QUERY" "" "$EDGE_AUTH")"
    n=$(call 200 GET "$EDGE/api/frontend/all?$EDGE_QUERY" "" "$EDGE_AUTH" | count_toggles)
    [[ "$n" == 20 ]] || die "edge /api/frontend/all returned $n features, expected 20"
    on=$(call 200 GET "$EDGE/api/frontend?$EDGE_QUERY" "" "$EDGE_AUTH" | count_toggles)
    echo "   $on of 20 features are on for $CONTEXT_KEY (/api/frontend lists only those)"
    bench edge.frontend.1flag GET "$EDGE/api/frontend/features/bench-001?$EDGE_QUERY" "" "$EDGE_AUTH"
    # /api/frontend/all evaluates and returns every feature, like OFREP bulk;
    # /api/frontend returns only the enabled ones (a smaller response).
    bench edge.frontend.all20 GET "$EDGE/api/frontend/all?$EDGE_QUERY" "" "$EDGE_AUTH"
    bench edge.frontend.enabled20 GET "$EDGE/api/frontend?$EDGE_QUERY" "" "$EDGE_AUTH"
    stop_server

    start_edge 500
    n=$(call 200 GET "$EDGE/api/frontend/all?$EDGE_QUERY" "" "$EDGE_AUTH" | count_toggles)
    [[ "$n" == 500 ]] || die "edge /api/frontend/all returned $n features, expected 500"
    on=$(call 200 GET "$EDGE/api/frontend?$EDGE_QUERY" "" "$EDGE_AUTH" | count_toggles)
    echo "   $on of 500 features are on for $CONTEXT_KEY"
    bench edge.frontend.all500 GET "$EDGE/api/frontend/all?$EDGE_QUERY" "" "$EDGE_AUTH"
    bench edge.frontend.enabled500 GET "$EDGE/api/frontend?$EDGE_QUERY" "" "$EDGE_AUTH"
    stop_server
fi

# ---------------------------------------------------------------- summary
echo
echo "== results (wrk -t$THREADS -c$CONNECTIONS -d$DURATION, server on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU)"
python3 - "$RESULTS" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    parts = line.split()
    fields = dict(p.split("=", 1) for p in parts[2:])
    rows.append((parts[1], fields))
print(f"{'scenario':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'B/resp':>8} {'failed':>6}")
for name, f in rows:
    failed = int(f["non2xx"]) + int(f["socket_errors"])
    print(f"{name:32} {f['rps']:>9} {float(f['p50_ms']):>8.3f} {float(f['p99_ms']):>8.3f} {f['bytes_per_req']:>8} {failed:>6}")
PY
