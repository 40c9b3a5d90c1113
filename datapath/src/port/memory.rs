//! In-memory ports for tests and benchmarks.

use std::collections::VecDeque;

use super::{Port, PortError};
use crate::clock::{Clock, Timestamp};
use crate::packet::{Batch, PacketBuf, PacketMeta};

/// What a memory port does with frames it is asked to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Keep a copy of each (tests).
    Keep,
    /// Count them only (benchmarks: no allocation).
    Count,
}

/// A port fed from memory.
#[derive(Debug)]
pub struct MemoryPort {
    name: String,
    queue: VecDeque<(Timestamp, Vec<u8>)>,
    cycle: Vec<Vec<u8>>,
    cycle_pos: usize,
    sink: Sink,
    /// Frames sent through this port (with [`Sink::Keep`]).
    pub sent: Vec<(PacketMeta, Vec<u8>)>,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Most frames accepted per `tx_burst` call (to test back-pressure).
    pub tx_limit: usize,
    /// `tx_burst` fails, as when the device is gone (to test errors).
    pub tx_fail: bool,
}

impl MemoryPort {
    /// A port that keeps what it is sent.
    pub fn new(name: &str) -> Self {
        MemoryPort {
            name: name.to_string(),
            queue: VecDeque::new(),
            cycle: Vec::new(),
            cycle_pos: 0,
            sink: Sink::Keep,
            sent: Vec::new(),
            tx_packets: 0,
            tx_bytes: 0,
            tx_limit: usize::MAX,
            tx_fail: false,
        }
    }

    /// A port that endlessly receives `frames` in turn and counts what it
    /// sends (for benchmarks).
    pub fn generator(name: &str, frames: Vec<Vec<u8>>) -> Self {
        let mut p = Self::new(name);
        p.cycle = frames;
        p.sink = Sink::Count;
        p
    }

    /// Sets what happens to sent frames.
    pub fn set_sink(&mut self, sink: Sink) {
        self.sink = sink;
    }

    /// Queues a frame to be received, stamped `ts` (`None`: from the clock).
    pub fn inject(&mut self, ts: Timestamp, frame: &[u8]) {
        self.queue.push_back((ts, frame.to_vec()));
    }

    /// Takes the frames sent so far.
    pub fn take_sent(&mut self) -> Vec<(PacketMeta, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(
        &mut self,
        batch: &mut Batch,
        port_index: u16,
        clock: &dyn Clock,
    ) -> Result<usize, PortError> {
        let mut n = 0;
        if !self.cycle.is_empty() {
            let now = clock.now();
            while let Some(slot) = batch.next_slot() {
                slot.fill(&self.cycle[self.cycle_pos]);
                slot.meta = PacketMeta::new(port_index, now);
                batch.commit();
                self.cycle_pos += 1;
                if self.cycle_pos == self.cycle.len() {
                    self.cycle_pos = 0;
                }
                n += 1;
            }
            return Ok(n);
        }
        while !batch.is_full() {
            let Some((ts, f)) = self.queue.pop_front() else {
                break;
            };
            batch.push_frame(&f, PacketMeta::new(port_index, ts));
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError> {
        if self.tx_fail {
            return Err(PortError::Gone);
        }
        let n = frames.len().min(self.tx_limit);
        for f in &frames[..n] {
            self.tx_packets += 1;
            self.tx_bytes += f.len() as u64;
            if self.sink == Sink::Keep {
                self.sent.push((f.meta, f.data().to_vec()));
            }
        }
        Ok(n)
    }

    fn rx_exhausted(&self) -> bool {
        self.cycle.is_empty() && self.queue.is_empty()
    }
}
