//! xsw-control: the daemon's configuration and (later) its control plane,
//! shared by the `xswd` daemon and the `xsw` command.

pub mod config;
