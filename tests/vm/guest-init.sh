#!/bin/busybox sh
# /init of the test guest (see build-guest.sh). Kernel command line:
#   xsw.ip=ADDR/LEN   eth0's address
#   xsw.peer=ADDR     the host it talks to
#   xsw.job=JOB       download (read what the peer's TCP port 8080 sends until
#                     it closes), upload (4 MiB to the peer's TCP port 5000,
#                     then read until the peer closes), or both
# Results go to the console between markers the test looks for; then the
# guest powers off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    insmod /lib/$m.ko* || echo "XSW-GUEST insmod $m failed"
done
arg() { sed -n "s/.*xsw\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
ip=$(arg ip); peer=$(arg peer); job=$(arg job)
ip link set eth0 up
ip addr add "$ip" dev eth0
echo "XSW-GUEST-UP $ip"
# Wait for the path (the switch may start after the guest).
i=0
until ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 60 ] || { echo "XSW-GUEST no path to $peer"; break; }
done
case "$job" in download|both)
    if timeout 60 nc "$peer" 8080 < /dev/null > /tmp/blob 2>/tmp/err; then
        echo "XSW-DOWNLOAD $(md5sum /tmp/blob | cut -d' ' -f1) $(wc -c < /tmp/blob)"
    else
        echo "XSW-DOWNLOAD failed: $(cat /tmp/err)"
    fi
    rm -f /tmp/blob
esac
case "$job" in upload|both)
    dd if=/dev/urandom of=/tmp/up bs=65536 count=64 2>/dev/null
    echo "XSW-UPLOAD-SENDING $(md5sum /tmp/up | cut -d' ' -f1) $(wc -c < /tmp/up)"
    if timeout 60 nc "$peer" 5000 < /tmp/up 2>/tmp/err; then
        echo "XSW-UPLOAD done"
    else
        echo "XSW-UPLOAD failed: $(cat /tmp/err)"
    fi
esac
echo "XSW-GUEST-END"
poweroff -f
