#!/usr/bin/env bash
# Fails when flagbase-bus's normal (non-dev) dependency tree contains the
# `flagbase` package or a crate the bus has no business with. The binary
# supplies authorisation through a hook, so the bus never needs the
# application; it may use tokio, but not HTTP or storage.
set -euo pipefail
cd "$(dirname "$0")"

forbidden=(flagbase axum hyper rusqlite wasmtime reqwest)
tree=$(cargo tree -p flagbase-bus -e normal --prefix none)

found=()
for name in "${forbidden[@]}"; do
    # Lines look like "tokio v1.40.0 (...)"; match the crate name exactly.
    if grep -Eq "^${name} v" <<<"$tree"; then
        found+=("$name")
    fi
done

if ((${#found[@]})); then
    echo "flagbase-bus depends on ${found[*]}" >&2
    exit 1
fi
echo "flagbase-bus is self-contained: none of ${forbidden[*]} in its dependency tree"
