#!/usr/bin/env bash
# Fast reroute (issue 13): 4 lab nodes, a ping every 10 ms from node 1's workload to node 4's
# over the direct link 1-4; the 1-4 underlay is cut, then restored. Prints, for babel and
# bird with braid's defaults and with braid's liveness off (the routing daemon's own
# detection at the same hello interval), the longest gap after the cut and when node 1
# routes over the direct link again after the restore. Run as root from the repository.
# BRAID_CONVERGENCE_MODES="babel" limits the modes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -q -p braid --test convergence -- --ignored --nocapture convergence_benchmark
