#!/usr/bin/env bash
# braid's whole test suite: installs what the tests need, then format check, clippy and
# every test (lab tests need root; run this as root, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# The Debian packages the tests use.
./scripts/deps.sh

for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        log "adding rustup component $component"
        rustup component add "$component"
    fi
done

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test"
if [ "$(id -u)" -ne 0 ]; then
    echo "WARNING: not root: lab, data-plane and interop tests will SKIP (they say so loudly)" >&2
fi
# Two at a time: the lab tests move real traffic and time it, and this machine has two
# cores; more parallel tests only make them wait on each other (and flake).
cargo test --workspace -- --test-threads="${BRAID_TEST_THREADS:-2}"

log "all tests passed"
