//! Packet buffers, batches and the buffer pool.
//!
//! Ownership rule: a [`PacketBuf`] is owned by exactly one place at a time — a
//! [`Batch`] slot, an egress queue, or the [`BufPool`]. Buffers move between
//! them (a pointer swap); bytes are copied only when one frame goes out more
//! than once. Every buffer is allocated when the pipeline is built, so the hot
//! path never allocates.

use crate::clock::Timestamp;

/// Bytes kept free in front of a frame so VLAN tags can be pushed in place.
pub const HEADROOM: usize = 128;
/// Largest frame (without FCS) a port can carry: 9216 bytes, the usual jumbo limit.
pub const MAX_FRAME: usize = 9216;
const TAILROOM: usize = 64;
/// Size of every buffer.
pub const BUF_SIZE: usize = HEADROOM + MAX_FRAME + TAILROOM;
/// Frames per burst on rx and tx.
pub const BURST: usize = 32;

/// `PacketMeta::queue` when no `set_queue` chose one.
pub const NO_QUEUE: u32 = u32::MAX;

/// Per-frame metadata that travels with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// Index of the ingress port in the pipeline's port list.
    pub port: u16,
    /// When the frame arrived (replay: its pcap timestamp); on egress from
    /// a port with QoS, when it leaves.
    pub ts: Timestamp,
    /// Egress queue chosen by `set_queue` ([`NO_QUEUE`] when none).
    pub queue: u32,
    /// 802.1p priority (0-7) given at ingress to a frame that arrived
    /// untagged (a tagged frame's priority is its tag's PCP).
    pub prio: u8,
}

impl PacketMeta {
    /// Metadata for a frame received on port `port` at `ts`.
    pub fn new(port: u16, ts: Timestamp) -> PacketMeta {
        PacketMeta {
            port,
            ts,
            queue: NO_QUEUE,
            prio: 0,
        }
    }
}

impl Default for PacketMeta {
    fn default() -> Self {
        PacketMeta::new(0, Timestamp(0))
    }
}

/// One frame in a fixed-size buffer with headroom.
pub struct PacketBuf {
    buf: Box<[u8; BUF_SIZE]>,
    head: u16,
    len: u16,
    /// Metadata.
    pub meta: PacketMeta,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuf {
    /// A new empty buffer (this allocates: call it at setup, not per packet).
    pub fn new() -> Self {
        PacketBuf {
            buf: Box::new([0u8; BUF_SIZE]),
            head: HEADROOM as u16,
            len: 0,
            meta: PacketMeta::default(),
        }
    }

    /// A buffer holding `frame` (allocates; for tests and setup).
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut p = Self::new();
        p.fill(frame);
        p
    }

    /// The frame's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head as usize..(self.head + self.len) as usize]
    }

    /// The frame's bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head as usize..(self.head + self.len) as usize]
    }

    /// Frame length in bytes.
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Replaces the contents with `frame`, truncated to [`MAX_FRAME`]; returns
    /// false if it had to truncate.
    #[inline]
    pub fn fill(&mut self, frame: &[u8]) -> bool {
        let n = frame.len().min(MAX_FRAME);
        self.head = HEADROOM as u16;
        self.len = n as u16;
        self.buf[HEADROOM..HEADROOM + n].copy_from_slice(&frame[..n]);
        n == frame.len()
    }

    /// Appends `bytes` to the frame (for frames that arrive in pieces);
    /// false, leaving the frame as it was, when it would exceed [`MAX_FRAME`].
    #[inline]
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let len = self.len as usize;
        if len + bytes.len() > MAX_FRAME {
            return false;
        }
        let at = self.head as usize + len;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.len = (len + bytes.len()) as u16;
        true
    }

    /// Makes room for `n` bytes at the end and returns them for writing (for
    /// ports that read straight into the buffer). `n` is capped at [`MAX_FRAME`].
    pub fn fill_with(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(MAX_FRAME);
        self.head = HEADROOM as u16;
        self.len = n as u16;
        &mut self.buf[HEADROOM..HEADROOM + n]
    }

    /// Shortens the frame to `n` bytes (no effect if it is shorter).
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        if n < self.len as usize {
            self.len = n as u16;
        }
    }

    /// Copies another buffer's frame and metadata into this one.
    #[inline]
    pub fn copy_from(&mut self, other: &PacketBuf) {
        self.fill(other.data());
        self.meta = other.meta;
    }

    /// Inserts a VLAN tag after the MAC addresses. The frame must be at least
    /// 12 bytes long (the pipeline never tags shorter frames).
    #[inline]
    pub fn push_vlan(&mut self, tpid: u16, tci: u16) {
        let (mut h, len) = (self.head as usize, self.len as usize);
        if h < 4 {
            // Headroom used up by earlier pushes: slide the frame back to the
            // default offset (only possible after 32 pushes, never in practice).
            self.buf.copy_within(h..h + len, HEADROOM);
            h = HEADROOM;
        }
        if HEADROOM + len + 4 > BUF_SIZE {
            self.head = h as u16;
            return;
        }
        self.buf.copy_within(h..h + 12, h - 4);
        h -= 4;
        self.head = h as u16;
        self.len = (len + 4) as u16;
        self.buf[h + 12..h + 14].copy_from_slice(&tpid.to_be_bytes());
        self.buf[h + 14..h + 16].copy_from_slice(&tci.to_be_bytes());
    }

    /// Removes the 4 bytes after the MAC addresses (the outer VLAN tag).
    #[inline]
    pub fn pop_vlan(&mut self) {
        if self.len < 16 {
            return;
        }
        let h = self.head as usize;
        self.buf.copy_within(h..h + 12, h + 4);
        self.head += 4;
        self.len -= 4;
    }
}

/// Up to [`BURST`] frames processed together.
#[derive(Debug)]
pub struct Batch {
    pkts: Vec<PacketBuf>,
    len: usize,
}

impl Batch {
    /// A batch with `cap` preallocated buffers.
    pub fn new(cap: usize) -> Self {
        Batch {
            pkts: (0..cap).map(|_| PacketBuf::new()).collect(),
            len: 0,
        }
    }

    /// Frames in the batch.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Slots in the batch.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.pkts.len()
    }
    /// True when no slot is free.
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len == self.pkts.len()
    }
    /// Empties the batch (buffers stay in their slots).
    #[inline(always)]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next free slot, for a port to fill; call [`Batch::commit`] after.
    #[inline(always)]
    pub fn next_slot(&mut self) -> Option<&mut PacketBuf> {
        self.pkts.get_mut(self.len)
    }

    /// Counts the slot returned by [`Batch::next_slot`] as filled.
    #[inline(always)]
    pub fn commit(&mut self) {
        if self.len < self.pkts.len() {
            self.len += 1;
        }
    }

    /// Appends a copy of `frame` with `meta`; false when the batch is full.
    pub fn push_frame(&mut self, frame: &[u8], meta: PacketMeta) -> bool {
        match self.next_slot() {
            Some(slot) => {
                slot.fill(frame);
                slot.meta = meta;
                self.commit();
                true
            }
            None => false,
        }
    }

    /// The filled frames.
    #[inline(always)]
    pub fn frames(&self) -> &[PacketBuf] {
        &self.pkts[..self.len]
    }

    /// The filled frames, writable.
    #[inline(always)]
    pub fn frames_mut(&mut self) -> &mut [PacketBuf] {
        &mut self.pkts[..self.len]
    }

    /// Swaps slot `i`'s buffer for `replacement` and returns the old one.
    #[inline(always)]
    pub fn swap_out(&mut self, i: usize, replacement: PacketBuf) -> PacketBuf {
        std::mem::replace(&mut self.pkts[i], replacement)
    }
}

/// Free buffers, preallocated.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<PacketBuf>,
}

impl BufPool {
    /// A pool holding `n` buffers.
    pub fn new(n: usize) -> Self {
        let mut free = Vec::with_capacity(n);
        free.extend((0..n).map(|_| PacketBuf::new()));
        BufPool { free }
    }
    /// Takes a buffer, or `None` when the pool is exhausted.
    #[inline(always)]
    pub fn take(&mut self) -> Option<PacketBuf> {
        self.free.pop()
    }
    /// Returns a buffer.
    #[inline(always)]
    pub fn put(&mut self, b: PacketBuf) {
        self.free.push(b);
    }
    /// Buffers available.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pop_vlan_round_trip() {
        let frame: Vec<u8> = (0u8..60).collect();
        let mut p = PacketBuf::from_frame(&frame);
        p.push_vlan(0x8100, 0x200a);
        assert_eq!(p.len(), 64);
        assert_eq!(&p.data()[..12], &frame[..12]);
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0x20, 0x0a]);
        assert_eq!(&p.data()[16..], &frame[12..]);
        p.pop_vlan();
        assert_eq!(p.data(), &frame[..]);
    }

    #[test]
    fn many_pushes_slide_back() {
        let frame = [7u8; 20];
        let mut p = PacketBuf::from_frame(&frame);
        for _ in 0..40 {
            p.push_vlan(0x8100, 1);
        }
        assert_eq!(p.len(), 20 + 160);
        for _ in 0..40 {
            p.pop_vlan();
        }
        assert_eq!(p.data(), &frame[..]);
    }

    #[test]
    fn fill_truncates_oversize() {
        let big = vec![1u8; MAX_FRAME + 10];
        let mut p = PacketBuf::new();
        assert!(!p.fill(&big));
        assert_eq!(p.len(), MAX_FRAME);
    }
}
