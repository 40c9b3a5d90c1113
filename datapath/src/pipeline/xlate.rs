use super::*;
use crate::clock::Timestamp;
use crate::flow::Action;
use crate::key::{Field, FlowKey};
use crate::packet::{PacketBuf, NO_QUEUE};
use crate::parse::consts::*;
use crate::stats::DropReason;
use crate::trace::{TraceEvent, Tracer};
use crate::vlan::Tag;

/// Per-frame translation state.
pub(super) struct Xlate {
    pub(super) key: FlowKey,
    pub(super) vlans: [Tag; 2],
    pub(super) base_vlans: [Tag; 2],
    /// The frame arrived with a VLAN tag.
    pub(super) in_tagged: bool,
    pub(super) macs_dirty: bool,
    pub(super) in_len: usize,
    pub(super) now: Timestamp,
    pub(super) table: u8,
    /// Nesting of rule executions (for traces).
    pub(super) depth: u8,
    /// Nesting of resubmits to the same or an earlier table (OVS's limit).
    pub(super) rdepth: u8,
    pub(super) resubmits: u32,
    pub(super) outputs: u32,
    pub(super) reason: DropReason,
    pub(super) error: Option<DropReason>,
    /// A meter dropped the frame: no further action runs, and the outputs
    /// made before stand (as in Open vSwitch's datapath).
    pub(super) halted: bool,
    pub(super) queue: u32,
    /// The last output so far: (port, queue chosen when it was output).
    pub(super) pending: Option<(u16, u32, u8)>,
    /// A `mod_vlan_pcp` set the outer tag's PCP: it is the frame's priority.
    pub(super) pcp_set: bool,
}

impl Pipeline {
    #[inline(always)]
    pub(super) fn xlate_for(pkt: &PacketBuf, key: FlowKey, tag0: Tag) -> Xlate {
        Xlate {
            key,
            vlans: [tag0, Tag::default()],
            base_vlans: [tag0, Tag::default()],
            in_tagged: tag0.present(),
            macs_dirty: false,
            in_len: pkt.len(),
            now: pkt.meta.ts,
            table: 0,
            depth: 0,
            rdepth: 0,
            resubmits: 0,
            outputs: 0,
            reason: DropReason::ActionDrop,
            error: None,
            halted: false,
            queue: NO_QUEUE,
            pending: None,
            pcp_set: false,
        }
    }

    /// Applies OVS's resubmit limits: at most 4096 resubmits per frame, and
    /// at most 64 nested resubmits to the same or an earlier table (forward
    /// jumps cannot loop). Returns how much the nesting grew, or `None` with
    /// the translation failed (the whole frame is then dropped).
    #[inline]
    pub(super) fn enter_resubmit(table: u8, x: &mut Xlate) -> Option<u8> {
        if x.resubmits >= MAX_RESUBMITS {
            x.error = Some(DropReason::ResubmitLimit);
            return None;
        }
        x.resubmits += 1;
        if table <= x.table {
            if x.rdepth >= MAX_DEPTH {
                x.error = Some(DropReason::ResubmitLimit);
                return None;
            }
            x.rdepth += 1;
            return Some(1);
        }
        Some(0)
    }

    #[inline]
    pub(super) fn sync_tci(x: &mut Xlate) {
        let tci = if x.vlans[0].present() {
            x.vlans[0].tci
        } else {
            0
        };
        x.key.set(Field::VlanTci, tci as u64);
    }

    pub(super) fn skip<T: Tracer>(x: &mut Xlate, r: DropReason, t: &mut T) {
        x.reason = r;
        if T::ENABLED {
            t.record(TraceEvent::Skip { reason: r });
        }
    }

    pub(super) fn do_action<T: Tracer>(
        &mut self,
        a: Action,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        match a {
            Action::Output(p) => {
                if p == x.key.in_port() {
                    Self::skip(x, DropReason::OutputToInPort, t);
                } else {
                    match self.port_index(p) {
                        Some(idx) => self.emit(idx as usize, x, pkt, t),
                        None => Self::skip(x, DropReason::NoSuchPort, t),
                    }
                }
            }
            Action::InPort => match self.port_index(x.key.in_port()) {
                Some(idx) => self.emit(idx as usize, x, pkt, t),
                None => Self::skip(x, DropReason::NoSuchPort, t),
            },
            Action::Flood | Action::All => {
                let in_of = x.key.in_port();
                let before = x.outputs;
                for idx in 0..self.ports.len() {
                    if self.ports[idx].cfg.ofport != in_of {
                        self.emit(idx, x, pkt, t);
                    }
                }
                if x.outputs == before {
                    Self::skip(x, DropReason::NoFloodPort, t);
                }
            }
            Action::Normal => {
                self.normal(x, pkt, t);
            }
            Action::SetVlanVid(v) => {
                let t0 = &mut x.vlans[0];
                if t0.tpid == 0 {
                    t0.tpid = ETH_TYPE_VLAN;
                }
                t0.tci = (t0.tci & !VLAN_VID_MASK) | (v & VLAN_VID_MASK) | VLAN_CFI;
                Self::sync_tci(x);
            }
            Action::SetVlanPcp(p) => {
                let t0 = &mut x.vlans[0];
                if t0.tpid == 0 {
                    t0.tpid = ETH_TYPE_VLAN;
                }
                t0.tci = (t0.tci & !VLAN_PCP_MASK) | ((p as u16 & 7) << 13) | VLAN_CFI;
                x.pcp_set = true;
                Self::sync_tci(x);
            }
            Action::StripVlan => {
                x.vlans[0] = x.vlans[1];
                x.vlans[1] = Tag::default();
                Self::sync_tci(x);
            }
            Action::PushVlan(tpid) => {
                x.vlans[1] = x.vlans[0];
                x.vlans[0] = Tag {
                    tpid,
                    tci: VLAN_CFI,
                };
                Self::sync_tci(x);
            }
            Action::SetDlSrc(m) => {
                x.key.set(Field::DlSrc, m);
                x.macs_dirty = true;
            }
            Action::SetDlDst(m) => {
                x.key.set(Field::DlDst, m);
                x.macs_dirty = true;
            }
            Action::SetQueue(q) => x.queue = q,
            Action::Meter(id) => {
                let bits = x.in_len as u64 * 8;
                let ok = match self.meters.get_mut(&id) {
                    Some(m) if T::DRY => m.bucket.ready_at(x.now, bits) <= x.now,
                    Some(m) => {
                        let ok = m.bucket.conform(x.now, bits);
                        if ok {
                            m.passed += 1;
                        } else {
                            m.dropped += 1;
                        }
                        ok
                    }
                    // A meter that does not exist passes nothing (the
                    // control plane refuses rules that name one).
                    None => false,
                };
                if !ok {
                    x.halted = true;
                    Self::skip(x, DropReason::Meter, t);
                }
            }
            Action::Resubmit { in_port, table } => {
                let tb = table.unwrap_or(x.table);
                let Some(back) = Self::enter_resubmit(tb, x) else {
                    return;
                };
                match in_port {
                    // As OVS does, the other in_port is used for the lookup
                    // only; the rule's actions still see the real input port
                    // (so NORMAL, in_port and output:N behave as expected).
                    Some(p) => {
                        let mut k = x.key;
                        k.set(Field::InPort, p as u64);
                        let found = self.lookup_cached(tb, &k, k.hash64());
                        self.run_rule(tb, found, x, pkt, t);
                    }
                    None => self.xlate_table(tb, x, pkt, t),
                }
                x.rdepth -= back;
            }
            Action::GotoTable(tb) => {
                let Some(back) = Self::enter_resubmit(tb, x) else {
                    return;
                };
                self.xlate_table(tb, x, pkt, t);
                x.rdepth -= back;
            }
        }
    }

    /// Outputs the frame as the logical flow says it should look now.
    #[inline]
    pub(super) fn emit<T: Tracer>(
        &mut self,
        out: usize,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        if let Some((p, queue, prio)) = x.pending.take() {
            self.enqueue_copy(p as usize, pkt, queue, prio, t);
        }
        if self.ports[out].remark && !x.in_tagged && !x.pcp_set && x.vlans[0].present() {
            // A tag this port adds to a frame that came untagged: its PCP
            // from the frame's DSCP (IP only), for this output alone.
            let ip = matches!(x.key.dl_type(), ETH_TYPE_IP | ETH_TYPE_IPV6);
            if let (true, Some(q)) = (ip, self.ports[out].cfg.qos.as_ref()) {
                let pcp = q.remark(x.key.nw_tos() >> 2) as u16;
                let saved = x.vlans;
                x.vlans[0].tci = (x.vlans[0].tci & !VLAN_PCP_MASK) | (pcp << 13);
                Self::commit(x, pkt);
                x.vlans = saved;
            } else {
                Self::commit(x, pkt);
            }
        } else {
            Self::commit(x, pkt);
        }
        let prio = if x.pcp_set && x.vlans[0].present() {
            (x.vlans[0].tci >> 13) as u8
        } else {
            pkt.meta.prio
        };
        x.pending = Some((out as u16, x.queue, prio));
        x.outputs += 1;
        if T::ENABLED {
            let tci = if x.base_vlans[0].present() {
                x.base_vlans[0].tci & !VLAN_CFI
            } else {
                0
            };
            t.record(TraceEvent::Output {
                port: out as u16,
                len: pkt.len(),
                tci,
            });
        }
    }

    /// Brings the frame's bytes in line with the logical flow (OVS
    /// `commit_vlan_action` and the Ethernet rewrite): pop the tags that
    /// differ, push the wanted ones (with DEI cleared), rewrite MACs.
    #[inline]
    pub(super) fn commit(x: &mut Xlate, pkt: &mut PacketBuf) {
        if !Tag::same2(&x.vlans, &x.base_vlans) {
            let count = |v: &[Tag; 2]| v.iter().take_while(|t| t.present()).count();
            let mut bn = count(&x.base_vlans);
            let mut fnn = count(&x.vlans);
            while bn > 0 && fnn > 0 && x.base_vlans[bn - 1] == x.vlans[fnn - 1] {
                bn -= 1;
                fnn -= 1;
            }
            for _ in 0..bn {
                pkt.pop_vlan();
            }
            for i in (0..fnn).rev() {
                pkt.push_vlan(x.vlans[i].tpid, x.vlans[i].tci & !VLAN_CFI);
            }
            x.base_vlans = x.vlans;
        }
        if x.macs_dirty {
            let d = pkt.data_mut();
            if d.len() >= 12 {
                d[0..6].copy_from_slice(&crate::key::mac_to_bytes(x.key.dl_dst()));
                d[6..12].copy_from_slice(&crate::key::mac_to_bytes(x.key.dl_src()));
            }
            x.macs_dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn actions_apply_in_order() {
        let mut r = Rig::new(
            ports3(),
            &["in_port=1,actions=output:2,mod_vlan_vid:5,output:3"],
        );
        let f = frame(B, A, None, 0x0800);
        let o = r.send(0, 1, &f);
        assert_eq!(o[1], vec![f.clone()]);
        assert_eq!(o[2], vec![frame(B, A, Some((5, 0)), 0x0800)]);
    }

    #[test]
    fn strip_push_and_macs() {
        let mut r = Rig::new(
            ports3(),
            &[
                "in_port=1,actions=strip_vlan,mod_dl_src:02:00:00:00:00:99,output:2",
                "in_port=2,actions=push_vlan:0x88a8,output:3",
            ],
        );
        let o = r.send(0, 1, &frame(B, A, Some((7, 2)), 0x0800));
        assert_eq!(o[1], vec![frame(B, 0x0200_0000_0099, None, 0x0800)]);
        let o = r.send(1, 1, &frame(B, A, None, 0x0800));
        let mut want = frame(B, A, None, 0x0800);
        want.splice(12..12, [0x88, 0xa8, 0, 0]);
        assert_eq!(o[2], vec![want]);
    }

    #[test]
    fn resubmit_loop_drops_everything() {
        let mut r = Rig::new(ports3(), &["in_port=1,actions=output:2,resubmit(,0)"]);
        let o = r.send(0, 1, &frame(B, A, None, 0x0800));
        assert!(o.iter().all(|v| v.is_empty()));
        assert_eq!(
            r.p.port_stats(0)
                .map(|s| s.drops.get(DropReason::ResubmitLimit)),
            Some(1)
        );
        assert_eq!(
            r.p.pool.available(),
            PipelineOptions::default().pool_buffers + BURST * 4
        );
    }

    #[test]
    fn set_queue_applies_to_the_outputs_after_it() {
        let mut r = Rig::new(
            ports3(),
            &["in_port=1,actions=set_queue:1,output:2,set_queue:2,output:3"],
        );
        r.batch.clear();
        r.batch.push_frame(
            &frame(B, A, None, 0x0800),
            crate::packet::PacketMeta::default(),
        );
        r.p.process(&mut r.batch, &mut NoTrace);
        for k in 0..3u16 {
            r.p.flush_port(k, &mut r.ports[k as usize]).expect("flush");
        }
        assert_eq!(r.ports[1].take_sent()[0].0.queue, 1);
        assert_eq!(r.ports[2].take_sent()[0].0.queue, 2);
    }

    #[test]
    fn a_meter_stops_the_actions_after_it_and_keeps_those_before() {
        let mut r = Rig::new(
            ports3(),
            &[
                "in_port=1,actions=output:3,meter:1,output:2",
                "in_port=2,actions=meter:1,output:3",
            ],
        );
        // Room for two 60-byte frames, then (almost) nothing refills.
        r.p.set_meter(1, Some(crate::qos::Meter::new(1, 1000)));
        let f = frame(B, A, None, 0x0800);
        let got: Vec<(usize, usize)> = (0..3)
            .map(|_| {
                let o = r.send(0, 1, &f);
                (o[1].len(), o[2].len())
            })
            .collect();
        assert_eq!(got, vec![(1, 1), (1, 1), (0, 1)]);
        assert_eq!(r.p.meters(), vec![(1, 1, 1000, 2, 1)]);
        let drops = |r: &Rig, i| {
            r.p.port_stats(i)
                .expect("port")
                .drops
                .get(DropReason::Meter)
        };
        assert_eq!(drops(&r, 0), 0, "the frame still went out on port 3");
        // Nothing output before the meter: the frame is dropped, counted.
        let o = r.send(1, 1, &f);
        assert!(o.iter().all(|p| p.is_empty()));
        assert_eq!(drops(&r, 1), 1);
        // The trace says why the actions stopped.
        let mut log = crate::trace::TraceLog::default();
        r.batch.clear();
        r.batch.push_frame(
            &f,
            crate::packet::PacketMeta::new(0, Timestamp::from_secs(1)),
        );
        r.p.process(&mut r.batch, &mut log);
        let text = crate::trace::render(&log.events, &|p| format!("p{}", p + 1));
        assert!(
            text.contains("meter: over its rate; the actions after it do not run"),
            "{text}"
        );
        assert_eq!(crate::trace::delivered(&log.events), vec![2]);
    }
}
