//! Egress stage: a frame's fate once its actions ran (its outputs
//! queued or taken back, its drop counted), the per-port limits (down,
//! MTU, queue full, no buffer), and sending a port's queue without QoS.

use super::*;
use crate::clock::Timestamp;
use crate::packet::{Batch, PacketBuf, BURST, MAX_FRAME};
use crate::parse::{eth_type_vlan, ETH_HEADER_LEN};
use crate::port::{Port, PortError};
use crate::stats::DropReason;
use crate::trace::{TraceEvent, Tracer};

impl Pipeline {
    /// Final stage for one frame: commit or roll back its outputs, count its fate.
    #[inline(always)]
    pub(super) fn finish<T: Tracer>(
        &mut self,
        batch: &mut Batch,
        i: usize,
        x: &mut Xlate,
        t: &mut T,
    ) {
        let in_idx = batch.frames()[i].meta.port as usize;
        if let Some(err) = x.failed() {
            // OVS discards the whole translation: take back queued copies.
            for k in (0..self.emitted.len()).rev() {
                let p = self.emitted[k] as usize;
                if let Some(b) = self.ports[p].egress.pop() {
                    self.pool.put(b);
                }
            }
            drop_frame(&mut self.ports[in_idx].stats, err, t);
            return;
        }
        if let Some((out, queue, prio)) = x.pending() {
            self.enqueue_last(batch, i, out as usize, queue, prio, t);
        }
        if x.outputs() == 0 {
            drop_frame(&mut self.ports[in_idx].stats, x.reason(), t);
        }
    }

    /// Checks egress limits; on failure counts the drop and returns false.
    #[inline(always)]
    fn egress_ok<T: Tracer>(&mut self, out: usize, frame: &[u8], t: &mut T) -> bool {
        let p = &mut self.ports[out];
        let r = if p.down {
            DropReason::PortDown
        } else if !fits(frame, p.limit) {
            DropReason::TxMtu
        } else if p.egress.len() >= self.opts.egress_limit {
            DropReason::QueueFull
        } else if self.pool.available() == 0 {
            DropReason::NoBuffer
        } else {
            return true;
        };
        if !T::DRY {
            p.stats.drops.add(r, 1);
        }
        if T::ENABLED {
            t.record(TraceEvent::EgressDrop {
                port: out as u16,
                reason: r,
            });
        }
        false
    }

    /// Queues the frame's own buffer on `out` (the last output).
    #[inline(always)]
    pub(super) fn enqueue_last<T: Tracer>(
        &mut self,
        batch: &mut Batch,
        i: usize,
        out: usize,
        queue: u32,
        prio: u8,
        t: &mut T,
    ) {
        if !self.egress_ok(out, batch.frames()[i].data(), t) {
            return;
        }
        if let Some(fresh) = self.pool.take() {
            let mut b = batch.swap_out(i, fresh);
            b.meta.queue = queue;
            b.meta.prio = prio;
            self.ports[out].egress.push(b);
        }
    }

    /// Queues a copy of the frame on `out`.
    #[inline]
    pub(super) fn enqueue_copy<T: Tracer>(
        &mut self,
        out: usize,
        pkt: &PacketBuf,
        queue: u32,
        prio: u8,
        t: &mut T,
    ) {
        if !self.egress_ok(out, pkt.data(), t) {
            return;
        }
        if let Some(mut b) = self.pool.take() {
            b.copy_from(pkt);
            b.meta.queue = queue;
            b.meta.prio = prio;
            self.ports[out].egress.push(b);
            self.emitted.push(out as u16);
        }
    }

    /// Frames waiting to be sent on port `idx` now (not those a QoS
    /// shaper holds back).
    pub fn egress_len(&self, idx: u16) -> usize {
        self.ports
            .get(idx as usize)
            .map_or(0, |p| p.egress.len() + p.txq.len())
    }

    /// True when port `idx` has QoS queues.
    pub fn has_qos(&self, idx: u16) -> bool {
        self.ports
            .get(idx as usize)
            .is_some_and(|p| p.qos.is_some())
    }

    /// Sends what is queued for port `idx` through `port`, in bursts.
    /// Frames the port does not take now stay queued. On a port error the
    /// queue is dropped (counted as `tx_error`) and the error returned.
    /// For a port with QoS, see [`Pipeline::flush_port_at`]; this sends
    /// what its scheduler releases by the newest frame's time.
    pub fn flush_port(&mut self, idx: u16, port: &mut dyn Port) -> Result<usize, PortError> {
        if let Some(p) = self.ports.get(idx as usize) {
            if let Some(q) = p.qos.as_ref() {
                // An untimed port's scheduler does not look at the clock.
                let now = if q.untimed() {
                    Timestamp(0)
                } else {
                    p.egress
                        .iter()
                        .map(|b| b.meta.ts)
                        .max()
                        .unwrap_or(Timestamp(0))
                };
                return self.flush_port_at(idx, port, now);
            }
        }
        self.flush_plain(idx, port)
    }

    pub(super) fn flush_plain(
        &mut self,
        idx: u16,
        port: &mut dyn Port,
    ) -> Result<usize, PortError> {
        let Some(ps) = self.ports.get_mut(idx as usize) else {
            return Ok(0);
        };
        let (sent, result) = send_bursts(port, &ps.egress);
        ps.stats.tx_packets += sent as u64;
        ps.stats.tx_bytes += retire(&mut self.pool, ps.egress.drain(..sent));
        if let Err(e) = result {
            ps.stats
                .drops
                .add(DropReason::TxError, ps.egress.len() as u64);
            retire(&mut self.pool, ps.egress.drain(..));
            return Err(e);
        }
        Ok(sent)
    }
}

/// Length of a frame's Ethernet header: 18 with a VLAN tag, else 14.
#[inline(always)]
fn l2_len(frame: &[u8]) -> usize {
    match frame.get(12..14) {
        Some(t) if frame.len() >= 18 && eth_type_vlan(u16::from_be_bytes([t[0], t[1]])) => 18,
        _ => ETH_HEADER_LEN,
    }
}

/// True when `frame` fits a port whose payload limit is `limit`.
#[inline(always)]
fn fits(frame: &[u8], limit: usize) -> bool {
    let len = frame.len();
    len <= ETH_HEADER_LEN + limit
        || (len <= MAX_FRAME && len.saturating_sub(l2_len(frame)) <= limit)
}

/// Offers `frames` to `port` in bursts of at most [`BURST`] until it takes
/// less than a whole burst or fails; returns how many it took (a prefix)
/// and the error, if any.
#[inline(always)]
pub(super) fn send_bursts(
    port: &mut dyn Port,
    frames: &[PacketBuf],
) -> (usize, Result<(), PortError>) {
    let mut sent = 0;
    while sent < frames.len() {
        let chunk = (frames.len() - sent).min(BURST);
        match port.tx_burst(&frames[sent..sent + chunk]) {
            Ok(k) => {
                let k = k.min(chunk);
                sent += k;
                if k < chunk {
                    break;
                }
            }
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(()))
}
