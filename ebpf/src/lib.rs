//! xsw-ebpf: the XDP classifier that runs on every port (drop, steer to the
//! switch's AF_XDP socket, or pass to the host stack).
//!
//! The BPF program and its loader arrive with the fast-path work; this crate
//! holds its place in the workspace so the dependency direction
//! (control → datapath → ebpf) is fixed from the start.
