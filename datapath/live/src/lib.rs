//! xsw-live: the live switch. Bridges of real ports (AF_XDP interfaces with
//! xsw's XDP classifier, internal tap devices) driven by one polling thread,
//! and the commands the control plane sends it.
//!
//! - [`engine`]: the polling engine ([`engine::Engine`]), its bridges, the
//!   XDP drop rules it pushes into the kernel, and the typed
//!   [`engine::EngineHandle`] through which other threads command it;
//! - [`port`]: the privileged port backends ([`port::afxdp`],
//!   [`port::tap`]) and what they read about interfaces ([`port::netdev`]),
//!   implementing [`xsw_datapath::port::Port`];
//! - [`sys`]: the system calls all of the above (and the daemon) make,
//!   wrapped so that every result is checked.
//!
//! The switching itself (parsing, flow tables, NORMAL, QoS) is
//! [`xsw_datapath`], which builds and runs without privileges or a C
//! toolchain; this crate needs root at run time and clang plus libbpf to
//! build (through `xsw-ebpf`).

pub mod engine;
pub mod error;
pub mod port;
pub mod sys;

pub use error::Error;
