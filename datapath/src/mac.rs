//! The MAC learning table NORMAL uses, with Open vSwitch's rules:
//!
//! - entries are keyed by (VLAN, MAC) and point at a port;
//! - times are whole seconds; an entry learned at second `t` expires at
//!   `t + aging` and is refreshed (re-armed, moved to the back of the LRU
//!   lists) only once it is at least one second old, or when the MAC moves;
//! - multicast source addresses are never learned;
//! - when the table is full, the port holding the most entries loses its
//!   least recently refreshed one (OVS's "fair" eviction; with a single busy
//!   port this is plain oldest-first).
//!
//! Entries live in a slab with intrusive doubly-linked LRU lists (global, for
//! aging; per port, for eviction), so learning allocates only when the slab
//! grows, up to the table's size.

use crate::hash::FastMap;

/// OVS's default aging time.
pub const DEFAULT_AGING_SECS: u64 = 300;
/// OVS's default table size.
pub const DEFAULT_MAX_ENTRIES: usize = 8192;
/// Table sizes OVS accepts (`mac-table-size`; it clamps anything else).
pub const MAX_ENTRIES_RANGE: std::ops::RangeInclusive<usize> = 10..=1_000_000;
/// Aging times OVS accepts (`mac-aging-time`; it clamps anything else).
pub const AGING_RANGE: std::ops::RangeInclusive<u64> = 15..=3600;

/// A MAC table option outside the range OVS accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacOptionError {
    /// The aging time, seconds.
    #[error("mac_aging = {0}: must be {lo}-{hi} seconds", lo = AGING_RANGE.start(), hi = AGING_RANGE.end())]
    Aging(u64),
    /// The table size, entries.
    #[error("mac_table_size = {0}: must be {lo}-{hi} entries", lo = MAX_ENTRIES_RANGE.start(), hi = MAX_ENTRIES_RANGE.end())]
    TableSize(usize),
}

/// Checks a MAC aging time (seconds) and table size, when given, against
/// [`AGING_RANGE`] and [`MAX_ENTRIES_RANGE`] (the aging time first).
pub fn check_options(aging: Option<u64>, size: Option<usize>) -> Result<(), MacOptionError> {
    if let Some(a) = aging.filter(|a| !AGING_RANGE.contains(a)) {
        return Err(MacOptionError::Aging(a));
    }
    if let Some(s) = size.filter(|s| !MAX_ENTRIES_RANGE.contains(s)) {
        return Err(MacOptionError::TableSize(s));
    }
    Ok(())
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    port: u16,
    expires: u64,
    learned: u64,
    prev: u32,
    next: u32,
    pprev: u32,
    pnext: u32,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// What learning a source address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Not learnable (multicast source).
    Ignored,
    /// A new entry.
    New,
    /// The MAC moved here from another port.
    Moved {
        /// Port index it was on.
        from: u16,
    },
    /// Entry re-armed (it was at least one second old).
    Refreshed,
    /// Already learned on this port this second: nothing to do.
    Unchanged,
}

/// One learned address, for listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FdbEntry {
    /// VLAN.
    pub vlan: u16,
    /// MAC as a 48-bit number.
    pub mac: u64,
    /// Port index.
    pub port: u16,
    /// Seconds since last learned or refreshed.
    pub age: u64,
}

/// Result of an eviction, for traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// VLAN.
    pub vlan: u16,
    /// MAC.
    pub mac: u64,
    /// Port index.
    pub port: u16,
}

/// The table.
#[derive(Debug)]
pub struct MacTable {
    map: FastMap<u64, u32>,
    slab: Vec<Entry>,
    free: Vec<u32>,
    lru: List,
    ports: Vec<List>,
    aging: u64,
    max: usize,
    last_run: u64,
    /// Entries evicted because the table was full.
    pub evictions: u64,
    /// Entries removed by aging.
    pub expirations: u64,
    /// Times a MAC moved between ports.
    pub moves: u64,
    /// Bumped whenever a lookup could answer differently (an entry added,
    /// moved or removed); refreshes do not bump it.
    pub gen: u32,
}

#[inline(always)]
fn key(mac: u64, vlan: u16) -> u64 {
    ((vlan as u64) << 48) | (mac & 0xffff_ffff_ffff)
}

/// True for group (multicast/broadcast) addresses.
#[inline(always)]
pub fn is_multicast(mac: u64) -> bool {
    mac & 0x0100_0000_0000 != 0
}

impl MacTable {
    /// A table with OVS's defaults (300 s, 8192 entries).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_AGING_SECS, DEFAULT_MAX_ENTRIES)
    }

    /// A table with the given aging time and size, clamped to the ranges
    /// OVS accepts ([`AGING_RANGE`], [`MAX_ENTRIES_RANGE`]); tests may use
    /// smaller tables through [`MacTable::with_exact_limits`].
    pub fn with_limits(aging_secs: u64, max_entries: usize) -> Self {
        Self::with_exact_limits(
            aging_secs.clamp(*AGING_RANGE.start(), *AGING_RANGE.end()),
            max_entries.clamp(*MAX_ENTRIES_RANGE.start(), *MAX_ENTRIES_RANGE.end()),
        )
    }

    /// A table with exactly these limits (at least 1 each).
    pub fn with_exact_limits(aging_secs: u64, max_entries: usize) -> Self {
        let max = max_entries.max(1);
        // Sized for the whole table up front: learning never reallocates.
        MacTable {
            map: FastMap::with_capacity_and_hasher(max, Default::default()),
            slab: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            lru: List::default(),
            ports: Vec::new(),
            aging: aging_secs.max(1),
            max,
            last_run: 0,
            evictions: 0,
            expirations: 0,
            moves: 0,
            gen: 0,
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Aging time in seconds.
    pub fn aging(&self) -> u64 {
        self.aging
    }
    /// Maximum entries.
    pub fn max_entries(&self) -> usize {
        self.max
    }

    /// The port `mac` was learned on in `vlan` (never for multicast).
    #[inline]
    pub fn lookup(&self, mac: u64, vlan: u16) -> Option<u16> {
        if is_multicast(mac) {
            return None;
        }
        self.map
            .get(&key(mac, vlan))
            .map(|&i| self.slab[i as usize].port)
    }

    /// Learns that `mac` in `vlan` is behind port `port` at second `now`.
    /// Returns what happened and the entry evicted to make room, if any.
    #[inline]
    pub fn learn(
        &mut self,
        mac: u64,
        vlan: u16,
        port: u16,
        now: u64,
    ) -> (Learned, Option<Evicted>) {
        self.learn_ex(mac, vlan, port, now, false)
    }

    /// [`MacTable::learn`], with `always_refresh` for gratuitous ARPs, which
    /// OVS lets refresh an entry even within its first second.
    #[inline]
    pub fn learn_ex(
        &mut self,
        mac: u64,
        vlan: u16,
        port: u16,
        now: u64,
        always_refresh: bool,
    ) -> (Learned, Option<Evicted>) {
        if is_multicast(mac) {
            return (Learned::Ignored, None);
        }
        let k = key(mac, vlan);
        if let Some(&i) = self.map.get(&k) {
            let e = self.slab[i as usize];
            let age = self.aging.saturating_sub(e.expires.saturating_sub(now));
            if age == 0 && e.port == port && !always_refresh {
                return (Learned::Unchanged, None);
            }
            // Refresh: to the back of both LRU lists, re-armed.
            self.unlink(i);
            let ent = &mut self.slab[i as usize];
            ent.expires = now + self.aging;
            ent.learned = now;
            let from = ent.port;
            ent.port = port;
            self.link_back(i);
            if from != port {
                self.moves += 1;
                self.gen = self.gen.wrapping_add(1);
                return (Learned::Moved { from }, None);
            }
            return (Learned::Refreshed, None);
        }
        let mut evicted = None;
        if self.map.len() >= self.max {
            evicted = self.evict_fairly();
        }
        let e = Entry {
            key: k,
            port,
            expires: now + self.aging,
            learned: now,
            prev: NIL,
            next: NIL,
            pprev: NIL,
            pnext: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = e;
                i
            }
            None => {
                self.slab.push(e);
                (self.slab.len() - 1) as u32
            }
        };
        self.map.insert(k, i);
        self.link_back(i);
        self.gen = self.gen.wrapping_add(1);
        (Learned::New, evicted)
    }

    /// What [`MacTable::learn_ex`] would do, without doing it.
    pub fn preview(
        &self,
        mac: u64,
        vlan: u16,
        port: u16,
        now: u64,
        always_refresh: bool,
    ) -> Learned {
        if is_multicast(mac) {
            return Learned::Ignored;
        }
        match self.map.get(&key(mac, vlan)) {
            None => Learned::New,
            Some(&i) => {
                let e = self.slab[i as usize];
                let age = self.aging.saturating_sub(e.expires.saturating_sub(now));
                if e.port != port {
                    Learned::Moved { from: e.port }
                } else if age == 0 && !always_refresh {
                    Learned::Unchanged
                } else {
                    Learned::Refreshed
                }
            }
        }
    }

    /// Removes entries that expired by second `now`. Cheap when called more
    /// than once a second: it only works when the second changes.
    #[inline]
    pub fn run(&mut self, now: u64) -> usize {
        if now == self.last_run {
            return 0;
        }
        self.last_run = now;
        let mut n = 0;
        while self.lru.head != NIL {
            let i = self.lru.head;
            if self.slab[i as usize].expires > now {
                break;
            }
            self.remove(i);
            self.expirations += 1;
            n += 1;
        }
        n
    }

    /// Makes room for `n` ports' lists (so learning on a new port does not
    /// allocate).
    pub fn reserve_ports(&mut self, n: usize) {
        if self.ports.len() < n {
            self.ports.resize(n, List::default());
        }
    }

    /// Forgets everything.
    pub fn flush(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        self.map.clear();
        self.slab.clear();
        self.free.clear();
        self.lru = List::default();
        for p in &mut self.ports {
            *p = List::default();
        }
    }

    /// Forgets what was learned on `port` (the port went away).
    pub fn flush_port(&mut self, port: u16) {
        while let Some(l) = self.ports.get(port as usize) {
            if l.head == NIL {
                break;
            }
            self.remove(l.head);
        }
    }

    /// The entries, oldest first, with ages as of second `now`.
    pub fn entries(&self, now: u64) -> Vec<FdbEntry> {
        let mut out = Vec::with_capacity(self.map.len());
        let mut i = self.lru.head;
        while i != NIL {
            let e = &self.slab[i as usize];
            out.push(FdbEntry {
                vlan: (e.key >> 48) as u16,
                mac: e.key & 0xffff_ffff_ffff,
                port: e.port,
                age: now.saturating_sub(e.learned),
            });
            i = e.next;
        }
        out
    }

    fn evict_fairly(&mut self) -> Option<Evicted> {
        // The port with the most entries; ties go to the one whose oldest
        // entry is older (deterministic, and oldest-first with one port).
        let mut best: Option<(u32, u64, usize)> = None;
        for (p, l) in self.ports.iter().enumerate() {
            if l.len == 0 {
                continue;
            }
            let oldest = self.slab[l.head as usize].expires;
            let better = match best {
                None => true,
                Some((len, exp, _)) => l.len > len || (l.len == len && oldest < exp),
            };
            if better {
                best = Some((l.len, oldest, p));
            }
        }
        let (_, _, p) = best?;
        let i = self.ports[p].head;
        let e = self.slab[i as usize];
        self.remove(i);
        self.evictions += 1;
        Some(Evicted {
            vlan: (e.key >> 48) as u16,
            mac: e.key & 0xffff_ffff_ffff,
            port: e.port,
        })
    }

    fn remove(&mut self, i: u32) {
        self.gen = self.gen.wrapping_add(1);
        self.unlink(i);
        let k = self.slab[i as usize].key;
        self.map.remove(&k);
        self.free.push(i);
    }

    fn link_back(&mut self, i: u32) {
        let port = self.slab[i as usize].port as usize;
        if self.ports.len() <= port {
            self.ports.resize(port + 1, List::default());
        }
        // Global list.
        let tail = self.lru.tail;
        {
            let e = &mut self.slab[i as usize];
            e.prev = tail;
            e.next = NIL;
        }
        if tail != NIL {
            self.slab[tail as usize].next = i;
        } else {
            self.lru.head = i;
        }
        self.lru.tail = i;
        self.lru.len += 1;
        // Port list.
        let ptail = self.ports[port].tail;
        {
            let e = &mut self.slab[i as usize];
            e.pprev = ptail;
            e.pnext = NIL;
        }
        if ptail != NIL {
            self.slab[ptail as usize].pnext = i;
        } else {
            self.ports[port].head = i;
        }
        self.ports[port].tail = i;
        self.ports[port].len += 1;
    }

    fn unlink(&mut self, i: u32) {
        let e = self.slab[i as usize];
        if e.prev != NIL {
            self.slab[e.prev as usize].next = e.next;
        } else {
            self.lru.head = e.next;
        }
        if e.next != NIL {
            self.slab[e.next as usize].prev = e.prev;
        } else {
            self.lru.tail = e.prev;
        }
        self.lru.len -= 1;
        let l = &mut self.ports[e.port as usize];
        l.len -= 1;
        if e.pprev != NIL {
            self.slab[e.pprev as usize].pnext = e.pnext;
        } else {
            self.ports[e.port as usize].head = e.pnext;
        }
        if e.pnext != NIL {
            self.slab[e.pnext as usize].pprev = e.pprev;
        } else {
            self.ports[e.port as usize].tail = e.pprev;
        }
    }
}

impl Default for MacTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_lookup_move() {
        let mut t = MacTable::new();
        assert_eq!(t.learn(0x0200_0000_0001, 0, 1, 100).0, Learned::New);
        assert_eq!(t.lookup(0x0200_0000_0001, 0), Some(1));
        assert_eq!(t.lookup(0x0200_0000_0001, 5), None);
        assert_eq!(t.learn(0x0200_0000_0001, 0, 1, 100).0, Learned::Unchanged);
        assert_eq!(
            t.learn(0x0200_0000_0001, 0, 2, 100).0,
            Learned::Moved { from: 1 }
        );
        assert_eq!(t.lookup(0x0200_0000_0001, 0), Some(2));
        assert_eq!(t.learn(0x0300_0000_0001, 0, 2, 100).0, Learned::Ignored);
        assert_eq!(t.lookup(0xffff_ffff_ffff, 0), None);
    }

    #[test]
    fn aging_needs_refresh_after_a_second() {
        let mut t = MacTable::with_exact_limits(300, 10);
        t.learn(1 << 41, 0, 1, 1000);
        t.learn(1 << 41, 0, 1, 1000); // same second: no refresh
        t.run(1299);
        assert_eq!(t.len(), 1);
        t.run(1300);
        assert_eq!(t.len(), 0);
        t.learn(2 << 41, 0, 1, 1000);
        assert_eq!(t.learn(2 << 41, 0, 1, 1001).0, Learned::Refreshed);
        t.run(1300);
        assert_eq!(t.len(), 1);
        t.run(1301);
        assert_eq!(t.len(), 0);
        assert_eq!(t.expirations, 2);
    }

    #[test]
    fn fair_eviction_takes_the_busiest_ports_oldest() {
        let mut t = MacTable::with_exact_limits(300, 4);
        t.learn(0x10, 0, 1, 10); // oldest overall, on the quiet port
        t.learn(0x20, 0, 2, 11);
        t.learn(0x21, 0, 2, 12);
        t.learn(0x22, 0, 2, 13);
        let (_, ev) = t.learn(0x30, 0, 3, 14);
        assert_eq!(
            ev,
            Some(Evicted {
                vlan: 0,
                mac: 0x20,
                port: 2
            })
        );
        assert_eq!(t.lookup(0x10, 0), Some(1));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn single_port_is_oldest_first_and_stays_bounded() {
        let mut t = MacTable::with_exact_limits(300, 8);
        for i in 0..100u64 {
            t.learn(i << 8, 0, 1, i);
        }
        assert_eq!(t.len(), 8);
        let macs: Vec<u64> = t.entries(200).iter().map(|e| e.mac >> 8).collect();
        assert_eq!(macs, (92..100).collect::<Vec<_>>());
        t.flush_port(1);
        assert!(t.is_empty());
    }
}
