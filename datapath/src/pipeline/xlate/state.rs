//! Per-frame translation state ([`Xlate`]): the logical flow the actions
//! change, how deep the translation is nested, and what becomes of the
//! frame. Its fields are private; the stages change it through the small
//! methods below, grouped by what they touch.

use crate::clock::Timestamp;
use crate::key::{Field, FlowKey};
use crate::packet::{PacketBuf, NO_QUEUE};
use crate::parse::consts::*;
use crate::pipeline::{MAX_DEPTH, MAX_RESUBMITS};
use crate::stats::DropReason;
use crate::trace::{TraceEvent, Tracer};
use crate::vlan::Tag;

/// Per-frame translation state.
pub(in crate::pipeline) struct Xlate {
    // The logical flow.
    key: FlowKey,
    vlans: [Tag; 2],
    /// The tags the frame's bytes carry now.
    base_vlans: [Tag; 2],
    /// The frame arrived with a VLAN tag.
    in_tagged: bool,
    /// The MACs in `key` differ from the frame's bytes.
    macs_dirty: bool,
    /// A `mod_vlan_pcp` set the outer tag's PCP: it is the frame's priority.
    pcp_set: bool,
    // The frame as received.
    in_len: usize,
    now: Timestamp,
    // Nesting.
    /// The table whose rule runs.
    table: u8,
    /// Nesting of rule executions (for traces).
    depth: u8,
    /// Nesting of resubmits to the same or an earlier table (OVS's limit).
    rdepth: u8,
    resubmits: u32,
    // The frame's fate.
    outputs: u32,
    reason: DropReason,
    error: Option<DropReason>,
    /// A meter dropped the frame: no further action runs, and the outputs
    /// made before stand (as in Open vSwitch's datapath).
    halted: bool,
    queue: u32,
    /// The last output so far: (port, queue, priority chosen when it was
    /// output).
    pending: Option<(u16, u32, u8)>,
}

impl Xlate {
    /// The state for `pkt`, parsed as `key`, whose outer tag is `tag0`.
    #[inline(always)]
    pub(in crate::pipeline) fn new(pkt: &PacketBuf, key: FlowKey, tag0: Tag) -> Xlate {
        Xlate {
            key,
            vlans: [tag0, Tag::default()],
            base_vlans: [tag0, Tag::default()],
            in_tagged: tag0.present(),
            macs_dirty: false,
            pcp_set: false,
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
        }
    }

    // --- The frame as received.

    /// The logical flow's key.
    #[inline(always)]
    pub(in crate::pipeline) fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The received frame's length.
    #[inline(always)]
    pub(in crate::pipeline) fn in_len(&self) -> usize {
        self.in_len
    }

    /// When the frame arrived.
    #[inline(always)]
    pub(in crate::pipeline) fn now(&self) -> Timestamp {
        self.now
    }

    // --- Nesting: tables, resubmits, NORMAL.

    /// The table whose rule runs.
    #[inline(always)]
    pub(in crate::pipeline) fn table(&self) -> u8 {
        self.table
    }

    /// How deep rule executions are nested (0: the first lookup's).
    #[inline(always)]
    pub(in crate::pipeline) fn depth(&self) -> u8 {
        self.depth
    }

    /// A rule of `table` starts running; returns what
    /// [`Xlate::leave_table`] needs.
    #[inline(always)]
    pub(in crate::pipeline) fn enter_table(&mut self, table: u8) -> u8 {
        let saved = self.table;
        self.table = table;
        self.depth += 1;
        saved
    }

    /// The rule [`Xlate::enter_table`] started is done.
    #[inline(always)]
    pub(in crate::pipeline) fn leave_table(&mut self, saved: u8) {
        self.depth -= 1;
        self.table = saved;
    }

    /// NORMAL runs as a nested execution (for traces).
    #[inline(always)]
    pub(in crate::pipeline) fn nest(&mut self) {
        self.depth += 1;
    }

    /// NORMAL is done.
    #[inline(always)]
    pub(in crate::pipeline) fn unnest(&mut self) {
        self.depth -= 1;
    }

    /// Applies OVS's resubmit limits: at most 4096 resubmits per frame, and
    /// at most 64 nested resubmits to the same or an earlier table (forward
    /// jumps cannot loop). Returns how much the nesting grew (for
    /// [`Xlate::leave_resubmit`]), or `None` with the translation failed
    /// (the whole frame is then dropped).
    #[inline]
    pub(in crate::pipeline) fn enter_resubmit(&mut self, table: u8) -> Option<u8> {
        if self.resubmits >= MAX_RESUBMITS {
            self.error = Some(DropReason::ResubmitLimit);
            return None;
        }
        self.resubmits += 1;
        if table <= self.table {
            if self.rdepth >= MAX_DEPTH {
                self.error = Some(DropReason::ResubmitLimit);
                return None;
            }
            self.rdepth += 1;
            return Some(1);
        }
        Some(0)
    }

    /// The resubmit [`Xlate::enter_resubmit`] allowed is done.
    #[inline(always)]
    pub(in crate::pipeline) fn leave_resubmit(&mut self, back: u8) {
        self.rdepth -= back;
    }

    // --- The frame's fate.

    /// Outputs so far.
    #[inline(always)]
    pub(in crate::pipeline) fn outputs(&self) -> u32 {
        self.outputs
    }

    /// Why the frame is dropped if nothing outputs it.
    #[inline(always)]
    pub(in crate::pipeline) fn reason(&self) -> DropReason {
        self.reason
    }

    /// The translation failed: the whole frame is dropped for this reason.
    #[inline(always)]
    pub(in crate::pipeline) fn failed(&self) -> Option<DropReason> {
        self.error
    }

    /// No further action runs (the translation failed or a meter dropped
    /// the frame).
    #[inline(always)]
    pub(in crate::pipeline) fn stopped(&self) -> bool {
        self.error.is_some() || self.halted
    }

    /// A meter dropped the frame: the actions after it do not run.
    #[inline(always)]
    pub(in crate::pipeline) fn halt(&mut self) {
        self.halted = true;
    }

    /// An action did nothing, for reason `r` (the frame's drop reason if
    /// nothing outputs it).
    #[inline]
    pub(in crate::pipeline) fn skip<T: Tracer>(&mut self, r: DropReason, t: &mut T) {
        self.reason = r;
        if T::ENABLED {
            t.record(TraceEvent::Skip { reason: r });
        }
    }

    /// No rule matched: at the first lookup, the frame is a table miss.
    #[inline(always)]
    pub(in crate::pipeline) fn table_miss(&mut self) {
        if self.depth == 0 {
            self.reason = DropReason::TableMiss;
        }
    }

    /// The last output so far (port, queue, priority), not yet queued.
    #[inline(always)]
    pub(in crate::pipeline) fn pending(&self) -> Option<(u16, u32, u8)> {
        self.pending
    }

    /// Takes the last output so far, to queue it (a copy) before the next.
    #[inline(always)]
    pub(in crate::pipeline) fn take_pending(&mut self) -> Option<(u16, u32, u8)> {
        self.pending.take()
    }

    /// Records an output to port `out` with the queue chosen so far; the
    /// priority is the outer tag's PCP when an action set it, else
    /// `frame_prio`.
    #[inline(always)]
    pub(in crate::pipeline) fn record_output(&mut self, out: u16, frame_prio: u8) {
        let prio = if self.pcp_set && self.vlans[0].present() {
            (self.vlans[0].tci >> 13) as u8
        } else {
            frame_prio
        };
        self.pending = Some((out, self.queue, prio));
        self.outputs += 1;
    }

    /// `set_queue`: the queue of the outputs after it.
    #[inline(always)]
    pub(in crate::pipeline) fn set_queue(&mut self, q: u32) {
        self.queue = q;
    }

    // --- The logical flow: VLAN tags and MACs.

    /// The logical VLAN stack (outer first).
    #[inline(always)]
    pub(in crate::pipeline) fn vlans(&self) -> [Tag; 2] {
        self.vlans
    }

    /// Replaces the logical VLAN stack (NORMAL's output translation, undone
    /// after the output).
    #[inline(always)]
    pub(in crate::pipeline) fn set_vlans(&mut self, v: [Tag; 2]) {
        self.vlans = v;
    }

    #[inline]
    fn sync_tci(&mut self) {
        let tci = if self.vlans[0].present() {
            self.vlans[0].tci
        } else {
            0
        };
        self.key.set(Field::VlanTci, tci as u64);
    }

    /// The outer tag, pushed (802.1Q) when there is none.
    #[inline]
    fn outer_tag(&mut self) -> &mut Tag {
        let t0 = &mut self.vlans[0];
        if t0.tpid == 0 {
            t0.tpid = ETH_TYPE_VLAN;
        }
        t0
    }

    /// `mod_vlan_vid`.
    #[inline]
    pub(in crate::pipeline) fn set_vlan_vid(&mut self, v: u16) {
        let t0 = self.outer_tag();
        t0.tci = (t0.tci & !VLAN_VID_MASK) | (v & VLAN_VID_MASK) | VLAN_CFI;
        self.sync_tci();
    }

    /// `mod_vlan_pcp`.
    #[inline]
    pub(in crate::pipeline) fn set_vlan_pcp(&mut self, p: u8) {
        let t0 = self.outer_tag();
        t0.tci = (t0.tci & !VLAN_PCP_MASK) | ((p as u16 & 7) << 13) | VLAN_CFI;
        self.pcp_set = true;
        self.sync_tci();
    }

    /// `strip_vlan`: pops the outer tag.
    #[inline]
    pub(in crate::pipeline) fn strip_vlan(&mut self) {
        self.vlans[0] = self.vlans[1];
        self.vlans[1] = Tag::default();
        self.sync_tci();
    }

    /// `push_vlan`: a new outer tag with `tpid`.
    #[inline]
    pub(in crate::pipeline) fn push_vlan(&mut self, tpid: u16) {
        self.vlans[1] = self.vlans[0];
        self.vlans[0] = Tag {
            tpid,
            tci: VLAN_CFI,
        };
        self.sync_tci();
    }

    /// `mod_dl_src`.
    #[inline]
    pub(in crate::pipeline) fn set_dl_src(&mut self, m: u64) {
        self.key.set(Field::DlSrc, m);
        self.macs_dirty = true;
    }

    /// `mod_dl_dst`.
    #[inline]
    pub(in crate::pipeline) fn set_dl_dst(&mut self, m: u64) {
        self.key.set(Field::DlDst, m);
        self.macs_dirty = true;
    }

    /// True when the outer tag is one an output adds to a frame that came
    /// untagged and no action set its PCP (a remarking port then sets it).
    #[inline(always)]
    pub(in crate::pipeline) fn adds_tag(&self) -> bool {
        !self.in_tagged && !self.pcp_set && self.vlans[0].present()
    }

    /// The outer tag's TCI (DEI clear) the frame's bytes carry now; 0
    /// untagged.
    #[inline]
    pub(in crate::pipeline) fn committed_tci(&self) -> u16 {
        if self.base_vlans[0].present() {
            self.base_vlans[0].tci & !VLAN_CFI
        } else {
            0
        }
    }

    /// [`Xlate::commit`] with the outer tag's PCP set to `pcp` for this
    /// output alone.
    #[inline]
    pub(in crate::pipeline) fn commit_with_pcp(&mut self, pkt: &mut PacketBuf, pcp: u16) {
        let saved = self.vlans;
        self.vlans[0].tci = (self.vlans[0].tci & !VLAN_PCP_MASK) | (pcp << 13);
        self.commit(pkt);
        self.vlans = saved;
    }

    /// Brings the frame's bytes in line with the logical flow (OVS
    /// `commit_vlan_action` and the Ethernet rewrite): pop the tags that
    /// differ, push the wanted ones (with DEI cleared), rewrite MACs.
    #[inline]
    pub(in crate::pipeline) fn commit(&mut self, pkt: &mut PacketBuf) {
        if !Tag::same2(&self.vlans, &self.base_vlans) {
            let count = |v: &[Tag; 2]| v.iter().take_while(|t| t.present()).count();
            let mut bn = count(&self.base_vlans);
            let mut fnn = count(&self.vlans);
            while bn > 0 && fnn > 0 && self.base_vlans[bn - 1] == self.vlans[fnn - 1] {
                bn -= 1;
                fnn -= 1;
            }
            for _ in 0..bn {
                pkt.pop_vlan();
            }
            for i in (0..fnn).rev() {
                pkt.push_vlan(self.vlans[i].tpid, self.vlans[i].tci & !VLAN_CFI);
            }
            self.base_vlans = self.vlans;
        }
        if self.macs_dirty {
            let d = pkt.data_mut();
            if d.len() >= 12 {
                d[0..6].copy_from_slice(&crate::key::mac_to_bytes(self.key.dl_dst()));
                d[6..12].copy_from_slice(&crate::key::mac_to_bytes(self.key.dl_src()));
            }
            self.macs_dirty = false;
        }
    }
}
