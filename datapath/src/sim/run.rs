//! The discrete-event run: the switch pipeline, its QoS queues, the
//! scenario's captures and its simulated hosts on one virtual clock.
//!
//! Each turn of the loop takes the earliest pending event: a flow change,
//! a frame reaching the switch (from a capture or a host's NIC), a frame
//! leaving a QoS queue, or a host's stack or action coming due. Frames
//! reaching the switch are switched one at a time, in time order (ties:
//! lower ofport first, capture before host); before each, the queues
//! release what leaves by its time, as in a plain replay. What the switch
//! sends on a port goes to its output capture and to every host plugged
//! into that port. Nothing depends on the wall clock, so a run repeats
//! exactly.

use std::fs::File;
use std::path::Path;

use crate::clock::{ManualClock, Timestamp};
use crate::error::Error;
use crate::packet::{Batch, PacketBuf, PacketMeta};
use crate::pcap::PcapWriter;
use crate::pipeline::Pipeline;
use crate::port::pcap::PcapPort;
use crate::port::{Port, PortError};
use crate::replay::{self, Merger, RuleLog, Scenario, Summary};
use crate::table::Installed;

use super::host::Host;
use super::spec::{ChangeOp, NS};

/// The clock's start when a scenario has no captures: 2026-01-01 00:00:00 UTC.
pub const SIM_EPOCH: Timestamp = Timestamp(1_767_225_600 * NS);

/// A switch port's output in a simulation: its capture file, and the
/// frames to hand to the hosts plugged into it.
struct SimPort {
    inner: PcapPort,
    sent: Vec<(Timestamp, Vec<u8>)>,
}

impl Port for SimPort {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn rx_burst(
        &mut self,
        _batch: &mut Batch,
        _port_index: u16,
        _clock: &dyn crate::clock::Clock,
    ) -> Result<usize, PortError> {
        Ok(0)
    }

    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError> {
        let n = self.inner.tx_burst(frames)?;
        for f in &frames[..n] {
            self.sent.push((f.meta.ts, f.data().to_vec()));
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), PortError> {
        self.inner.flush()
    }
}

/// Where the next frame reaching the switch comes from.
#[derive(Clone, Copy)]
enum Source {
    Capture,
    Host(usize),
}

struct Run<'a> {
    sc: &'a Scenario,
    start: Timestamp,
    pipe: Pipeline,
    outputs: Vec<SimPort>,
    hosts: Vec<Host>,
    host_pcaps: Vec<PcapWriter<File>>,
    batch: Batch,
    frames_in: u64,
    last: Timestamp,
    log: RuleLog,
}

impl Run<'_> {
    fn abs(&self, rel: u64) -> Timestamp {
        Timestamp(self.start.0.saturating_add(rel))
    }

    fn rel(&self, t: Timestamp) -> u64 {
        t.0.saturating_sub(self.start.0)
    }

    fn port_err(&self, k: usize, e: PortError) -> Error {
        Error::Port {
            port: self.sc.ports[k].name.clone(),
            msg: e.to_string(),
        }
    }

    /// Releases what every port may send by `t` and hands it on.
    fn flush(&mut self, t: Timestamp) -> Result<(), Error> {
        for k in 0..self.outputs.len() {
            if let Err(e) = self.pipe.flush_port_at(k as u16, &mut self.outputs[k], t) {
                return Err(self.port_err(k, e));
            }
        }
        self.deliver();
        Ok(())
    }

    /// Hands what the switch sent to the hosts on each port.
    fn deliver(&mut self) {
        for k in 0..self.outputs.len() {
            if self.outputs[k].sent.is_empty() {
                continue;
            }
            let sent = std::mem::take(&mut self.outputs[k].sent);
            let on: Vec<usize> = (0..self.hosts.len())
                .filter(|&h| self.hosts[h].port == k)
                .collect();
            for (ts, f) in sent {
                let rel = self.rel(ts);
                match on.as_slice() {
                    [] => {}
                    [one] => self.hosts[*one].deliver(rel, f),
                    many => {
                        for &h in many {
                            self.hosts[h].deliver(rel, f.clone());
                        }
                    }
                }
            }
        }
    }

    /// Switches one frame that reached port `port` at `ts`.
    fn switch(&mut self, port: usize, ts: Timestamp, data: &[u8]) -> Result<(), Error> {
        // The queues first release what leaves before this frame arrives.
        self.flush(ts)?;
        self.last = self.last.max(ts);
        self.batch.clear();
        self.batch
            .push_frame(data, PacketMeta::new(port as u16, ts));
        self.frames_in += 1;
        self.pipe
            .process(&mut self.batch, &mut crate::trace::NoTrace);
        self.batch.clear();
        self.flush(ts)
    }

    fn apply_change(&mut self, i: usize) {
        let c = &self.sc.sim.changes[i];
        let at = self.abs(c.at);
        match &c.op {
            ChangeOp::Add(rule) => {
                self.pipe.add_rule(rule.clone(), at);
                self.log.added.push((i + 1, rule.clone()));
            }
            ChangeOp::Delete { spec, strict } => {
                let before: Vec<(u32, Installed)> = self
                    .pipe
                    .rules()
                    .into_iter()
                    .map(|(id, r)| (id, r.clone()))
                    .collect();
                self.pipe.delete_rules(spec, *strict);
                let after: Vec<u32> = self.pipe.rules().into_iter().map(|(id, _)| id).collect();
                for (id, r) in before {
                    if !after.contains(&id) {
                        self.log.deleted.push((i + 1, r, at));
                    }
                }
            }
        }
    }
}

/// Runs a scenario with hosts or flow changes; writes the same outputs as
/// a replay, plus `host-<name>.pcap` with what each host sent.
pub(crate) fn run(sc: &Scenario, out_dir: &Path) -> Result<Summary, Error> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let has_inputs = sc.inputs.iter().any(Option::is_some);
    let start = if has_inputs {
        replay::start_time(sc)?.0
    } else {
        SIM_EPOCH
    };
    let mut inputs = replay::open_inputs(sc)?;
    let mut outputs = Vec::new();
    for p in &sc.ports {
        let path = out_dir.join(format!("{}.pcap", p.name));
        outputs.push(SimPort {
            inner: PcapPort::open(&p.name, None, Some(&path), true)?,
            sent: Vec::new(),
        });
    }
    let mut host_pcaps = Vec::new();
    for h in &sc.sim.hosts {
        let path = out_dir.join(format!("host-{}.pcap", h.name));
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        host_pcaps.push(PcapWriter::new(f, true).map_err(|e| Error::io(&path, e))?);
    }
    let mut r = Run {
        sc,
        start,
        pipe: replay::build_pipeline(sc, start)?,
        outputs,
        hosts: sc
            .sim
            .hosts
            .iter()
            .cloned()
            .map(|h| Host::new(h, sc.sim.interval))
            .collect(),
        host_pcaps,
        batch: Batch::new(1),
        frames_in: 0,
        last: start,
        log: RuleLog::default(),
    };
    let clock = ManualClock::new(start);
    let mut merger = Merger::new(sc);
    let mut next_change = 0;
    let mut now = 0u64;
    loop {
        let t_capture = merger.peek(&mut inputs, &clock).map(|t| r.rel(t));
        let t_nic = r
            .hosts
            .iter()
            .filter_map(|h| h.nic.front().map(|f| f.0))
            .min();
        let t_change = sc.sim.changes.get(next_change).map(|c| c.at);
        let t_queue = r.pipe.next_departure().map(|t| r.rel(t));
        let t_host = r
            .hosts
            .iter()
            .map(|h| h.wake)
            .min()
            .filter(|&w| w != u64::MAX);
        // Past `limit` the hosts stop (nothing they would do is taken),
        // but the captures are replayed to their end, as without hosts;
        // `end` stops everything.
        let limit = sc.sim.limit;
        let Some(t) = [
            t_capture,
            t_nic.filter(|&x| x <= limit),
            t_change,
            t_queue,
            t_host.filter(|&x| x <= limit),
        ]
        .into_iter()
        .flatten()
        .min() else {
            break;
        };
        let quiet = sc.sim.end.is_none()
            && t_capture.is_none()
            && t_nic.is_none()
            && t_change.is_none()
            && t_queue.is_none()
            && r.hosts.iter().all(|h| h.idle() && h.finished(now));
        if quiet || sc.sim.end.is_some_and(|e| t > e) {
            break;
        }
        now = now.max(t);
        while next_change < sc.sim.changes.len() && sc.sim.changes[next_change].at <= now {
            r.apply_change(next_change);
            next_change += 1;
        }
        // Frames reaching the switch by now, one at a time in time order.
        loop {
            let cap = merger.peek(&mut inputs, &clock);
            let mut best: Option<(u64, u16, Source)> = cap.map(|ts| {
                (r.rel(ts), 0, Source::Capture) // ofport filled below
            });
            if let (Some(b), Some((_, i))) = (best.as_mut(), merger.peek_port()) {
                b.1 = sc.ports[i].ofport;
            }
            for (hi, h) in r.hosts.iter().enumerate() {
                if let Some(&(at, _)) = h.nic.front() {
                    let of = sc.ports[h.port].ofport;
                    if best.is_none_or(|(bt, bo, _)| at < bt || (at == bt && of < bo)) {
                        best = Some((at, of, Source::Host(hi)));
                    }
                }
            }
            let Some((at, _, src)) = best.filter(|b| b.0 <= now) else {
                break;
            };
            match src {
                Source::Capture => {
                    let Some((i, p)) = merger.next(&mut inputs, &clock) else {
                        break;
                    };
                    let f = &merger.look[i].frames()[p];
                    let (ts, data) = (f.meta.ts, f.data().to_vec());
                    r.switch(i, ts, &data)?;
                }
                Source::Host(hi) => {
                    let Some((_, f)) = r.hosts[hi].nic.pop_front() else {
                        break;
                    };
                    let ts = r.abs(at);
                    let port = r.hosts[hi].port;
                    r.host_pcaps[hi]
                        .write(ts, &f)
                        .map_err(|e| Error::io(out_dir.join("host pcap"), e))?;
                    r.switch(port, ts, &f)?;
                }
            }
        }
        let t_abs = r.abs(now);
        r.flush(t_abs)?;
        for h in &mut r.hosts {
            if h.wake <= now && now <= limit {
                h.run(now);
            }
        }
    }
    // What is still queued leaves after the last event, at its time.
    r.flush(Timestamp(u64::MAX))?;
    for k in 0..r.outputs.len() {
        if let Err(e) = r.outputs[k].flush() {
            return Err(r.port_err(k, e));
        }
    }
    for (i, w) in r.host_pcaps.iter_mut().enumerate() {
        w.flush().map_err(|e| {
            Error::io(
                out_dir.join(format!("host-{}.pcap", sc.sim.hosts[i].name)),
                e,
            )
        })?;
    }
    let mut input_errors = Vec::new();
    for (k, inp) in inputs.iter_mut().enumerate() {
        if let Some(e) = inp.take_rx_error() {
            let path = sc.inputs[k]
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string());
            input_errors.push(format!("{path}: {e}"));
        }
    }
    let end = r.last.max(r.abs(now));
    let mut summary =
        replay::summarize(sc, &r.pipe, &inputs, r.frames_in, end, input_errors, &r.log);
    let names: Vec<String> = sc.ports.iter().map(|p| p.name.clone()).collect();
    summary.hosts = r.hosts.iter().map(|h| h.summary(now, &names)).collect();
    summary.sim_end_us = Some(now / 1000);
    Ok(summary)
}
