#!/bin/sh
# Installs what building and testing xsw needs on Debian (run as root).
# Build: a C toolchain and pkg-config for the -sys crates, clang, libbpf and
# libelf for the XDP program, m4 for libxdp. Tests: Open vSwitch (the
# reference the scenarios are checked against), python3, tcpdump's tools,
# QEMU and cpio for the VM test (tests/vm/build-guest.sh fetches the guest's
# kernel and busybox with apt-get download, without installing them).
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config clang llvm libbpf-dev libelf-dev zlib1g-dev m4 \
    openvswitch-switch python3 iproute2 ethtool iputils-ping iperf3 linux-libc-dev \
    qemu-system-x86 cpio >/dev/null
# The openvswitch-switch package may start the system OVS; the tests run
# their own private instance and never touch it.
command -v cargo >/dev/null || { echo "setup: cargo not found: install a Rust toolchain (rustup)" >&2; exit 1; }
echo "setup: done"
