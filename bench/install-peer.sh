#!/usr/bin/env bash
# Installs the benchmark peer, Unleash Edge, from crates.io into a directory
# OUTSIDE the repository (default: ../.peer-tools next to the checkout), where
# bench/http.sh looks for it. The binary is never committed.
#
# A long build (~15-25 min on 2 cores). Settings (environment):
#   PEER_ROOT           install root (binary in $PEER_ROOT/bin/unleash-edge)
#   EDGE_VERSION        crate version (default 20.1.0)
#   CARGO_TARGET_DIR    build directory (default: a temp dir, removed after)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PEER_ROOT=${PEER_ROOT:-$(dirname "$REPO")/.peer-tools}
EDGE_VERSION=${EDGE_VERSION:-20.1.0}

if [[ -x "$PEER_ROOT/bin/unleash-edge" ]] \
    && cargo install --list --root "$PEER_ROOT" | grep -qx "unleash-edge v$EDGE_VERSION:"; then
    echo "unleash-edge $EDGE_VERSION is already installed in $PEER_ROOT/bin"
    exit 0
fi

cleanup_target=
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    CARGO_TARGET_DIR=$(mktemp -d -t unleash-edge-build.XXXXXX)
    cleanup_target=$CARGO_TARGET_DIR
    export CARGO_TARGET_DIR
fi
trap '[[ -n "$cleanup_target" ]] && rm -rf "$cleanup_target"' EXIT

echo "building unleash-edge $EDGE_VERSION into $PEER_ROOT (this takes a while)"
# No default features: they only add S3 persistence, which offline mode
# does not use, and a long AWS SDK build.
nice -n 19 cargo install unleash-edge --version "$EDGE_VERSION" --locked \
    --no-default-features --root "$PEER_ROOT"
echo "installed: $PEER_ROOT/bin/unleash-edge (unleash-edge $EDGE_VERSION)"
