//! Ports: adding, checking, taking down and deleting them, their QoS
//! settings and buffers, and looking them up by number or name.

use super::qos_egress::SORT_MAX;
use super::*;
use crate::error::Error;
use crate::packet::{PacketBuf, BURST, MAX_FRAME};
use crate::stats::{DropReason, PortStats};

impl Pipeline {
    /// Checks `cfgs` as [`Pipeline::add_port`] would, one after another,
    /// without building anything.
    pub fn check_ports(cfgs: &[PortConfig]) -> Result<(), Error> {
        for (i, c) in cfgs.iter().enumerate() {
            Self::check_port(cfgs[..i].iter(), c)?;
        }
        Ok(())
    }

    fn check_port<'a>(
        mut existing: impl Iterator<Item = &'a PortConfig> + Clone,
        cfg: &PortConfig,
    ) -> Result<(), Error> {
        if cfg.ofport == 0 || cfg.ofport >= crate::flow::action::OFPP_MAX {
            return Err(Error::Invalid(format!(
                "port {}: ofport {} is out of range (1-{})",
                cfg.name,
                cfg.ofport,
                crate::flow::action::OFPP_MAX - 1
            )));
        }
        if let Some(o) = existing.clone().find(|p| p.name == cfg.name) {
            return Err(Error::Invalid(format!(
                "port name {} is used twice (ofports {} and {})",
                cfg.name, o.ofport, cfg.ofport
            )));
        }
        if let Some(o) = existing.find(|p| p.ofport == cfg.ofport) {
            return Err(Error::Invalid(format!(
                "ofport {} is used by both {} and {}",
                cfg.ofport, o.name, cfg.name
            )));
        }
        if let Some(m) = cfg.mtu {
            if !(68..=(MAX_FRAME - 18) as u32).contains(&m) {
                return Err(Error::Invalid(format!(
                    "port {}: mtu {m} is out of range (68-{})",
                    cfg.name,
                    MAX_FRAME - 18
                )));
            }
        }
        Ok(())
    }

    /// Adds a port; returns its index. The buffers its QoS queues need are
    /// allocated here.
    pub fn add_port(&mut self, cfg: PortConfig) -> Result<u16, Error> {
        self.add_port_with(cfg, None)
    }

    /// Adds a port with the buffers its QoS queues need (`None`: allocate
    /// them here; a polling thread passes them in, made elsewhere).
    pub fn add_port_with(
        &mut self,
        cfg: PortConfig,
        buffers: Option<Vec<PacketBuf>>,
    ) -> Result<u16, Error> {
        Self::check_port(
            self.ports.iter().filter(|p| !p.removed).map(|p| &p.cfg),
            &cfg,
        )?;
        let of = cfg.ofport as usize;
        if self.by_ofport.len() <= of {
            self.by_ofport.resize(of + 1, u16::MAX);
        }
        let mut state = PortState {
            limit: cfg.payload_limit(),
            down: false,
            removed: false,
            cfg,
            stats: PortStats::default(),
            egress: Vec::with_capacity(self.opts.egress_limit),
            qos: None,
            txq: Vec::new(),
            police: None,
            ingress_prio: false,
            remark: false,
        };
        let extra = Self::apply_qos(&mut state, self.live, self.opts.egress_limit);
        match buffers {
            Some(bs) => bs.into_iter().for_each(|b| self.pool.put(b)),
            None => (0..extra).for_each(|_| self.pool.put(PacketBuf::new())),
        }
        // A deleted port's slot is reused first, so indices stay small.
        let idx = match self.ports.iter().position(|p| p.removed) {
            Some(i) => {
                self.ports[i] = state;
                i as u16
            }
            None => {
                if self.ports.len() >= u16::MAX as usize - 1 {
                    return Err(Error::Invalid("too many ports".into()));
                }
                self.ports.push(state);
                (self.ports.len() - 1) as u16
            }
        };
        self.by_ofport[of] = idx;
        self.mac.reserve_ports(self.ports.len());
        self.emc.invalidate();
        // Room for every port to hold a burst of copies.
        for _ in 0..BURST {
            self.pool.put(PacketBuf::new());
        }
        Ok(idx)
    }

    /// Takes a port down (its device vanished) or back up. A port that is
    /// down gets nothing: outputs to it are dropped as `port_down` (so is
    /// what waited to be sent), NORMAL no longer floods to it, and what was
    /// learned on it is forgotten.
    pub fn set_port_down(&mut self, idx: u16, down: bool) {
        if let Some(p) = self.ports.get_mut(idx as usize) {
            p.down = down;
            if down {
                self.discard_egress(idx);
                self.mac.flush_port(idx);
            }
        }
        self.emc.invalidate();
    }

    /// Sets up a port's QoS state from its configuration; returns how many
    /// more buffers its queues may hold. `cap`: room to keep in the egress
    /// and transmit lists (they trade places, so both get it).
    fn apply_qos(ps: &mut PortState, live: bool, cap: usize) -> usize {
        let old = ps.qos.take();
        // Frames already released or queued go first, in that order, then
        // what waits to be queued: the next flush sends or queues them
        // under the new settings.
        let mut pending = std::mem::take(&mut ps.txq);
        let mut old_stats = None;
        if let Some(mut o) = old {
            let back = o.drain_all();
            // They join the new queues as if new: count them once.
            for b in pending.iter().chain(back.iter()) {
                let s = &mut o.stats[o.classify(b)];
                s.enqueued = s.enqueued.saturating_sub(1);
            }
            pending.extend(back);
            old_stats = Some(o.stats);
        }
        pending.append(&mut ps.egress);
        ps.egress = pending;
        ps.egress.reserve(cap.saturating_sub(ps.egress.len()));
        match &ps.cfg.qos {
            None => {
                ps.police = None;
                ps.ingress_prio = false;
                ps.remark = false;
                0
            }
            Some(c) => {
                ps.police = c.police.map(|(r, b)| crate::qos::TokenBucket::new(r, b));
                ps.ingress_prio = c.default_pcp != 0 || c.dscp_map.is_some();
                ps.remark = c.remark_pcp;
                let mut q = crate::qos::EgressQos::new(c.clone());
                if live {
                    q.set_live();
                }
                // Counters run on across a change of settings.
                if let Some(s) = old_stats {
                    q.stats = s;
                }
                ps.txq.reserve(cap.max(SORT_MAX));
                let n = c.buffers();
                ps.qos = Some(Box::new(q));
                n
            }
        }
    }

    /// Changes port `idx`'s QoS (queued frames are kept where they fit).
    /// `buffers` are added to the pool for the new queues (allocate them
    /// off the polling thread: [`PacketBuf::new`] per frame of depth).
    /// Returns the buffers the new settings need no more (for the
    /// caller to free), so the pool never outgrows what the ports need.
    pub fn set_port_qos(
        &mut self,
        idx: u16,
        qos: Option<crate::qos::QosConfig>,
        buffers: Vec<PacketBuf>,
    ) -> Vec<PacketBuf> {
        let Some(ps) = self.ports.get_mut(idx as usize) else {
            return buffers;
        };
        let before = ps.cfg.qos.as_ref().map_or(0, |q| q.buffers());
        ps.cfg.qos = qos;
        let after = Self::apply_qos(ps, self.live, self.opts.egress_limit);
        for b in buffers {
            self.pool.put(b);
        }
        self.emc.invalidate();
        self.take_buffers(before.saturating_sub(after))
    }

    /// Takes up to `n` free buffers out of the pool.
    fn take_buffers(&mut self, n: usize) -> Vec<PacketBuf> {
        let mut out = Vec::new();
        for _ in 0..n {
            match self.pool.take() {
                Some(b) => out.push(b),
                None => break,
            }
        }
        out
    }

    /// Marks the pipeline as running on a live clock: QoS shapers then
    /// never send a backlog faster than their bucket allows after the
    /// polling thread was held up (replay keeps exact virtual time).
    pub fn set_live(&mut self) {
        self.live = true;
        for p in &mut self.ports {
            if let Some(q) = p.qos.as_mut() {
                q.set_live();
            }
        }
    }

    /// A port's QoS queue counters, when it has QoS.
    pub fn queue_stats(&self, idx: u16) -> Option<[crate::qos::QueueStats; crate::qos::N_QUEUES]> {
        self.ports
            .get(idx as usize)
            .and_then(|p| p.qos.as_ref())
            .map(|q| q.queue_stats())
    }

    /// Deletes port `idx`: it is down for good, its number and name are
    /// free again, what was learned on it is forgotten and what was queued
    /// for it is dropped. Its slot is reused by the next [`Pipeline::add_port`].
    /// Returns the buffers the port no longer needs (for the caller to
    /// free).
    pub fn remove_port(&mut self, idx: u16) -> Vec<PacketBuf> {
        let Some(p) = self.ports.get_mut(idx as usize) else {
            return Vec::new();
        };
        if p.removed {
            return Vec::new();
        }
        p.removed = true;
        let of = p.cfg.ofport as usize;
        if self.by_ofport.get(of) == Some(&idx) {
            self.by_ofport[of] = u16::MAX;
        }
        let granted = p.cfg.qos.as_ref().map_or(0, |q| q.buffers()) + BURST;
        self.set_port_down(idx, true);
        if let Some(p) = self.ports.get_mut(idx as usize) {
            p.cfg.qos = None;
            p.qos = None;
        }
        self.take_buffers(granted)
    }

    /// True when slot `idx` holds no port (deleted, or never used).
    pub fn port_removed(&self, idx: u16) -> bool {
        self.ports.get(idx as usize).is_none_or(|p| p.removed)
    }

    /// True when the port is down.
    pub fn port_down(&self, idx: u16) -> bool {
        self.ports.get(idx as usize).is_some_and(|p| p.down)
    }

    /// Drops what is queued for port `idx`, counting it as `port_down`.
    pub fn discard_egress(&mut self, idx: u16) {
        if let Some(p) = self.ports.get_mut(idx as usize) {
            let mut n = p.egress.len() + p.txq.len();
            retire(&mut self.pool, p.egress.drain(..));
            retire(&mut self.pool, p.txq.drain(..));
            if let Some(q) = p.qos.as_mut() {
                let mut queued = q.drain_all();
                n += queued.len();
                retire(&mut self.pool, queued.drain(..));
            }
            p.stats.drops.add(DropReason::PortDown, n as u64);
        }
    }

    /// Number of port slots (ports, and deleted ports' slots: see
    /// [`Pipeline::port_removed`]).
    pub fn n_ports(&self) -> usize {
        self.ports.len()
    }

    /// A port's configuration (`None` for a deleted port).
    pub fn port_config(&self, idx: u16) -> Option<&PortConfig> {
        self.ports
            .get(idx as usize)
            .filter(|p| !p.removed)
            .map(|p| &p.cfg)
    }

    /// A port's counters.
    pub fn port_stats(&self, idx: u16) -> Option<&PortStats> {
        self.ports.get(idx as usize).map(|p| &p.stats)
    }

    /// The index of the port numbered `ofport`.
    #[inline(always)]
    pub fn port_index(&self, ofport: u16) -> Option<u16> {
        match self.by_ofport.get(ofport as usize) {
            Some(&i) if i != u16::MAX => Some(i),
            _ => None,
        }
    }

    /// The index of the port called `name`.
    pub fn port_by_name(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| !p.removed && p.cfg.name == name)
            .map(|i| i as u16)
    }

    /// Resolves port names for flow parsing.
    pub fn port_names(&self) -> impl Fn(&str) -> Option<u16> + '_ {
        move |n: &str| {
            self.ports
                .iter()
                .find(|p| !p.removed && p.cfg.name == n)
                .map(|p| p.cfg.ofport)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn frames_waiting_for_a_port_that_goes_down_are_counted() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 0;
        r.batch.clear();
        for p in [0u16, 3, 5, 7, 3, 0] {
            r.batch.push_frame(
                &frame(B, A, Some((5, p)), 0x0800),
                crate::packet::PacketMeta::new(0, Timestamp(1)),
            );
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(r.p.egress_len(1), 6);
        r.p.set_port_down(1, true);
        assert_eq!(r.p.egress_len(1), 0);
        let drops = r.p.port_stats(1).expect("port").drops;
        assert_eq!(drops.get(DropReason::PortDown), 6);
    }

    #[test]
    fn changing_qos_counts_waiting_frames_once() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 1;
        r.batch.clear();
        for p in [0u16, 3, 5, 7, 3, 0] {
            r.batch.push_frame(
                &frame(B, A, Some((5, p)), 0x0800),
                crate::packet::PacketMeta::new(0, Timestamp(1)),
            );
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        // One queued frame stays queued: the device's backlog is full.
        r.ports[1].tx_limit = 0;
        r.batch.clear();
        r.batch.push_frame(
            &frame(B, A, Some((5, 2)), 0x0800),
            crate::packet::PacketMeta::new(0, Timestamp(2)),
        );
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        let mut qos = crate::qos::QosConfig::default();
        qos.scheduler = crate::qos::Scheduler::Drr;
        let spare = r.p.set_port_qos(1, Some(qos), Vec::new());
        assert!(spare.is_empty());
        r.ports[1].tx_limit = usize::MAX;
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(r.ports[1].take_sent().len(), 7);
        let q = r.p.queue_stats(1).expect("qos");
        let sum = |f: fn(&crate::qos::QueueStats) -> u64| q.iter().map(f).sum::<u64>();
        assert_eq!(sum(|s| s.enqueued), 7, "{q:?}");
        assert_eq!(sum(|s| s.tx_packets), 7, "{q:?}");
        assert_eq!(sum(|s| s.depth), 0);
    }

    #[test]
    fn removing_qos_keeps_frames_the_device_refused() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 1;
        r.batch.clear();
        for i in 0..4u8 {
            let mut f = frame(B, A, None, 0x0800);
            f[20] = i;
            r.batch
                .push_frame(&f, crate::packet::PacketMeta::new(0, Timestamp(1)));
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(r.ports[1].take_sent().len(), 1);
        // Three wait; QoS goes away; they are sent, in order, and nothing
        // is left behind.
        let spare = r.p.set_port_qos(1, None, Vec::new());
        assert_eq!(spare.len(), crate::qos::QosConfig::default().buffers());
        r.ports[1].tx_limit = usize::MAX;
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        let sent: Vec<u8> = r.ports[1].take_sent().iter().map(|(_, f)| f[20]).collect();
        assert_eq!(sent, vec![1, 2, 3]);
        assert_eq!(r.p.egress_len(1), 0);
    }
}
