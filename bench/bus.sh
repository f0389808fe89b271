#!/usr/bin/env bash
# NATS bus benchmark: the embedded bus (crates/flagbase-bus, its `serve`
# example) against nats-server from Debian, same workload, same client
# (the `loadgen` example), in one run. See docs/benchmarks.md.
#
# Each server runs alone, pinned to one CPU (SERVER_CPU), the load generator
# to the other (CLIENT_CPU), on loopback. Rows, for each server:
#   pub→sub 16 B        one publisher, one subscriber
#   pub→sub 1 KiB       one publisher, one subscriber
#   fan-out 16 B ×4     one publisher, four subscribers (deliveries/s, summed)
#   … paced             the pub→sub rows with the publisher pacing itself:
#                       a PING after every 64 KiB batch, at most 16 batches
#                       unanswered (so no server needs to stall it)
#   req/rep 16 B seq    one requester, one responder, one request at a time
#   req/rep 16 B ×64    the same with 64 requests in flight
# Every row is a warm-up then a measured window; rates are what arrived at
# the subscribers (or round trips completed) in the window. After the
# window the client checks that every message published arrived at every
# subscriber and every request was answered; anything missing is reported.
# RSS is the server's VmHWM (peak resident set) read from /proc at the end.
#
# The machine may be shared, so the servers take turns: ROUNDS rounds, each
# running every row on one server then the other (the order alternates), a
# fresh server process each time. The table gives each row's median rate
# over the rounds, the messages lost in all rounds, and each server's
# highest peak RSS.
#
# CPU is each server's own CPU time (user + system, from /proc) over the
# whole row, divided by the messages delivered (round trips for req/rep): on
# a shared machine the rates depend on how much of its core each server is
# given, this does much less.
#
# SCHED says how the servers and the client are scheduled, the same for
# both servers: `fifo` (the default as root) runs them under SCHED_FIFO
# (`chrt -f 10`), so that other work on a shared machine (compilers) does
# not take their cores from them mid-row: the kernel's real-time throttling
# still leaves that work 5 % of each core, and it waits while the rows run.
# `nice` runs them at niceness NICE (-10 as root, else 0): other work then
# competes for the cores, and a server with more threads gets a larger
# share of its core.
#
# Settings (environment): DURATION (5, seconds), WARMUP (2), ROUNDS (3),
# SCHED, NICE, SERVER_CPU (1), CLIENT_CPU (0), NATS_SERVER
# (/usr/sbin/nats-server), SKIP_BUILD=1, ONLY (a regex: only the rows whose
# label matches, e.g. ONLY='req/rep').
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
if [[ $(id -u) == 0 ]]; then
    NICE=${NICE:--10} SCHED=${SCHED:-fifo}
else
    NICE=${NICE:-0} SCHED=${SCHED:-nice}
fi
case $SCHED in
    fifo) PRIORITY=(chrt -f 10) ;;
    nice) PRIORITY=(nice -n "$NICE") ;;
    *) echo "bench/bus.sh: SCHED is fifo or nice, not $SCHED" >&2; exit 1 ;;
esac
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
NATS_SERVER=${NATS_SERVER:-/usr/sbin/nats-server}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/release/examples

NAME=bus.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

for tool in taskset cargo chrt; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if [[ ! -x "$NATS_SERVER" ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "nats-server is missing: installing it (apt-get install -y nats-server)"
        apt-get install -y -q nats-server >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q nats-server >/dev/null; } \
            || die "cannot install nats-server; install the Debian package \`nats-server\`"
    else
        die "$NATS_SERVER is missing: install the Debian package \`nats-server\` (as root: apt-get install nats-server) or set NATS_SERVER"
    fi
fi

if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "building: cargo build --release -p flagbase-bus --examples"
    cargo build --release -q -p flagbase-bus --examples
fi
for example in serve loadgen; do
    [[ -x "$TARGET/$example" ]] || die "$TARGET/$example is missing (build without SKIP_BUILD)"
done


free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited at start-up: $(cat "$WORK/server.log")"
        sleep 0.05
    done
    die "nothing listens on port $1: $(cat "$WORK/server.log")"
}

# field NAME LINE: the value of NAME=value in a RESULT line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

ROWS=(
    "pub→sub 16 B|pubsub 16 1"
    "pub→sub 1 KiB|pubsub 1024 1"
    "fan-out 16 B ×4|pubsub 16 4"
    "pub→sub 16 B paced|pubsub 16 1 16"
    "pub→sub 1 KiB paced|pubsub 1024 1 16"
    "req/rep 16 B seq|reqrep 16 1"
    "req/rep 16 B ×64|reqrep 16 64"
)
# ONLY: run just the rows whose label matches this extended regex.
if [[ -n "${ONLY:-}" ]]; then
    kept=()
    for row in "${ROWS[@]}"; do [[ "${row%%|*}" =~ $ONLY ]] && kept+=("$row"); done
    ((${#kept[@]})) || die "no row matches ONLY=$ONLY"
    ROWS=("${kept[@]}")
fi
declare -A RATE LOSS CUT RSS CPU

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))

# run_server ROUND NAME COMMAND...: starts the server pinned, runs every row,
# keeps the rates, the losses and its peak RSS.
run_server() {
    local round=$1 name=$2 row label args line port before count
    shift 2
    port=$(free_port)
    "${PRIORITY[@]}" taskset -c "$SERVER_CPU" "$@" "$port" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$port"
    for row in "${ROWS[@]}"; do
        label=${row%%|*}
        read -r -a args <<<"${row#*|}"
        before=$(cpu_ticks "$SERVER_PID")
        line=$("${PRIORITY[@]}" taskset -c "$CLIENT_CPU" timeout 120 "$TARGET/loadgen" "${args[0]}" \
            "127.0.0.1:$port" "${args[1]}" "${args[2]}" "$WARMUP" "$DURATION" "${args[@]:3}" | grep '^RESULT') \
            || die "$name, $label: the load generator failed"
        count=$(field received "$line")$(field completed "$line")
        CPU[$name|$label]+="$((($(cpu_ticks "$SERVER_PID") - before) * TICK_NS / (count > 0 ? count : 1))) "
        echo "round $round, $name, $label: $line"
        RATE[$name|$label]+="$(field rate "$line") "
        LOSS[$name|$label]=$((${LOSS[$name|$label]:-0} + $(field lost "$line")))
        CUT[$name|$label]=$((${CUT[$name|$label]:-0} + $(field cut_off "$line" | grep . || echo 0)))
    done
    kill -0 "$SERVER_PID" 2>/dev/null || die "$name exited during the run: $(cat "$WORK/server.log")"
    local rss
    rss=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    echo "round $round, $name, peak RSS: $rss kB"
    if ((rss > ${RSS[$name]:-0})); then RSS[$name]=$rss; fi
    stop_server
}

# The bus's `serve` takes host:port; nats-server takes -a and -p.
serve_bus() { exec "$TARGET/serve" "127.0.0.1:$1"; }
serve_nats() { exec "$NATS_SERVER" -a 127.0.0.1 -p "$1"; }
export TARGET NATS_SERVER
export -f serve_bus serve_nats

echo "server CPU $SERVER_CPU, client CPU $CLIENT_CPU, warm-up ${WARMUP}s, measured ${DURATION}s, $ROUNDS rounds, scheduling: ${PRIORITY[*]}"
echo "$("$NATS_SERVER" --version)"
for round in $(seq "$ROUNDS"); do
    if ((round % 2)); then
        run_server "$round" bus bash -c 'serve_bus "$0"'
        run_server "$round" nats-server bash -c 'serve_nats "$0"'
    else
        run_server "$round" nats-server bash -c 'serve_nats "$0"'
        run_server "$round" bus bash -c 'serve_bus "$0"'
    fi
done

# median "N N N ...": the middle value (the lower middle of an even count).
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# lost NAME LABEL: messages lost in all rounds, and subscribers cut off.
lost() {
    local cut=${CUT[$1|$2]}
    if ((cut > 0)); then echo "${LOSS[$1|$2]} (cut off: $cut)"; else echo "${LOSS[$1|$2]}"; fi
}

# fmt N: N with thin groups of three digits, as the other tables.
fmt() { sed ':a;s/\B[0-9]\{3\}\>/ &/;ta' <<<"$1"; }
echo
echo "Median of $ROUNDS rounds (rates per second); lost: in all rounds together."
echo
echo "| Row | bus /s | lost | nats-server /s | lost | bus / nats | CPU ns/msg bus | nats-server |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do
    label=${row%%|*}
    b=$(median "${RATE[bus|$label]}") n=$(median "${RATE[nats-server|$label]}")
    ratio=$(awk -v b="$b" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", b / n; else print "-" }')
    echo "| $label | $(fmt "$b") | $(lost bus "$label") | $(fmt "$n") | $(lost nats-server "$label") | $ratio | $(fmt "$(median "${CPU[bus|$label]}")") | $(fmt "$(median "${CPU[nats-server|$label]}")") |"
done
echo "| peak RSS (VmHWM, highest of the rounds) | $(fmt "${RSS[bus]}") kB | | $(fmt "${RSS[nats-server]}") kB | | $(awk -v b="${RSS[bus]}" -v n="${RSS[nats-server]}" 'BEGIN { printf "%.2f", b / n }') | | |"
