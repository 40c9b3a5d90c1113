//! xsw-control: the `xswd` daemon's building blocks and the `xsw` tool's
//! client side: configuration and state files, the control protocol, the
//! control server, metrics.

//!
//! With the default `daemon` feature the daemon's modules (`config`,
//! `metrics`, `server`, `store`) and the live switch under them are built;
//! without it, only what the `xsw` command needs, which builds with no C
//! toolchain for BPF.

pub mod client;
#[cfg(feature = "daemon")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod metrics;
pub mod proto;
#[cfg(feature = "daemon")]
pub mod server;
pub mod spec;
#[cfg(feature = "daemon")]
pub mod store;
