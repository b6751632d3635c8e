#!/usr/bin/env bash
# Babel convergence in the lab (issue 4's benchmark): 5 nodes, A-E underlay blocked, a ping
# every 10 ms from A's workload to E's, the relay in use cut 3 s in; the gap is the pings
# lost x 10 ms. Run as root from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -q -p braid --test convergence -- --ignored --nocapture
