//! The crate's error type.

use std::path::PathBuf;

use crate::flow::syntax::FlowError;
use crate::pcap::PcapError;

/// Everything that can go wrong outside the per-packet path (per-packet
/// problems are counted as drops, never returned as errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A capture file is unreadable as pcap/pcapng.
    #[error("{}: {source}", path.display())]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: PcapError,
    },
    /// A configuration file has a problem at a known place.
    #[error("{}:{line}:{col}: {msg}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A flow rule in a file does not parse.
    #[error("{}:{line}:{}: {source}", path.display(), source.col())]
    Flow {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parse error (carries the column).
        source: FlowError,
    },
    /// A configuration is inconsistent as a whole.
    #[error("{0}")]
    Invalid(String),
    /// A port failed.
    #[error("port {port}: {msg}")]
    Port {
        /// Port name.
        port: String,
        /// What happened.
        msg: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
