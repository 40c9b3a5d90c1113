//! QoS egress: sending a QoS port's frames through its queues and
//! scheduler, or, when that changes nothing, straight out in class order
//! (the cut-through, with its counting sort).

use super::egress::send_bursts;
use super::*;
use crate::clock::Timestamp;
use crate::packet::{BufPool, PacketBuf, BURST};
use crate::port::{Port, PortError};
use crate::stats::{DropReason, PortStats};

/// Most frames a port's cut-through puts in class order at once.
/// (Frame indices are kept in a byte.)
pub(super) const SORT_MAX: usize = 4 * BURST;
const _: () = assert!(SORT_MAX <= 256);

impl Pipeline {
    /// When a frame held in some port's QoS queues may next leave.
    pub fn next_departure(&self) -> Option<Timestamp> {
        self.ports
            .iter()
            .filter_map(|p| p.qos.as_ref().and_then(|q| q.next_departure()))
            .min()
    }

    /// Sends what port `idx` may send by `now`: for a port with QoS, new
    /// frames join their queues (a full queue drops them, counted) and the
    /// scheduler releases frames whose departure time has come, each
    /// stamped with it; without QoS, as [`Pipeline::flush_port`].
    pub fn flush_port_at(
        &mut self,
        idx: u16,
        port: &mut dyn Port,
        now: Timestamp,
    ) -> Result<usize, PortError> {
        let Some(ps) = self.ports.get_mut(idx as usize) else {
            return Ok(0);
        };
        let Some(q) = ps.qos.as_mut() else {
            return self.flush_plain(idx, port);
        };
        // Cut-through: nothing waits and nothing times the port, so the
        // scheduler would send the new frames at once, highest class first
        // (or in arrival order when they share one class). They go straight
        // out in that order, counted as queued and sent, without passing
        // through the rings. When a queue could not hold its share, they
        // take the queue path, which drops what does not fit.
        let n = ps.egress.len();
        if self.cut_through
            && n > 0
            && n <= SORT_MAX
            && q.is_empty()
            && q.untimed()
            && ps.txq.is_empty()
        {
            let mut cls = [0u8; SORT_MAX];
            let mut count = [0u16; crate::qos::N_QUEUES];
            let mut bytes = [0u64; crate::qos::N_QUEUES];
            for (i, b) in ps.egress.iter().enumerate() {
                let c = q.classify(b);
                cls[i] = c as u8;
                count[c] += 1;
                bytes[c] += b.len() as u64;
            }
            let first = cls[0] as usize;
            let single = count[first] as usize == n;
            let fits = n <= q.min_depth()
                || (0..crate::qos::N_QUEUES).all(|c| count[c] as usize <= q.depth(c));
            // A weighted class may cut through as one burst the scheduler
            // would release whole, leaving the round robin as it would.
            let ok = if single {
                q.is_strict(first) || n <= BURST
            } else {
                q.strict_untimed()
            };
            if fits && ok {
                if !single {
                    // Highest class first, by a stable counting sort: the
                    // frames are gathered in that order into the (empty)
                    // transmit list, which then becomes the list to send.
                    let mut next = [0u8; crate::qos::N_QUEUES];
                    let mut at = 0u8;
                    for c in (0..crate::qos::N_QUEUES).rev() {
                        next[c] = at;
                        at = at.wrapping_add(count[c] as u8);
                    }
                    let mut order = [0u8; SORT_MAX];
                    for (i, &c) in cls[..n].iter().enumerate() {
                        let slot = &mut next[c as usize];
                        order[*slot as usize] = i as u8;
                        *slot = slot.wrapping_add(1);
                    }
                    ps.txq.reserve(n);
                    let src = ps.egress.as_ptr();
                    let dst = ps.txq.as_mut_ptr();
                    for (k, &i) in order[..n].iter().enumerate() {
                        // SAFETY: `order` lists each index below `n` exactly
                        // once (a counting sort of 0..n), so each frame is
                        // copied out once, into slot `k < n` of the
                        // transmit list's reserved (empty) capacity.
                        unsafe {
                            std::ptr::copy_nonoverlapping(src.add(i as usize), dst.add(k), 1)
                        };
                    }
                    // SAFETY: the frames now live in the transmit list's
                    // first `n` slots (all written above) and no longer in
                    // the egress list, which forgets them without dropping.
                    // Nothing between the copies and here can panic.
                    unsafe {
                        ps.egress.set_len(0);
                        ps.txq.set_len(n);
                    }
                    std::mem::swap(&mut ps.egress, &mut ps.txq);
                }
                q.stamp_departures(&mut ps.egress);
                // Sent in bursts, as the scheduler would release them.
                let (sent, result) = send_bursts(port, &ps.egress);
                let mut sent_bytes = retire(&mut self.pool, ps.egress.drain(..sent));
                ps.stats.tx_packets += sent as u64;
                ps.stats.tx_bytes += sent_bytes;
                // The device took a prefix, in class order: credit each
                // class with its part of it.
                let mut left = sent as u64;
                if single {
                    q.count_cut_through(first, left, sent_bytes);
                    q.drained(first);
                    left = 0;
                }
                for c in (0..crate::qos::N_QUEUES).rev() {
                    if left == 0 {
                        break;
                    }
                    let k = u64::from(count[c]).min(left);
                    if k == 0 {
                        continue;
                    }
                    let b = if k == u64::from(count[c]) {
                        bytes[c]
                    } else {
                        sent_bytes
                    };
                    q.count_cut_through(c, k, b);
                    left -= k;
                    sent_bytes = sent_bytes.saturating_sub(b);
                }
                // The rest of the burst the device was offered waits in its
                // backlog (or, after an error, is lost), as if released by
                // the scheduler; what it was never offered waits in its
                // queue.
                if !ps.egress.is_empty() {
                    let offered = (BURST - sent % BURST).min(ps.egress.len());
                    for b in ps.egress.drain(..offered) {
                        q.count_enqueued(q.classify(&b));
                        if result.is_ok() {
                            ps.txq.push(b);
                        } else {
                            ps.stats.drops.add(DropReason::TxError, 1);
                            self.pool.put(b);
                        }
                    }
                    enqueue_all(q, ps.egress.drain(..), &mut ps.stats, &mut self.pool);
                }
                return result.map(|()| sent);
            }
        }
        enqueue_all(q, ps.egress.drain(..), &mut ps.stats, &mut self.pool);
        let mut sent = 0;
        loop {
            if ps.txq.is_empty() && q.dequeue_burst(now, &mut ps.txq, BURST) == 0 {
                break;
            }
            let want = ps.txq.len();
            match port.tx_burst(&ps.txq) {
                Ok(n) => {
                    let n = n.min(want);
                    sent += n;
                    ps.stats.tx_packets += n as u64;
                    for b in ps.txq.drain(..n) {
                        ps.stats.tx_bytes += b.len() as u64;
                        q.count_sent(q.classify(&b), 1, b.len() as u64);
                        self.pool.put(b);
                    }
                    if n < want {
                        break;
                    }
                }
                Err(e) => {
                    ps.stats.drops.add(DropReason::TxError, ps.txq.len() as u64);
                    retire(&mut self.pool, ps.txq.drain(..));
                    return Err(e);
                }
            }
        }
        Ok(sent)
    }
}

/// Puts `frames` in their queues; a full queue drops them (counted).
#[inline(always)]
fn enqueue_all(
    q: &mut crate::qos::EgressQos,
    frames: impl Iterator<Item = PacketBuf>,
    stats: &mut PortStats,
    pool: &mut BufPool,
) {
    for b in frames {
        if let Err(b) = q.enqueue(b) {
            stats.drops.add(DropReason::QueueFull, 1);
            pool.put(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn an_untimed_strict_port_orders_each_burst_by_priority() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        let send = |r: &mut Rig, pcps: &[u8]| {
            r.batch.clear();
            for (i, p) in pcps.iter().enumerate() {
                let mut f = frame(B, A, Some((5, *p as u16)), 0x0800);
                f[30] = i as u8; // a sequence number
                r.batch
                    .push_frame(&f, crate::packet::PacketMeta::new(0, Timestamp(1)));
            }
            r.p.process(&mut r.batch, &mut NoTrace);
            r.p.flush_port(1, &mut r.ports[1]).expect("flush");
            r.ports[1]
                .take_sent()
                .into_iter()
                .map(|(_, f)| (f[14] >> 5, f[30]))
                .collect::<Vec<_>>()
        };
        // One class: straight through, in order.
        assert_eq!(send(&mut r, &[3, 3, 3]), vec![(3, 0), (3, 1), (3, 2)]);
        // Mixed: highest queue first, arrival order within a queue; PCP 1
        // (queue 0) after PCP 0 (queue 1).
        assert_eq!(
            send(&mut r, &[0, 5, 1, 5, 0, 7]),
            vec![(7, 5), (5, 1), (5, 3), (0, 0), (0, 4), (1, 2)]
        );
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!((q[3].enqueued, q[3].tx_packets), (3, 3));
        assert_eq!((q[5].enqueued, q[5].tx_packets), (2, 2));
        assert_eq!(q.iter().map(|s| s.depth).sum::<u64>(), 0);
    }

    #[test]
    fn a_mixed_burst_the_device_takes_in_part_keeps_its_order_and_counts() {
        let mut cfgs = ports3();
        let mut qos = crate::qos::QosConfig::default();
        qos.queues[2].depth = 2; // PCP 2
        cfgs[1].qos = Some(qos);
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 3;
        let send = |r: &mut Rig, pcps: &[u8], t0: u64| {
            r.batch.clear();
            for (i, p) in pcps.iter().enumerate() {
                let mut f = frame(B, A, Some((5, *p as u16)), 0x0800);
                f[30] = i as u8;
                // Later frames arrived later.
                let ts = Timestamp(t0 + i as u64);
                r.batch
                    .push_frame(&f, crate::packet::PacketMeta::new(0, ts));
            }
            r.p.process(&mut r.batch, &mut NoTrace);
            r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        };
        let sent = |r: &mut Rig| {
            let s = r.ports[1].take_sent();
            let ts: Vec<u64> = s.iter().map(|(m, _)| m.ts.0).collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]), "departures {ts:?}");
            s.into_iter()
                .map(|(_, f)| (f[14] >> 5, f[30]))
                .collect::<Vec<_>>()
        };
        send(&mut r, &[0, 6, 0, 6, 4], 100);
        assert_eq!(sent(&mut r), vec![(6, 1), (6, 3), (4, 4)]);
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!((q[6].enqueued, q[6].tx_packets), (2, 2));
        assert_eq!((q[4].enqueued, q[4].tx_packets), (1, 1));
        // The two PCP 0 frames were released with the rest: they wait in
        // the device's backlog, not in their queue, and are not sent yet.
        assert_eq!((q[1].enqueued, q[1].tx_packets, q[1].depth), (2, 0, 0));
        assert_eq!(r.p.egress_len(1), 2);
        // The device takes everything again: its backlog goes first, then
        // the next burst by priority; three PCP 2 frames overflow a queue
        // of two, and one is dropped and counted.
        r.ports[1].tx_limit = usize::MAX;
        send(&mut r, &[2, 2, 2, 7], 200);
        assert_eq!(sent(&mut r), vec![(0, 0), (0, 2), (7, 3), (2, 0), (2, 1)]);
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!((q[1].tx_packets, q[1].depth), (2, 0));
        assert_eq!((q[2].enqueued, q[2].tx_packets, q[2].dropped), (2, 2, 1));
        assert_eq!(
            r.p.port_stats(1)
                .expect("port")
                .drops
                .get(DropReason::QueueFull),
            1
        );
        // Back to an empty port: mixed bursts cut through, ordered.
        send(&mut r, &[0, 2, 6], 300);
        assert_eq!(sent(&mut r), vec![(6, 2), (2, 1), (0, 0)]);
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!(q.iter().map(|s| s.depth).sum::<u64>(), 0);
        assert_eq!(
            q.iter().map(|s| s.tx_packets).sum::<u64>(),
            q.iter().map(|s| s.enqueued).sum::<u64>()
        );
        // Through the queues: a frame the scheduler released counts as
        // sent only once the device takes it.
        r.ports[1].tx_limit = 1;
        send(&mut r, &[0, 6], 400); // 6 goes; 0 waits in the backlog
        assert_eq!(sent(&mut r), vec![(6, 1)]);
        send(&mut r, &[5, 4], 500); // the backlog, then 5; 4 waits
        assert_eq!(sent(&mut r), vec![(0, 0), (5, 0)]);
        let tx = |r: &Rig| r.p.queue_stats(1).expect("qos").map(|s| s.tx_packets);
        let before = tx(&r);
        assert_eq!(r.p.egress_len(1), 1, "PCP 4 waits for the device");
        r.ports[1].tx_limit = usize::MAX;
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(sent(&mut r), vec![(4, 1)]);
        let after = tx(&r);
        assert_eq!(after[4], before[4] + 1);
        assert_eq!(after.iter().sum::<u64>(), before.iter().sum::<u64>() + 1);
    }

    /// What a QoS port sent in each step, and all its counters after it.
    type Seen = Vec<(
        Vec<(u8, u8, u64)>,
        [crate::qos::QueueStats; crate::qos::N_QUEUES],
        (u64, u64, u64, u64, u64),
    )>;

    /// Runs `steps` (frames by PCP, what the device takes per call, and
    /// whether it fails) through port 2 with `qos`, with or without
    /// cut-through.
    fn run_qos_steps(
        qos: &crate::qos::QosConfig,
        steps: &[(Vec<u8>, usize, bool)],
        cut_through: bool,
    ) -> Seen {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(qos.clone());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.p.cut_through = cut_through;
        let mut seen = Vec::new();
        let mut seq = 0u8;
        for (k, (pcps, limit, fail)) in steps.iter().enumerate() {
            // Several batches may be switched before a port is flushed.
            for chunk in pcps.chunks(BURST) {
                r.batch.clear();
                for p in chunk {
                    let mut f = frame(B, A, Some((5, *p as u16)), 0x0800);
                    f[30] = seq;
                    seq = seq.wrapping_add(1);
                    // Arrivals jitter, as captures' clocks may.
                    let ts = Timestamp(1000 * k as u64 + (seq as u64 * 7) % 13);
                    r.batch
                        .push_frame(&f, crate::packet::PacketMeta::new(0, ts));
                }
                r.p.process(&mut r.batch, &mut NoTrace);
            }
            r.ports[1].tx_limit = *limit;
            r.ports[1].tx_fail = *fail;
            let _ = r.p.flush_port(1, &mut r.ports[1]);
            let sent = r.ports[1]
                .take_sent()
                .into_iter()
                .map(|(m, f)| (f[14] >> 5, f[30], m.ts.0))
                .collect();
            let ps = r.p.port_stats(1).expect("port");
            seen.push((
                sent,
                r.p.queue_stats(1).expect("qos"),
                (
                    ps.tx_packets,
                    ps.tx_bytes,
                    ps.drops.get(DropReason::QueueFull),
                    ps.drops.get(DropReason::TxError),
                    r.p.egress_len(1) as u64,
                ),
            ));
        }
        seen
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Cut-through is an optimisation only: with any scheduler, queue
        /// depths, bursts and device pushback, a port sends the same frames
        /// in the same order at the same times, with the same counters, as
        /// when every frame goes through the queues.
        #[test]
        fn cut_through_changes_nothing(
            sched in 0u8..3,
            strict in 1u8..8,
            weights in proptest::collection::vec(1u32..5, 8),
            depths in proptest::collection::vec(
                proptest::prop_oneof![3 => 1usize..12, 1 => 30usize..80],
                8,
            ),
            steps in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        // Mixed bursts.
                        proptest::collection::vec(
                            proptest::prop_oneof![3 => 0u8..8, 1 => proptest::strategy::Just(5u8)],
                            0..150,
                        ),
                        // Long bursts of one class.
                        proptest::strategy::Strategy::prop_map((0u8..8, 1usize..70), |(p, n)| vec![p; n]),
                    ],
                    proptest::prop_oneof![2 => proptest::strategy::Just(usize::MAX), 1 => 0usize..6],
                    proptest::prop_oneof![7 => proptest::strategy::Just(false), 1 => proptest::strategy::Just(true)],
                ),
                1..12,
            ),
        ) {
            let mut qos = crate::qos::QosConfig::default();
            qos.scheduler = match sched {
                0 => crate::qos::Scheduler::Strict,
                1 => crate::qos::Scheduler::Drr,
                _ => crate::qos::Scheduler::Ets { strict },
            };
            for q in 0..8 {
                qos.weights[q] = weights[q];
                qos.queues[q].depth = depths[q];
            }
            let with = run_qos_steps(&qos, &steps, true);
            let without = run_qos_steps(&qos, &steps, false);
            for (k, (a, b)) in with.iter().zip(&without).enumerate() {
                proptest::prop_assert_eq!(a, b, "step {}", k);
            }
        }
    }
}
