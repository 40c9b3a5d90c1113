//! The crate's error type.

/// Setting up the live switch failed (per-packet problems are counted, and
/// a failing command is a [`crate::engine::CallError`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port's device could not be opened.
    #[error("port {port}: {msg}")]
    Port {
        /// Port name (`bridge/port` once the bridge is known).
        port: String,
        /// What happened and what to do.
        msg: String,
    },
    /// A bridge was given a different number of devices than ports.
    #[error("bridge {bridge}: {ports} ports but {devices} devices")]
    Devices {
        /// Bridge name.
        bridge: String,
        /// Ports defined.
        ports: usize,
        /// Devices given.
        devices: usize,
    },
    /// The pipeline refused the bridge's configuration.
    #[error(transparent)]
    Pipeline(#[from] xsw_datapath::Error),
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// The call, e.g. `eventfd`.
        call: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}
