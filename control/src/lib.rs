//! xsw-control: the `xswd` daemon's building blocks and the `xsw` tool's
//! client side: configuration and state files, the control protocol, the
//! control server, metrics.

pub mod client;
pub mod config;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod spec;
pub mod store;
