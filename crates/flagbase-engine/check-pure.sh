#!/usr/bin/env bash
# Fails when flagbase-engine's normal (non-dev) dependency tree contains an
# I/O or runtime crate. The engine must stay pure so it can be embedded in
# SDKs, WASM and the CLI; dev-dependencies (criterion, yggdrasil) are exempt.
set -euo pipefail
cd "$(dirname "$0")"

forbidden=(tokio axum hyper rusqlite wasmtime reqwest async-nats)
tree=$(cargo tree -p flagbase-engine -e normal --prefix none)

found=()
for name in "${forbidden[@]}"; do
    # Lines look like "tokio v1.40.0 (...)"; match the crate name exactly.
    if grep -Eq "^${name} v" <<<"$tree"; then
        found+=("$name")
    fi
done

if ((${#found[@]})); then
    echo "flagbase-engine is not pure: depends on ${found[*]}" >&2
    exit 1
fi
echo "flagbase-engine is pure: none of ${forbidden[*]} in its dependency tree"
