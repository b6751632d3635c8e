#!/usr/bin/env bash
# Installs the Debian packages braid's lab and tests use (as root): iproute2 (ip, tc),
# nftables and iptables (the impairment forwarder's NFQUEUE rules) for the lab, ping,
# util-linux (nsenter), wireguard-go and wireguard-tools as interop peers, iperf3 for
# throughput, wrk to load the status listener, babeld and bird2 for routing, and for the
# VM test of kernel WireGuard and VRF (crates/braid/tests/vm.rs): qemu-system-x86,
# busybox-static, kmod (depmod), cpio and binutils (strip); for the service tests
# (crates/braid/tests/service.rs, package.rs): systemd (systemd-analyze verify; not
# started), zsh and fish (the generated completions), man-db (man, groff); chromium, headless,
# to load the status page (crates/braid/tests/page.rs). Packages already installed are
# skipped.
set -euo pipefail

PACKAGES=(iproute2 nftables iptables iputils-ping procps util-linux wireguard-go wireguard-tools iperf3 wrk babeld bird2
    qemu-system-x86 busybox-static kmod cpio binutils systemd zsh fish man-db chromium)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "WARNING: not root, cannot install ${missing[*]}; what needs them will skip or fail" >&2
        exit 0
    fi
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
