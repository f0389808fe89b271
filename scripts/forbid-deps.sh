#!/usr/bin/env bash
# Fails when CRATE's normal (non-dev) dependency tree contains one of the
# crates named after it. Keeps the architecture's purity rules mechanical:
#   the engine is pure (no I/O or runtime crate), so SDKs and WASM can embed it;
#   the bus never depends on the application, HTTP or storage (the binary
#   supplies authorisation through a hook).
# Usage: scripts/forbid-deps.sh CRATE FORBIDDEN...
set -euo pipefail
cd "$(dirname "$0")/.."

crate=$1
shift
tree=$(cargo tree -p "$crate" -e normal --prefix none)

found=()
for name in "$@"; do
    # Lines look like "tokio v1.40.0 (...)"; match the crate name exactly.
    if grep -Eq "^${name} v" <<<"$tree"; then
        found+=("$name")
    fi
done

if ((${#found[@]})); then
    echo "$crate must not depend on ${found[*]}" >&2
    exit 1
fi
echo "$crate: none of $* in its dependency tree"
