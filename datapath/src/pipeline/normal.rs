//! The NORMAL action (OVS `xlate_normal`): VLAN admission, MAC learning
//! and look-up, unicast or flood with output VLAN translation, and the
//! decisions it leaves in the cache ([`NormalDecision`]).

use super::*;
use crate::key::FlowKey;
use crate::mac::MacTable;
use crate::packet::PacketBuf;
use crate::parse::consts::*;
use crate::parse::eth_type_vlan;
use crate::stats::DropReason;
use crate::trace::{TraceEvent, Tracer};
use crate::vlan::{Tag, Xvlan};

/// What NORMAL decided for a flow. The exact-match cache keeps it in its
/// hint (see [`NormalDecision::to_hint`]) so that the next frames of the
/// flow in the same second, with the same MAC table, skip learning and
/// look-up ([`Pipeline::normal_replay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NormalDecision {
    /// To one port (an index).
    Unicast {
        /// The port's index.
        port: u16,
        /// The frame leaves with the tags it came with (so it leaves
        /// unchanged).
        same_tags: bool,
    },
    /// To every port of the VLAN but the input port.
    Flood,
    /// Nowhere, for this reason.
    Drop(DropReason),
}

impl NormalDecision {
    // The hint's layout: the kind in bits 16-19, "same tags" in bit 20,
    // the port index or the drop reason in bits 0-15. A hint of 0 is none.
    const KIND: u32 = 0xf_0000;
    const UNICAST: u32 = 0x1_0000;
    const FLOOD: u32 = 0x2_0000;
    const DROP: u32 = 0x3_0000;
    const SAME_TAGS: u32 = 0x10_0000;
    const ARG: u32 = 0xffff;

    /// The decision as kept in the cache's hint (never 0).
    #[inline]
    pub(super) fn to_hint(self) -> u32 {
        match self {
            NormalDecision::Unicast { port, same_tags } => {
                Self::UNICAST | if same_tags { Self::SAME_TAGS } else { 0 } | u32::from(port)
            }
            NormalDecision::Flood => Self::FLOOD,
            NormalDecision::Drop(r) => Self::DROP | r as u32,
        }
    }

    /// The decision a hint holds (`None` for no decision).
    #[inline]
    pub(super) fn from_hint(val: u32) -> Option<NormalDecision> {
        let arg = val & Self::ARG;
        if val == 0 {
            None
        } else if val & Self::SAME_TAGS != 0 {
            Some(NormalDecision::Unicast {
                port: arg as u16,
                same_tags: true,
            })
        } else {
            Some(match val & Self::KIND {
                Self::UNICAST => NormalDecision::Unicast {
                    port: arg as u16,
                    same_tags: false,
                },
                Self::FLOOD => NormalDecision::Flood,
                _ => NormalDecision::Drop(
                    DropReason::ALL
                        .get(arg as usize)
                        .copied()
                        .unwrap_or(DropReason::ActionDrop),
                ),
            })
        }
    }

    /// The port of a hint that says "unicast, tags unchanged" (the frame
    /// leaves as it came, so only needs queueing), without decoding the
    /// rest.
    #[inline(always)]
    pub(super) fn unchanged_to(val: u32) -> Option<usize> {
        (val & Self::SAME_TAGS != 0).then_some((val & Self::ARG) as usize)
    }
}

impl Pipeline {
    /// The NORMAL action (OVS `xlate_normal`). Returns its decision, `None`
    /// when it may not be cached (see [`Pipeline::normal_replay`]).
    pub(super) fn normal<T: Tracer>(
        &mut self,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) -> Option<NormalDecision> {
        let Some(in_idx) = self.port_index(x.key().in_port()) else {
            x.skip(DropReason::NoSuchPort, t);
            return None;
        };
        let in_idx = in_idx as usize;
        let Some(xv) = self.normal_vlan(in_idx, x, t) else {
            return Some(NormalDecision::Drop(x.reason()));
        };
        let vlan = xv.v[0].vid;
        if T::ENABLED {
            t.record(TraceEvent::NormalVlan { vlan });
        }
        let dst = x.key().dl_dst();
        if is_reserved_mac(dst) {
            x.skip(DropReason::ReservedMulticast, t);
            return Some(NormalDecision::Drop(DropReason::ReservedMulticast));
        }
        let src = x.key().dl_src();
        let grat = is_gratuitous_arp(x.key());
        let (res, evicted) = if T::DRY {
            let r = self
                .mac
                .preview(src, vlan, in_idx as u16, x.now().secs(), grat);
            (r, None)
        } else {
            self.mac
                .learn_ex(src, vlan, in_idx as u16, x.now().secs(), grat)
        };
        if T::ENABLED {
            t.record(TraceEvent::Learn {
                vlan,
                mac: src,
                port: in_idx as u16,
                result: res,
                evicted,
            });
        }
        let found = self.mac.lookup(dst, vlan);
        if T::ENABLED && !crate::mac::is_multicast(dst) {
            t.record(TraceEvent::MacLookup {
                vlan,
                mac: dst,
                port: found,
            });
        }
        let decided = match found {
            Some(out) if out as usize != in_idx => {
                let mut after = x.vlans();
                self.ports[out as usize]
                    .cfg
                    .vlan
                    .output_translate(&xv)
                    .put(&mut after);
                let same_tags = Tag::same2(&after, &x.vlans());
                self.output_normal(out as usize, &xv, x, pkt, t);
                NormalDecision::Unicast {
                    port: out,
                    same_tags,
                }
            }
            Some(_) => {
                x.skip(DropReason::LearnedOnInPort, t);
                NormalDecision::Drop(DropReason::LearnedOnInPort)
            }
            None => {
                if T::ENABLED {
                    t.record(TraceEvent::Flood { vlan });
                }
                self.normal_flood(in_idx, &xv, x, pkt, t);
                NormalDecision::Flood
            }
        };
        // A gratuitous ARP must refresh its entry every time: never cached.
        (!grat).then_some(decided)
    }

    /// NORMAL's VLAN admission: the frame's VLAN inside the switch, or `None`
    /// (with the reason set) when NORMAL must drop it.
    #[inline]
    fn normal_vlan<T: Tracer>(&self, in_idx: usize, x: &mut Xlate, t: &mut T) -> Option<Xvlan> {
        if eth_type_vlan(x.key().dl_type()) && !x.vlans()[0].present() {
            x.skip(DropReason::PartialVlanTag, t);
            return None;
        }
        let in_x = Xvlan::extract(&x.vlans());
        let pv = &self.ports[in_idx].cfg.vlan;
        if !pv.input_vid_valid(in_x.v[0].vid) {
            x.skip(DropReason::VlanNotAllowed, t);
            return None;
        }
        Some(pv.input_translate(&in_x))
    }

    #[inline]
    fn normal_flood<T: Tracer>(
        &mut self,
        in_idx: usize,
        xv: &Xvlan,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let before = x.outputs();
        for idx in 0..self.ports.len() {
            if idx != in_idx && !self.ports[idx].down && self.ports[idx].cfg.vlan.includes(xv) {
                self.output_normal(idx, xv, x, pkt, t);
            }
        }
        if x.outputs() == before {
            x.skip(DropReason::NoFloodPort, t);
        }
    }

    /// Carries out a decision NORMAL made earlier for this same flow in this
    /// same second with this same MAC table, without learning or looking up
    /// again (learning would find nothing to change).
    #[inline]
    pub(super) fn normal_replay<T: Tracer>(
        &mut self,
        decided: NormalDecision,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        match decided {
            NormalDecision::Unicast {
                port,
                same_tags: true,
            } => {
                // Unicast, tags unchanged: admission and VLAN translation
                // were settled when the decision was made for this exact
                // flow.
                self.emit(port as usize, x, pkt, t);
            }
            NormalDecision::Unicast { .. } | NormalDecision::Flood => {
                let Some(in_idx) = self.port_index(x.key().in_port()) else {
                    return;
                };
                let Some(xv) = self.normal_vlan(in_idx as usize, x, t) else {
                    return;
                };
                if let NormalDecision::Unicast { port, .. } = decided {
                    self.output_normal(port as usize, &xv, x, pkt, t);
                } else {
                    self.normal_flood(in_idx as usize, &xv, x, pkt, t);
                }
            }
            NormalDecision::Drop(r) => x.skip(r, t),
        }
    }

    #[inline]
    fn output_normal<T: Tracer>(
        &mut self,
        out: usize,
        xv: &Xvlan,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let old = x.vlans();
        let mut v = old;
        self.ports[out].cfg.vlan.output_translate(xv).put(&mut v);
        x.set_vlans(v);
        self.emit(out, x, pkt, t);
        x.set_vlans(old);
    }

    /// The MAC learning table.
    pub fn mac_table(&self) -> &MacTable {
        &self.mac
    }

    /// Forgets all learned MACs.
    pub fn flush_macs(&mut self) {
        self.mac.flush();
    }
}

/// OVS's `is_gratuitous_arp`: a broadcast ARP reply, or a broadcast ARP
/// request whose sender and target addresses are equal.
#[inline]
fn is_gratuitous_arp(k: &FlowKey) -> bool {
    k.dl_type() == ETH_TYPE_ARP
        && k.dl_dst() == 0xffff_ffff_ffff
        && (k.nw_proto() == 2 || (k.nw_proto() == 1 && k.nw_src() == k.nw_dst()))
}

/// True for the destinations a bridge must never forward (OVS
/// `eth_addr_is_reserved`: IEEE 802.1D/Q reserved, Extreme, Cisco).
#[inline]
pub fn is_reserved_mac(mac: u64) -> bool {
    if mac & 0xffff_ffff_fff0 == 0x0180_c200_0000 {
        return true;
    }
    if mac & 0xffff_ffff_fff8 == 0x0100_0ccc_ccc0 {
        return true;
    }
    matches!(
        mac,
        0x00e0_2b00_0000
            | 0x00e0_2b00_0004
            | 0x00e0_2b00_0006
            | 0x0100_0c00_0000
            | 0x0100_0ccc_cccc
            | 0x0100_0ccc_cccd
            | 0x0100_0ccd_cdcd
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn every_decision_survives_the_cache_hint() {
        let mut all = vec![NormalDecision::Flood];
        for port in [0u16, 1, 0x7fff, 0xffff] {
            for same_tags in [false, true] {
                all.push(NormalDecision::Unicast { port, same_tags });
            }
        }
        all.extend(DropReason::ALL.iter().map(|&r| NormalDecision::Drop(r)));
        for d in all {
            let hint = d.to_hint();
            assert_ne!(hint, 0, "{d:?} must not look like no decision");
            assert_eq!(NormalDecision::from_hint(hint), Some(d), "hint {hint:#x}");
            let unchanged = matches!(
                d,
                NormalDecision::Unicast {
                    same_tags: true,
                    ..
                }
            );
            assert_eq!(
                NormalDecision::unchanged_to(hint).is_some(),
                unchanged,
                "{d:?}"
            );
        }
        assert_eq!(NormalDecision::from_hint(0), None);
    }

    #[test]
    fn normal_floods_then_learns() {
        let mut r = Rig::new(ports3(), &[]);
        let o = r.send(0, 1, &frame(B, A, None, 0x0800));
        assert_eq!((o[0].len(), o[1].len(), o[2].len()), (0, 1, 1));
        let o = r.send(1, 2, &frame(A, B, None, 0x0800));
        assert_eq!((o[0].len(), o[1].len(), o[2].len()), (1, 0, 0));
        // Learned on the input port: dropped.
        let o = r.send(0, 3, &frame(A, B, None, 0x0800));
        assert!(o.iter().all(|v| v.is_empty()));
        assert_eq!(
            r.p.port_stats(0)
                .map(|s| s.drops.get(DropReason::LearnedOnInPort)),
            Some(1)
        );
    }

    #[test]
    fn access_to_trunk_tags_and_back() {
        let mut c = ports3();
        c[0].vlan = PortVlan::access(10);
        c[1].vlan = PortVlan::access(20);
        let mut r = Rig::new(c, &[]);
        let o = r.send(0, 1, &frame(BCAST, A, None, 0x0800));
        assert!(o[1].is_empty(), "other access VLAN must not see it");
        assert_eq!(&o[2][0][12..16], &[0x81, 0x00, 0x00, 0x0a]);
        // Tagged VLAN 10 from the trunk reaches the access port untagged.
        let o = r.send(2, 2, &frame(A, B, Some((10, 3)), 0x0800));
        assert_eq!(o[0], vec![frame(A, B, None, 0x0800)]);
        // VLAN 20 broadcast from the trunk reaches only p2.
        let o = r.send(2, 3, &frame(BCAST, B, Some((20, 0)), 0x0800));
        assert_eq!((o[0].len(), o[1].len()), (0, 1));
        // A tagged frame on an access port is refused.
        let o = r.send(0, 4, &frame(BCAST, A, Some((10, 0)), 0x0800));
        assert!(o.iter().all(|v| v.is_empty()));
        assert_eq!(
            r.p.port_stats(0)
                .map(|s| s.drops.get(DropReason::VlanNotAllowed)),
            Some(1)
        );
    }

    #[test]
    fn native_untagged_pops_native_vlan() {
        let mut c = ports3();
        c[0].vlan =
            PortVlan::new(Some(VlanMode::NativeUntagged), Some(10), Some(&[10, 20])).expect("vlan");
        let mut r = Rig::new(c, &[]);
        let o = r.send(2, 1, &frame(BCAST, A, Some((10, 0)), 0x0800));
        assert_eq!(o[0], vec![frame(BCAST, A, None, 0x0800)]);
        let o = r.send(2, 2, &frame(BCAST, A, Some((20, 0)), 0x0800));
        assert_eq!(o[0], vec![frame(BCAST, A, Some((20, 0)), 0x0800)]);
    }

    #[test]
    fn reserved_multicast_is_not_forwarded_or_learned() {
        let mut r = Rig::new(ports3(), &[]);
        let o = r.send(0, 1, &frame(0x0180_c200_0000, A, None, 0x0026));
        assert!(o.iter().all(|v| v.is_empty()));
        assert!(r.p.mac_table().is_empty());
    }

    #[test]
    fn cached_normal_decisions_are_not_reused_after_resubmit_with_another_port() {
        let mut r = Rig::new(
            ports3(),
            &[
                "priority=10,in_port=1,actions=resubmit(2,0)",
                "priority=0,actions=normal",
            ],
        );
        const D: u64 = 0x0200_0000_000d;
        const S: u64 = 0x0200_0000_000e;
        r.send(0, 1, &frame(BCAST, D, None, 0x0800)); // D learned on p1
        let o = r.send(1, 1, &frame(D, S, None, 0x0800)); // S on p2 -> D on p1 (decision cached)
        assert_eq!(o[0].len(), 1);
        // S->D arriving on p1: NORMAL runs with in_port p1 (the lookup used p2),
        // learns S on p1 (a move) and finds D on p1: dropped, not hairpinned.
        let o = r.send(0, 1, &frame(D, S, None, 0x0800));
        assert!(o.iter().all(|v| v.is_empty()), "{o:?}");
        assert_eq!(r.p.mac_table().moves, 1);
    }

    #[test]
    fn normal_cache_follows_a_mac_move_in_the_same_second() {
        let mut r = Rig::new(ports3(), &[]);
        r.send(0, 1, &frame(BCAST, A, None, 0x0800));
        let o = r.send(1, 1, &frame(A, B, None, 0x0800));
        assert_eq!(o[0].len(), 1);
        let o = r.send(1, 1, &frame(A, B, None, 0x0800));
        assert_eq!(o[0].len(), 1, "second frame of the flow, from the cache");
        r.send(2, 1, &frame(BCAST, A, None, 0x0806)); // A moves to p3
        let o = r.send(1, 1, &frame(A, B, None, 0x0800));
        assert_eq!((o[0].len(), o[2].len()), (0, 1));
    }
}
