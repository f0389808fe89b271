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
