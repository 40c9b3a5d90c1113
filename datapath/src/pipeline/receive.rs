//! Receive stage: rx counters, the runt check, ingress policing, parsing
//! into a flow key and the frame's priority.

use super::*;
use crate::key::FlowKey;
use crate::packet::PacketBuf;
use crate::parse::consts::*;
use crate::parse::{self, ETH_HEADER_LEN};
use crate::stats::DropReason;
use crate::trace::{TraceEvent, Tracer};
use crate::vlan::Tag;

impl Pipeline {
    /// Counts a frame that came in on `port` as dropped for `r` (no trace:
    /// see [`super::drop_frame`] for the traced paths).
    #[inline]
    pub(super) fn drop_on(&mut self, port: usize, r: DropReason) {
        self.ports[port].stats.drops.add(r, 1);
    }

    /// Receive stage: counts the frame, applies the length checks and parses
    /// it. `None` when it was dropped (and counted).
    #[inline(always)]
    pub(super) fn receive<T: Tracer>(
        &mut self,
        pkt: &mut PacketBuf,
        key: &mut FlowKey,
        t: &mut T,
    ) -> Option<Tag> {
        let len = pkt.len();
        let in_idx = pkt.meta.port as usize;
        let Some(port) = self.ports.get_mut(in_idx) else {
            if !T::DRY {
                self.unknown_port += 1;
            }
            return None;
        };
        if !T::DRY {
            port.stats.rx_packets += 1;
            port.stats.rx_bytes += len as u64;
        }
        // Like OVS, the MTU is enforced on send only (a device's own MTU
        // already bounds what it receives).
        if len < ETH_HEADER_LEN {
            drop_frame(&mut port.stats, DropReason::Runt, t);
            return None;
        }
        if let Some(pol) = port.police.as_mut() {
            let bits = len as u64 * 8;
            let ok = if T::DRY {
                pol.ready_at(pkt.meta.ts, bits) <= pkt.meta.ts
            } else {
                pol.conform(pkt.meta.ts, bits)
            };
            if !ok {
                drop_frame(&mut port.stats, DropReason::Policed, t);
                return None;
            }
        }
        let parsed = parse::extract(pkt.data(), port.cfg.ofport, key);
        if !T::DRY {
            port.stats.malformed.add(parsed.note);
        }
        // The frame's priority: its tag's PCP, else the ingress port's.
        pkt.meta.prio = match parsed.vlan {
            Some((_, tci)) => (tci >> 13) as u8,
            None if port.ingress_prio => {
                let ip = matches!(key.dl_type(), ETH_TYPE_IP | ETH_TYPE_IPV6);
                port.cfg
                    .qos
                    .as_ref()
                    .map_or(0, |q| q.ingress_prio(ip.then(|| key.nw_tos() >> 2)))
            }
            None => 0,
        };
        if T::ENABLED {
            t.record(TraceEvent::Parsed {
                key: *key,
                note: parsed.note,
                flags: parsed.flags,
            });
        }
        let tag0 = match parsed.vlan {
            Some((tpid, tci)) => Tag {
                tpid,
                tci: tci | VLAN_CFI,
            },
            None => Tag::default(),
        };
        Some(tag0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn malformed_frames_are_counted_once() {
        let mut r = Rig::new(ports3(), &[]);
        let mut f = frame(BCAST, A, None, 0x0800);
        f[14] = 0x44; // IHL 4
        r.send(0, 1, &f);
        assert_eq!(r.p.port_stats(0).map(|s| s.malformed.ipv4_invalid), Some(1));
    }

    #[test]
    fn runts_and_table_miss_are_counted() {
        let mut r = Rig::new(ports3(), &["in_port=2,actions=output:1"]);
        r.send(0, 1, &[1, 2, 3]);
        r.send(0, 1, &frame(B, A, None, 0x0800));
        let s = r.p.port_stats(0).copied().expect("stats");
        assert_eq!(s.drops.get(DropReason::Runt), 1);
        assert_eq!(s.drops.get(DropReason::TableMiss), 1);
        assert_eq!(s.rx_packets, 2);
    }
}
