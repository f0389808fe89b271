#!/usr/bin/env bash
# Installs what the tests need beyond Rust:
#   * `cc`, `node` >= 18, `npm`, `python3` with pip: with apt-get when run as
#     root on Debian or Ubuntu (checked, and named if missing, otherwise)
#   * the Node packages in tests/interop/node   (npm ci, from the lock file)
#   * the Python packages in tests/interop/python/requirements.txt  (pip)
#   * `nats-server` (Debian package, /usr/sbin/nats-server): the bus tests
#     run it as the external server and as the reference for side-by-side
#     protocol checks
#   * Debian's `chromium` and the Node packages in sdks/js/test-browser
#     (playwright-core), for the JavaScript SDK's headless browser test
#   * the Node packages in tests/ui (playwright-core, axe-core), for the
#     web console's browser tests (tests/integration/console_ui*.rs)
# The OpenFeature interop tests (tests/interop/, run by
# tests/integration/ofrep_interop.rs) use the Node and Python packages;
# tests/integration/sdk_js.rs uses Chromium and playwright-core.
#
# Idempotent and silent when everything is already in place. If something
# cannot be installed it prints exactly what is missing and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_DIR=tests/interop/node
REQUIREMENTS=tests/interop/python/requirements.txt
STAMP=$NODE_DIR/node_modules/.flagbase-lock.sha256
MIN_NODE=18
BROWSER_DIR=sdks/js/test-browser
BROWSER_STAMP=$BROWSER_DIR/node_modules/.flagbase-lock.sha256
CONSOLE_UI_DIR=tests/ui
CONSOLE_UI_STAMP=$CONSOLE_UI_DIR/node_modules/.flagbase-lock.sha256
CHROMIUM=/usr/bin/chromium

missing=()

# --- tools: installed with apt-get when we are root on Debian/Ubuntu --------
# check_tools fills `apt_packages` (what apt-get would install) and
# `tool_problems` (one line each, naming the exact fix).
check_tools() {
    apt_packages=()
    tool_problems=()
    node_ok=false
    python_ok=false
    if ! command -v cc >/dev/null 2>&1; then
        # Rust links with it, and the bundled SQLite is compiled with it.
        apt_packages+=(gcc libc6-dev)
        tool_problems+=("a C compiler (cc): install one (Debian: apt-get install gcc libc6-dev)")
    fi
    if command -v node >/dev/null 2>&1; then
        node_version=$(node --version 2>/dev/null || true)
        node_major=${node_version#v}
        node_major=${node_major%%.*}
        if [[ "$node_major" =~ ^[0-9]+$ ]] && (( node_major >= MIN_NODE )); then
            node_ok=true
        else
            tool_problems+=("node >= $MIN_NODE (found ${node_version:-an unknown version}): install Node.js $MIN_NODE or newer")
        fi
    else
        apt_packages+=(nodejs)
        tool_problems+=("node >= $MIN_NODE: install Node.js $MIN_NODE or newer (Debian: apt-get install nodejs npm)")
    fi
    if ! command -v npm >/dev/null 2>&1; then
        apt_packages+=(npm)
        tool_problems+=("npm: install it (Debian: apt-get install npm)")
        node_ok=false
    fi
    if [[ ! -x /usr/sbin/nats-server ]]; then
        apt_packages+=(nats-server)
        tool_problems+=("nats-server at /usr/sbin/nats-server: install it (Debian: apt-get install nats-server)")
    fi
    if [[ ! -x "$CHROMIUM" ]]; then
        apt_packages+=(chromium)
        tool_problems+=("Chromium at $CHROMIUM: install it (Debian: apt-get install chromium)")
    fi
    if command -v python3 >/dev/null 2>&1; then
        if python3 -m pip --version >/dev/null 2>&1; then
            python_ok=true
        else
            apt_packages+=(python3-pip)
            tool_problems+=("pip for python3: install it (Debian: apt-get install python3-pip)")
        fi
    else
        apt_packages+=(python3 python3-pip)
        tool_problems+=("python3: install Python 3.10 or newer (Debian: apt-get install python3 python3-pip)")
    fi
}

check_tools
if (( ${#apt_packages[@]} )) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${apt_packages[*]} with apt-get"
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
    fi
    rm -f "$log"
    check_tools
elif (( ${#apt_packages[@]} )) && command -v apt-get >/dev/null 2>&1; then
    tool_problems+=("or, as root, all at once: apt-get install -y ${apt_packages[*]}")
fi
missing+=("${tool_problems[@]}")

# --- Node packages -------------------------------------------------------
if $node_ok; then
    lock_hash=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
    if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$lock_hash" ]]; then
        echo "installing the Node interop packages (npm ci in $NODE_DIR)"
        if (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
            echo "$lock_hash" >"$STAMP"
        else
            missing+=("the Node packages: \`npm ci\` failed in $NODE_DIR (see above)")
        fi
    fi
fi

# --- Node packages for the browser test ---------------------------------
if $node_ok; then
    lock_hash=$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)
    if [[ ! -f "$BROWSER_STAMP" || "$(cat "$BROWSER_STAMP")" != "$lock_hash" ]]; then
        echo "installing playwright-core (npm ci in $BROWSER_DIR)"
        if (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
            echo "$lock_hash" >"$BROWSER_STAMP"
        else
            missing+=("playwright-core: \`npm ci\` failed in $BROWSER_DIR (see above)")
        fi
    fi
fi

# --- Node packages for the console's browser tests (tests/ui) ----------
if $node_ok; then
    lock_hash=$(sha256sum "$CONSOLE_UI_DIR/package-lock.json" | cut -d' ' -f1)
    if [[ ! -f "$CONSOLE_UI_STAMP" || "$(cat "$CONSOLE_UI_STAMP")" != "$lock_hash" ]]; then
        echo "installing playwright-core and axe-core (npm ci in $CONSOLE_UI_DIR)"
        if (cd "$CONSOLE_UI_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
            echo "$lock_hash" >"$CONSOLE_UI_STAMP"
        else
            missing+=("playwright-core/axe-core: \`npm ci\` failed in $CONSOLE_UI_DIR (see above)")
        fi
    fi
fi

# --- Python packages -----------------------------------------------------
# Satisfied when every pinned `name==version` is installed at that version
# and the provider imports.
python_satisfied() {
    python3 - "$REQUIREMENTS" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition("==")
    try:
        if version(name.strip()) != pinned.strip():
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
import openfeature.api, openfeature.contrib.provider.ofrep, pytest  # noqa
PY
}

if $python_ok && ! python_satisfied; then
    echo "installing the Python interop packages (pip install -r $REQUIREMENTS)"
    log=$(mktemp)
    if ! python3 -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >"$log" 2>&1; then
        if grep -q externally-managed-environment "$log"; then
            # Debian's system Python refuses global installs (PEP 668);
            # the user site is still on python3's path.
            echo "system Python is externally managed: installing with --user"
            python3 -m pip install --quiet --disable-pip-version-check --user \
                --break-system-packages -r "$REQUIREMENTS" >"$log" 2>&1 || true
        fi
    fi
    if ! python_satisfied; then
        cat "$log" >&2
        missing+=("the Python packages: \`python3 -m pip install -r $REQUIREMENTS\` failed (see above)")
    fi
    rm -f "$log"
fi

if (( ${#missing[@]} )); then
    echo "scripts/install-test-deps.sh: cannot set up the tests; missing:" >&2
    for m in "${missing[@]}"; do
        echo "  - $m" >&2
    done
    exit 1
fi
