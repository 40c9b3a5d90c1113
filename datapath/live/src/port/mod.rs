//! The live switch's port backends, each an [`xsw_datapath::port::Port`]:
//! interfaces driven through AF_XDP ([`afxdp`]) and tap devices xsw holds
//! ([`tap`]), with what they need to know about interfaces ([`netdev`]).

pub mod afxdp;
pub mod netdev;
pub mod tap;
