//! OpenFlow actions (the subset xsw implements), with OVS's meanings.

use std::fmt;

use crate::key::Mac;

/// Port numbers reserved by OpenFlow 1.0 (OVS's `ofp_port_t`), above which no
/// real port can be numbered.
pub const OFPP_MAX: u16 = 0xff00;

/// One action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `output:N`: send to OpenFlow port N (skipped when N is the input port).
    Output(u16),
    /// `normal`: MAC learning switch.
    Normal,
    /// `flood`: every port but the input port.
    Flood,
    /// `all`: every port but the input port.
    All,
    /// `in_port`: back out of the input port.
    InPort,
    /// `mod_vlan_vid:V`: set the outer VID, pushing a tag (PCP 0) on an untagged frame.
    SetVlanVid(u16),
    /// `mod_vlan_pcp:P`: set the outer PCP, pushing a tag (VID 0) on an untagged frame.
    SetVlanPcp(u8),
    /// `strip_vlan` / `pop_vlan`: remove the outer tag, if any.
    StripVlan,
    /// `push_vlan:TPID`: push a new outer tag with VID 0 and PCP 0.
    PushVlan(u16),
    /// `mod_dl_src:MAC`.
    SetDlSrc(u64),
    /// `mod_dl_dst:MAC`.
    SetDlDst(u64),
    /// `set_queue:N`: egress queue for later outputs.
    SetQueue(u32),
    /// `resubmit([port],[table])`: look up `table` (None = the current table)
    /// with the input port replaced by `port` (None = unchanged), run the
    /// matching rule's actions, then continue here.
    Resubmit {
        /// Replacement input port for the lookup.
        in_port: Option<u16>,
        /// Table to look up.
        table: Option<u8>,
    },
    /// `goto_table:T`: continue in table T (must be last, T above this table).
    GotoTable(u8),
    /// `meter:N`: police the frame with meter N; over its rate, no later
    /// action runs (outputs made before it stand, as in Open vSwitch), and
    /// a frame that went nowhere is counted as a `meter` drop.
    Meter(u32),
}

impl fmt::Display for Action {
    /// Prints the action the way `ovs-ofctl dump-flows` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Output(p) => write!(f, "output:{p}"),
            Action::Normal => write!(f, "NORMAL"),
            Action::Flood => write!(f, "FLOOD"),
            Action::All => write!(f, "ALL"),
            Action::InPort => write!(f, "IN_PORT"),
            Action::SetVlanVid(v) => write!(f, "mod_vlan_vid:{v}"),
            Action::SetVlanPcp(p) => write!(f, "mod_vlan_pcp:{p}"),
            Action::StripVlan => write!(f, "strip_vlan"),
            Action::PushVlan(t) => write!(f, "push_vlan:0x{t:04x}"),
            Action::SetDlSrc(m) => write!(f, "mod_dl_src:{}", Mac(m)),
            Action::SetDlDst(m) => write!(f, "mod_dl_dst:{}", Mac(m)),
            Action::SetQueue(q) => write!(f, "set_queue:{q}"),
            Action::Meter(m) => write!(f, "meter:{m}"),
            Action::Resubmit { in_port, table } => match (in_port, table) {
                (Some(p), None) => write!(f, "resubmit:{p}"),
                (p, t) => {
                    write!(f, "resubmit(")?;
                    if let Some(p) = p {
                        write!(f, "{p}")?;
                    }
                    write!(f, ",")?;
                    if let Some(t) = t {
                        write!(f, "{t}")?;
                    }
                    write!(f, ")")
                }
            },
            Action::GotoTable(t) => write!(f, "goto_table:{t}"),
        }
    }
}

/// Prints an action list as `ovs-ofctl` does (`drop` when empty).
#[derive(Debug)]
pub struct Actions<'a>(pub &'a [Action]);

impl fmt::Display for Actions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "drop");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
