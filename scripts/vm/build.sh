#!/usr/bin/env bash
# Builds what the VM test boots: Debian's stock kernel (vmlinuz) and an initramfs with
# busybox-static, iproute2's ip, wireguard-tools' wg, iputils' ping, the braid binary under
# test, the kernel modules braid needs (WireGuard and its crypto, vrf, dummy, veth, tun,
# sch_netem, and bridge for the node's workload bridge), /init and the guest test script.
#
# usage: build.sh BRAID_BINARY OUT_DIR
#   The kernel package is downloaded once into $BRAID_VM_CACHE (default /var/cache/braid-vm)
#   with `apt-get download`; BRAID_VM_KERNEL_DEB=path/to/linux-image-*.deb uses that one.
# Exit status: 0 built; 2 something the VM needs cannot be had here (the reason is on
# stderr, the test skips); anything else is a failure.
set -euo pipefail

BRAID=${1:?usage: build.sh BRAID_BINARY OUT_DIR}
OUT=${2:?usage: build.sh BRAID_BINARY OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${BRAID_VM_CACHE:-/var/cache/braid-vm}
MODULES=(wireguard vrf dummy veth tun sch_netem bridge)

unavailable() {
    echo "UNAVAILABLE: $*" >&2
    exit 2
}

for tool in busybox dpkg-deb depmod cpio gzip strip ldd; do
    command -v "$tool" >/dev/null || unavailable "$tool is not installed (scripts/deps.sh installs it)"
done
BUSYBOX=$(command -v busybox)
ldd "$BUSYBOX" >/dev/null 2>&1 && unavailable "$BUSYBOX is not static; install busybox-static"
for tool in ip wg ping; do
    command -v "$tool" >/dev/null || unavailable "$tool is not installed (scripts/deps.sh installs it)"
done

# --- the kernel package ---------------------------------------------------------------
mkdir -p "$CACHE"
deb=${BRAID_VM_KERNEL_DEB:-}
if [ -z "$deb" ]; then
    # linux-image-amd64 is a metapackage; its dependency is the real image.
    image() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
    pkg=$(image)
    if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >&2 || true
        pkg=$(image)
    fi
    [ -n "$pkg" ] || unavailable "apt-cache knows no linux-image-amd64 (run apt-get update)"
    deb=$(ls "$CACHE"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        echo "== downloading $pkg into $CACHE" >&2
        (cd "$CACHE" && apt-get download -q "$pkg" >&2) || unavailable "apt-get download $pkg failed"
        deb=$(ls "$CACHE"/"${pkg}"_*.deb | head -n1)
    fi
fi
[ -f "$deb" ] || unavailable "kernel package $deb is missing"
tree="$CACHE/$(basename "$deb" .deb)"
if [ ! -f "$tree/.extracted" ]; then
    rm -rf "$tree"
    mkdir -p "$tree"
    dpkg-deb -x "$deb" "$tree"
    touch "$tree/.extracted"
fi
version=$(ls "$tree/lib/modules" | head -n1)
[ -n "$version" ] || { echo "no modules in $deb" >&2; exit 1; }
[ -f "$tree/lib/modules/$version/modules.dep" ] || depmod -b "$tree" "$version"
vmlinuz="$tree/boot/vmlinuz-$version"
[ -f "$vmlinuz" ] || { echo "no vmlinuz in $deb" >&2; exit 1; }

# --- the initramfs --------------------------------------------------------------------
rm -rf "$OUT"
root="$OUT/root"
mkdir -p "$root"/{bin,bbin,usr/bin,usr/sbin,lib/modules,etc,proc,sys,dev,run,tmp,var,cfg}
ln -s ../run "$root/var/run"
cp "$BUSYBOX" "$root/bin/busybox"

# Binaries with the shared libraries ldd lists, and the loader, at their own paths.
copy_with_libs() {
    local bin=$1 dest=$2
    cp "$bin" "$root$dest"
    ldd "$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
copy_with_libs "$(command -v ip)" /usr/sbin/ip
copy_with_libs "$(command -v wg)" /usr/bin/wg
copy_with_libs "$(command -v ping)" /usr/bin/ping
# babeld, for the Babel-in-a-VRF checks, when this machine has it (scripts/deps.sh installs it).
if command -v babeld >/dev/null; then
    copy_with_libs "$(command -v babeld)" /usr/sbin/babeld
fi
strip --strip-debug -o "$OUT/braid" "$BRAID"
copy_with_libs "$OUT/braid" /usr/bin/braid

# Modules in load order: each one's dependencies (modules.dep lists them so that the last
# loads first) before it, once each. Compressed modules are unpacked here: busybox insmod
# may not read them.
moddir="$tree/lib/modules/$version"
declare -A seen=()
order=()
add_module() {
    local path=$1
    [ -n "${seen[$path]:-}" ] && return
    local line deps
    line=$(grep -E "^${path}:" "$moddir/modules.dep") || { echo "module $path not in modules.dep" >&2; exit 1; }
    read -r -a deps <<<"${line#*:}"
    local i
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add_module "${deps[i]}"; done
    seen[$path]=1
    order+=("$path")
}
for m in "${MODULES[@]}"; do
    path=$(grep -E "(^|/)${m}\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -n1 | cut -d: -f1)
    [ -n "$path" ] || { echo "module $m is not in $deb" >&2; exit 1; }
    add_module "$path"
done
n=0
for path in "${order[@]}"; do
    n=$((n + 1))
    name=$(basename "$path")
    target="$root/lib/modules/$(printf %02d $n)-${name%%.ko*}.ko"
    case "$path" in
        *.ko.xz) xz -dc "$moddir/$path" >"$target" ;;
        *.ko.zst) zstd -qdc "$moddir/$path" >"$target" ;;
        *.ko.gz) gzip -dc "$moddir/$path" >"$target" ;;
        *) cp "$moddir/$path" "$target" ;;
    esac
done

cp "$HERE/init.sh" "$root/init"
cp "$HERE/guest.sh" "$root/guest.sh"
chmod +x "$root/init" "$root/guest.sh"
echo "$version" >"$root/etc/kernel-version"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$OUT/initramfs.gz"
cp "$vmlinuz" "$OUT/vmlinuz"
echo "$version" >"$OUT/kernel-version"
echo "== built $OUT (kernel $version, modules: ${#order[@]}, initramfs $(du -h "$OUT/initramfs.gz" | cut -f1))" >&2
