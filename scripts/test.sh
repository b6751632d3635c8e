#!/usr/bin/env bash
# braid's whole test suite: installs what the tests need, then format check, clippy and
# every test (lab tests need root; run this as root, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Debian packages the tests use: iproute2 (ip, tc) and nftables for the lab, iputils-ping
# for reachability, wireguard-go and wireguard-tools as interop peers, iperf3 for
# throughput, wrk to load the status listener, babeld and bird2 for routing.
PACKAGES=(iproute2 nftables iputils-ping procps util-linux wireguard-go wireguard-tools iperf3 wrk babeld bird2)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "WARNING: not root, cannot install ${missing[*]}; tests that need them will skip" >&2
    fi
fi

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
cargo test --workspace -- --test-threads="${BRAID_TEST_THREADS:-4}"

log "all tests passed"
