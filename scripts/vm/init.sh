#!/bin/busybox sh
# /init of the VM test's initramfs: mounts, loads the modules in order, runs /guest.sh and
# powers off. Every result line starts with "VMTEST" (read by crates/braid/tests/vm.rs).
/bin/busybox mkdir -p /bbin
/bin/busybox --install -s /bbin
export PATH=/usr/sbin:/usr/bin:/bbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "VMTEST BOOT kernel $(uname -r)"
for m in /lib/modules/*.ko; do
    insmod "$m" || echo "VMTEST FAIL insmod $m"
done
ip link set lo up
sh /guest.sh
echo "VMTEST END"
sync
poweroff -f
# If poweroff did not work, ending init panics the kernel, and -no-reboot stops qemu.
