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

# cargo-deny for `cargo deny check` below (deny.toml), built from crates.io once
# (about 16 minutes on a loaded 2-core machine), then found on PATH and skipped. Pinned:
# the advisory database path below is this version's hash of deny.toml's db-urls entry.
CARGO_DENY_VERSION=0.20.2
if ! cargo-deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
    log "installing cargo-deny $CARGO_DENY_VERSION"
    cargo install --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi

log "cargo deny check"
# deny.toml: licences, bans (duplicates warn), sources, advisories. The advisory database is
# the snapshot in vendor/rustsec-advisory-db (CI cannot reach its git host), laid out where
# cargo-deny looks for deny.toml's db-urls entry (the directory name is cargo-deny's hash
# of that URL), with FETCH_HEAD dated to the snapshot so cargo-deny sees its true age.
advisory_db=target/advisory-dbs/advisory-db-3157b0e258782691
snapshot_date=$(sed -n 's/^date=//p' vendor/rustsec-advisory-db/SNAPSHOT)
rm -rf "$advisory_db"
mkdir -p "$advisory_db/.git"
cp -r vendor/rustsec-advisory-db/crates "$advisory_db/"
touch -d "$snapshot_date" "$advisory_db/.git/FETCH_HEAD"
snapshot_age_days=$((($(date +%s) - $(date -d "$snapshot_date" +%s)) / 86400))
echo "advisory database snapshot of $snapshot_date ($snapshot_age_days days old)"
if ((snapshot_age_days > 90)); then
    echo "WARNING: the advisory database snapshot is over 90 days old: refresh vendor/rustsec-advisory-db (its SNAPSHOT file says how)" >&2
fi
cargo deny --offline check

log "rust-version and lints inherited by every crate"
# One MSRV (clippy's incompatible_msrv reads it) and one set of lints, from the root Cargo.toml.
for manifest in crates/*/Cargo.toml; do
    for line in 'rust-version.workspace = true' 'workspace = true'; do
        grep -qxF "$line" "$manifest" || { echo "$manifest lacks \"$line\" ([package] rust-version / [lints])" >&2; exit 1; }
    done
    grep -qxF '[lints]' "$manifest" || { echo "$manifest lacks [lints] workspace = true" >&2; exit 1; }
done

log "cargo test"
if [ "$(id -u)" -ne 0 ]; then
    echo "WARNING: not root: lab, data-plane and interop tests will SKIP (they say so loudly)" >&2
fi
# Two at a time: the lab tests move real traffic and time it, and this machine has two
# cores; more parallel tests only make them wait on each other (and flake).
cargo test --workspace -- --test-threads="${BRAID_TEST_THREADS:-2}"

# The fault suite's table (crates/braid/tests/faults.rs writes it; the test harness keeps a
# passing test's output to itself).
if [ -f target/tmp/faults.txt ]; then
    log "fault suite"
    cat target/tmp/faults.txt
fi

log "all tests passed"
