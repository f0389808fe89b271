# Shared by the bench scripts (sourced, not run): one temporary directory
# and at most one server process at a time, both cleaned up on exit.
# The sourcing script sets NAME (for messages) before sourcing.

die() { echo "bench/$NAME: $*" >&2; exit 1; }

WORK=$(mktemp -d -t "flagbase-$NAME.XXXXXX")
SERVER_PID=
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The field $1 of the JSON object on stdin.
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# Waits for "$1" to appear in file $2 (30 s), or for the server to exit.
wait_for_line() {
    for _ in $(seq 300); do
        grep -q "$1" "$2" 2>/dev/null && return 0
        [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null && break
        sleep 0.1
    done
    cat "$2" "$2.err" 2>/dev/null >&2 || true
    die "server did not print \"$1\""
}

# Waits until GET $1 answers at all (30 s).
wait_http() {
    for _ in $(seq 300); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    die "nothing answers at $1"
}
