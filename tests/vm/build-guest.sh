#!/bin/sh
# Builds the guest the VM tests boot under QEMU (software emulation): Debian's
# own kernel and a busybox initramfs with the virtio-net driver and an /init
# that configures eth0 and runs the job named on the kernel command line.
#
#   tests/vm/build-guest.sh OUTDIR      # writes OUTDIR/vmlinuz and OUTDIR/initrd.gz
#
# The packages (linux-image-*-amd64, busybox-static) are fetched once with
# `apt-get download` into $XSW_VM_CACHE (default /var/cache/xsw-vm) and
# unpacked there; nothing is installed on the host. Needs cpio and gzip.
set -eu
out=${1:?usage: build-guest.sh OUTDIR}
cache=${XSW_VM_CACHE:-/var/cache/xsw-vm}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$cache" "$out"
cd "$cache"
if ! ls linux-image-*.deb >/dev/null 2>&1; then
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "build-guest: no linux-image package for amd64 in apt's lists (apt-get update?)" >&2; exit 1; }
    apt-get download -q "$pkg" 2>/dev/null || apt-get download "$pkg"
fi
if ! ls busybox-static_*.deb >/dev/null 2>&1; then
    apt-get download -q busybox-static 2>/dev/null || apt-get download busybox-static
fi
[ -d kernel ] || { dpkg-deb -x linux-image-*.deb kernel.tmp && mv kernel.tmp kernel; }
[ -d busybox ] || { dpkg-deb -x busybox-static_*.deb busybox.tmp && mv busybox.tmp busybox; }
mods=$(ls -d kernel/lib/modules/*/kernel | head -1)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/lib" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp busybox/bin/busybox "$root/bin/busybox"
# The virtio-net driver and what it needs, in load order (all modules in
# Debian's kernel).
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
         drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover \
         drivers/net/net_failover drivers/net/virtio_net; do
    f="$mods/$m.ko"
    [ -f "$f" ] || f="$f.xz"
    [ -f "$f" ] || { echo "build-guest: $m.ko not in the kernel package" >&2; exit 1; }
    cp "$f" "$root/lib/"
done
cp "$here/guest-init.sh" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.gz.tmp"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
cp kernel/boot/vmlinuz-* "$out/vmlinuz"
echo "build-guest: $out/vmlinuz $out/initrd.gz"
