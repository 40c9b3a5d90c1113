//! xsw-datapath: the switching pipeline of xsw.
//!
//! A frame travels `Port::rx_burst` → [`parse`] (a [`FlowKey`]) → flow tables
//! ([`classifier`], fronted by the exact-match cache in [`emc`]) → actions
//! (including NORMAL: [`mac`] learning and [`vlan`] translation) → per-port egress
//! queues → `Port::tx_burst`. Everything here runs without privileges and
//! builds without a C toolchain: the ports here are in memory and pcap files
//! ([`port`]), and the replay driver in [`replay`] runs the same
//! [`pipeline::Pipeline`] on captures. The live switch (the polling engine,
//! AF_XDP and tap ports, the XDP program) is the `xsw-live` crate, which
//! drives this pipeline through the [`port::Port`] trait. [`check`] compares
//! a scenario's replay with its expected outputs (`xsw test`).
//!
//! Semantics follow Open vSwitch 3.1 with its defaults (OpenFlow 1.0 + Nicira
//! extensions for `ovs-ofctl add-flow`, NORMAL with `vlan-limit=1`,
//! `priority-tags=never`, `forward-bpdu=false`, 300 s MAC aging, 8192 MACs). Where
//! we differ on purpose, the code says so.

pub mod check;
pub mod classifier;
pub mod clock;
pub mod csum;
pub mod emc;
pub mod error;
pub mod flow;
pub mod gso;
pub mod hash;
pub mod key;
pub mod mac;
pub mod packet;
pub mod parse;
pub mod pcap;
pub mod pipeline;
pub mod port;
pub mod qos;
pub mod replay;
pub mod sim;
pub mod spec;
pub mod stats;
pub mod table;
pub mod trace;
pub mod vlan;

pub use clock::Timestamp;
pub use error::Error;
pub use key::FlowKey;
