//! Translation: the actions of a rule, run one by one on the frame's
//! logical flow ([`Xlate`]), and outputs (`emit`), which bring the
//! frame's bytes in line with it.

use super::*;

mod state;
pub(super) use state::Xlate;

use crate::flow::Action;
use crate::key::Field;
use crate::packet::PacketBuf;
use crate::stats::DropReason;
use crate::trace::{TraceEvent, Tracer};

impl Pipeline {
    pub(super) fn do_action<T: Tracer>(
        &mut self,
        a: Action,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        match a {
            Action::Output(p) => {
                if p == x.key().in_port() {
                    x.skip(DropReason::OutputToInPort, t);
                } else {
                    match self.port_index(p) {
                        Some(idx) => self.emit(idx as usize, x, pkt, t),
                        None => x.skip(DropReason::NoSuchPort, t),
                    }
                }
            }
            Action::InPort => match self.port_index(x.key().in_port()) {
                Some(idx) => self.emit(idx as usize, x, pkt, t),
                None => x.skip(DropReason::NoSuchPort, t),
            },
            Action::Flood | Action::All => {
                let in_of = x.key().in_port();
                let before = x.outputs();
                for idx in 0..self.ports.len() {
                    if self.ports[idx].cfg.ofport != in_of {
                        self.emit(idx, x, pkt, t);
                    }
                }
                if x.outputs() == before {
                    x.skip(DropReason::NoFloodPort, t);
                }
            }
            Action::Normal => {
                self.normal(x, pkt, t);
            }
            Action::SetVlanVid(v) => {
                x.set_vlan_vid(v);
            }
            Action::SetVlanPcp(p) => {
                x.set_vlan_pcp(p);
            }
            Action::StripVlan => {
                x.strip_vlan();
            }
            Action::PushVlan(tpid) => {
                x.push_vlan(tpid);
            }
            Action::SetDlSrc(m) => {
                x.set_dl_src(m);
            }
            Action::SetDlDst(m) => {
                x.set_dl_dst(m);
            }
            Action::SetQueue(q) => x.set_queue(q),
            Action::Meter(id) => {
                let bits = x.in_len() as u64 * 8;
                let now = x.now();
                let ok = match self.meters.get_mut(&id) {
                    Some(m) if T::DRY => m.bucket.ready_at(now, bits) <= now,
                    Some(m) => {
                        let ok = m.bucket.conform(now, bits);
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
                    x.halt();
                    x.skip(DropReason::Meter, t);
                }
            }
            Action::Resubmit { in_port, table } => {
                let tb = table.unwrap_or(x.table());
                let Some(back) = x.enter_resubmit(tb) else {
                    return;
                };
                match in_port {
                    // As OVS does, the other in_port is used for the lookup
                    // only; the rule's actions still see the real input port
                    // (so NORMAL, in_port and output:N behave as expected).
                    Some(p) => {
                        let mut k = *x.key();
                        k.set(Field::InPort, p as u64);
                        let found = self.lookup_cached(tb, &k, k.hash64());
                        self.run_rule(tb, found, x, pkt, t);
                    }
                    None => self.xlate_table(tb, x, pkt, t),
                }
                x.leave_resubmit(back);
            }
            Action::GotoTable(tb) => {
                let Some(back) = x.enter_resubmit(tb) else {
                    return;
                };
                self.xlate_table(tb, x, pkt, t);
                x.leave_resubmit(back);
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
        if let Some((p, queue, prio)) = x.take_pending() {
            self.enqueue_copy(p as usize, pkt, queue, prio, t);
        }
        if self.ports[out].remark && x.adds_tag() {
            // A tag this port adds to a frame that came untagged carries
            // the frame's priority, the one that also picks its queue here
            // (`record_output` below): as the receive stage set it (the
            // ingress port's DSCP map or default priority). One priority
            // per frame: the tag never says other than the queue, except
            // where a rule chose the queue itself (`set_queue`).
            // (`adds_tag` is false once a `mod_vlan_pcp` set the PCP: that
            // PCP is then the priority.)
            x.commit_with_pcp(pkt, pkt.meta.prio as u16 & 7);
        } else {
            x.commit(pkt);
        }
        x.record_output(out as u16, pkt.meta.prio);
        if T::ENABLED {
            t.record(TraceEvent::Output {
                port: out as u16,
                len: pkt.len(),
                tci: x.committed_tci(),
            });
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

    /// An untagged IPv4 frame with DSCP `dscp` and `seq` in its payload.
    fn ip_frame(dscp: u8, seq: u8) -> Vec<u8> {
        let mut f = frame(B, A, None, 0x0800);
        f[14..34].copy_from_slice(&[
            0x45,
            dscp << 2,
            0,
            46,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ]);
        f[50] = seq;
        f
    }

    #[test]
    fn a_remarking_port_tags_frames_with_the_priority_that_picks_their_queue() {
        // p1 maps DSCP 46 to priority 1 (others: DSCP / 8); p2 adds tags
        // and remarks them, and its own DSCP map (46 -> 5, for frames that
        // arrive on p2) has no say in what leaves it.
        let mut cfgs = ports3();
        let mut ingress = crate::qos::QosConfig::default();
        let mut m: [u8; 64] = std::array::from_fn(|d| (d >> 3) as u8);
        m[46] = 1;
        ingress.dscp_map = Some(m);
        cfgs[0].qos = Some(ingress);
        let mut egress = crate::qos::QosConfig {
            remark_pcp: true,
            ..Default::default()
        };
        let mut m: [u8; 64] = std::array::from_fn(|d| (d >> 3) as u8);
        m[46] = 5;
        egress.dscp_map = Some(m);
        cfgs[1].qos = Some(egress);
        let mut r = Rig::new(
            cfgs,
            &[
                "priority=10,in_port=1,udp,nw_tos=0,actions=mod_vlan_vid:10,set_queue:7,output:2",
                "priority=5,in_port=1,actions=mod_vlan_vid:10,output:2",
            ],
        );
        r.batch.clear();
        for (seq, dscp) in [(0u8, 46u8), (1, 32), (2, 0)] {
            r.batch.push_frame(
                &ip_frame(dscp, seq),
                crate::packet::PacketMeta::new(0, Timestamp(1)),
            );
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        // (sequence number, PCP) in departure order: highest queue first.
        let sent: Vec<(u8, u8)> = r.ports[1]
            .take_sent()
            .into_iter()
            .map(|(_, f)| (f[54], f[14] >> 5))
            .collect();
        // DSCP 0: queue 7 (set_queue), priority 0, PCP 0; DSCP 32 (CS4):
        // priority 4, queue 4, PCP 4; DSCP 46: priority 1, which the
        // default pcp_map puts in queue 0, the lowest, and PCP 1.
        assert_eq!(sent, vec![(2, 0), (1, 4), (0, 1)]);
        let q = r.p.queue_stats(1).expect("qos");
        let used: Vec<usize> = (0..8).filter(|&i| q[i].enqueued > 0).collect();
        assert_eq!(used, vec![0, 4, 7]);
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
        assert_eq!(
            r.p.meters(),
            vec![crate::qos::MeterReport {
                id: 1,
                rate: 1,
                burst: 1000,
                passed: 2,
                dropped: 1
            }]
        );
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
