//! Capture files: a pcap and pcapng reader that survives damaged files, and a
//! pcap writer.
//!
//! The reader checks every length before using it. A file that is not a
//! capture at all fails at open; damage later in a file ends reading there
//! with an error that says where, after every good record before it was
//! returned.

use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::clock::Timestamp;

/// Link type of Ethernet captures.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record we accept (bigger means the file is damaged).
pub const MAX_RECORD: usize = 256 * 1024;

/// What is wrong with a capture file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// Not a capture file.
    #[error("not a pcap or pcapng file (starts with {0:02x?})")]
    BadMagic(Vec<u8>),
    /// A capture of something other than Ethernet.
    #[error("link type {0} ({name}) is not Ethernet: xsw ports carry Ethernet frames", name = linktype_name(*.0))]
    NotEthernet(u32),
    /// Damage at a byte offset.
    #[error("damaged at byte {offset}: {what}")]
    Damaged {
        /// Byte offset of the record or block.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The file ends in the middle of a record.
    #[error("cut short at byte {offset}: the last record is incomplete")]
    Truncated {
        /// Byte offset of the incomplete record.
        offset: u64,
    },
}

/// A short name for common link types.
pub fn linktype_name(t: u32) -> &'static str {
    match t {
        0 => "BSD loopback",
        1 => "Ethernet",
        6 => "Token Ring",
        9 => "PPP",
        101 => "raw IP",
        105 => "802.11",
        113 => "Linux cooked capture",
        127 => "802.11 radiotap",
        228 => "raw IPv4",
        229 => "raw IPv6",
        276 => "Linux cooked capture v2",
        _ => "unknown",
    }
}

/// One captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data.len()` when truncated).
    pub orig_len: u32,
    /// Link type of the interface it was captured on.
    pub linktype: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pcap { big: bool, nanos: bool },
    PcapNg,
}

#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    units: u64,
    /// Offset added to timestamps, in seconds.
    offset: i64,
}

/// Reads records from a pcap or pcapng stream.
pub struct PcapReader<R: Read> {
    r: BufReader<R>,
    fmt: Format,
    pos: u64,
    buf: Vec<u8>,
    // pcap
    linktype: u32,
    // pcapng
    big: bool,
    ifaces: Vec<Iface>,
    done: bool,
    /// Records skipped because their interface is not Ethernet (pcapng).
    pub skipped_not_ethernet: u64,
    /// True when timestamps are finer than microseconds.
    pub nanosecond: bool,
}

impl<R: Read> fmt::Debug for PcapReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapReader")
            .field("fmt", &self.fmt)
            .field("pos", &self.pos)
            .finish()
    }
}

fn rd_u32(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn rd_u16(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// Reads exactly `n` bytes, or reports how many were there.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> PcapReader<R> {
    /// Opens a stream, reading its header. Classic pcap must be Ethernet.
    pub fn new(inner: R) -> Result<Self, PcapError> {
        let mut r = BufReader::with_capacity(1 << 16, inner);
        let mut magic = [0u8; 4];
        let n = read_full(&mut r, &mut magic)?;
        if n < 4 {
            return Err(PcapError::BadMagic(magic[..n].to_vec()));
        }
        let m_le = u32::from_le_bytes(magic);
        let fmt = match m_le {
            0xa1b2_c3d4 => Format::Pcap {
                big: false,
                nanos: false,
            },
            0xa1b2_3c4d => Format::Pcap {
                big: false,
                nanos: true,
            },
            0xd4c3_b2a1 => Format::Pcap {
                big: true,
                nanos: false,
            },
            0x4d3c_b2a1 => Format::Pcap {
                big: true,
                nanos: true,
            },
            0x0a0d_0d0a => Format::PcapNg,
            _ => return Err(PcapError::BadMagic(magic.to_vec())),
        };
        let mut rd = PcapReader {
            r,
            fmt,
            pos: 4,
            buf: Vec::with_capacity(1 << 16),
            linktype: LINKTYPE_ETHERNET,
            big: false,
            ifaces: Vec::new(),
            done: false,
            skipped_not_ethernet: 0,
            nanosecond: false,
        };
        match fmt {
            Format::Pcap { big, nanos } => {
                let mut h = [0u8; 20];
                let n = read_full(&mut rd.r, &mut h)?;
                if n < 20 {
                    return Err(PcapError::Damaged {
                        offset: 0,
                        what: "file header is incomplete".into(),
                    });
                }
                rd.pos = 24;
                rd.linktype = rd_u32(&h[16..20], big) & 0x0fff_ffff;
                rd.nanosecond = nanos;
                if rd.linktype != LINKTYPE_ETHERNET {
                    return Err(PcapError::NotEthernet(rd.linktype));
                }
            }
            Format::PcapNg => {
                // The section header block: we already consumed its type.
                rd.read_shb_rest(0)?;
            }
        }
        Ok(rd)
    }

    /// The file format, for messages.
    pub fn format_name(&self) -> &'static str {
        match self.fmt {
            Format::Pcap { .. } => "pcap",
            Format::PcapNg => "pcapng",
        }
    }

    fn read_shb_rest(&mut self, offset: u64) -> Result<(), PcapError> {
        let mut h = [0u8; 8];
        if read_full(&mut self.r, &mut h)? < 8 {
            return Err(PcapError::Damaged {
                offset,
                what: "section header is incomplete".into(),
            });
        }
        let bom = &h[4..8];
        self.big = match bom {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            _ => {
                return Err(PcapError::Damaged {
                    offset,
                    what: "section header has no valid byte-order magic".into(),
                })
            }
        };
        let len = rd_u32(&h[0..4], self.big) as usize;
        if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
            return Err(PcapError::Damaged {
                offset,
                what: format!("section header length {len} is invalid"),
            });
        }
        let mut rest = vec![0u8; len - 12];
        if read_full(&mut self.r, &mut rest)? < rest.len() {
            return Err(PcapError::Truncated { offset });
        }
        self.pos = offset + len as u64;
        self.ifaces.clear();
        Ok(())
    }

    /// The next record, `Ok(None)` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        if self.done {
            return Ok(None);
        }
        let res = match self.fmt {
            Format::Pcap { big, nanos } => self.next_pcap(big, nanos),
            Format::PcapNg => self.next_pcapng(),
        };
        match res {
            Ok(Some((ts, orig_len, linktype))) => Ok(Some(Record {
                ts,
                data: &self.buf,
                orig_len,
                linktype,
            })),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn next_pcap(
        &mut self,
        big: bool,
        nanos: bool,
    ) -> Result<Option<(Timestamp, u32, u32)>, PcapError> {
        let off = self.pos;
        let mut h = [0u8; 16];
        let n = read_full(&mut self.r, &mut h)?;
        if n == 0 {
            return Ok(None);
        }
        if n < 16 {
            return Err(PcapError::Truncated { offset: off });
        }
        let sec = rd_u32(&h[0..4], big) as u64;
        let frac = rd_u32(&h[4..8], big) as u64;
        let caplen = rd_u32(&h[8..12], big) as usize;
        let orig = rd_u32(&h[12..16], big);
        if caplen > MAX_RECORD {
            return Err(PcapError::Damaged {
                offset: off,
                what: format!("record claims {caplen} captured bytes (more than {MAX_RECORD})"),
            });
        }
        self.buf.resize(caplen, 0);
        if read_full(&mut self.r, &mut self.buf)? < caplen {
            return Err(PcapError::Truncated { offset: off });
        }
        self.pos = off + 16 + caplen as u64;
        let ns = if nanos {
            frac.min(999_999_999)
        } else {
            frac.min(999_999) * 1000
        };
        Ok(Some((
            Timestamp(sec * 1_000_000_000 + ns),
            orig,
            self.linktype,
        )))
    }

    fn next_pcapng(&mut self) -> Result<Option<(Timestamp, u32, u32)>, PcapError> {
        loop {
            let off = self.pos;
            let mut h = [0u8; 8];
            let n = read_full(&mut self.r, &mut h)?;
            if n == 0 {
                return Ok(None);
            }
            if n < 8 {
                return Err(PcapError::Truncated { offset: off });
            }
            let btype = rd_u32(&h[0..4], self.big);
            if btype == 0x0a0d_0d0a {
                // A new section: its byte order may differ.
                let mut h2 = [0u8; 4];
                if read_full(&mut self.r, &mut h2)? < 4 {
                    return Err(PcapError::Truncated { offset: off });
                }
                let big = match h2 {
                    [0x1a, 0x2b, 0x3c, 0x4d] => true,
                    [0x4d, 0x3c, 0x2b, 0x1a] => false,
                    _ => {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: "section header has no valid byte-order magic".into(),
                        })
                    }
                };
                let len = rd_u32(&h[4..8], big) as usize;
                if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                    return Err(PcapError::Damaged {
                        offset: off,
                        what: format!("section header length {len} is invalid"),
                    });
                }
                self.big = big;
                let mut rest = vec![0u8; len - 12];
                if read_full(&mut self.r, &mut rest)? < rest.len() {
                    return Err(PcapError::Truncated { offset: off });
                }
                self.pos = off + len as u64;
                self.ifaces.clear();
                continue;
            }
            let len = rd_u32(&h[4..8], self.big) as usize;
            if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD + 64 {
                return Err(PcapError::Damaged {
                    offset: off,
                    what: format!("block length {len} is invalid"),
                });
            }
            self.buf.resize(len - 8, 0);
            if read_full(&mut self.r, &mut self.buf)? < len - 8 {
                return Err(PcapError::Truncated { offset: off });
            }
            self.pos = off + len as u64;
            let body_len = len - 12; // without the trailing length
            let big = self.big;
            match btype {
                1 => {
                    // Interface description block.
                    if body_len < 8 {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: "interface block is too short".into(),
                        });
                    }
                    let linktype = rd_u16(&self.buf[0..2], big) as u32;
                    let mut iface = Iface {
                        linktype,
                        units: 1_000_000,
                        offset: 0,
                    };
                    let mut o = 8;
                    while o + 4 <= body_len {
                        let code = rd_u16(&self.buf[o..o + 2], big);
                        let olen = rd_u16(&self.buf[o + 2..o + 4], big) as usize;
                        let v = o + 4;
                        if code == 0 || v + olen > body_len {
                            break;
                        }
                        if code == 9 && olen >= 1 {
                            let r = self.buf[v];
                            let exp = (r & 0x7f) as u32;
                            let units = if r & 0x80 != 0 {
                                2u64.checked_pow(exp)
                            } else {
                                10u64.checked_pow(exp)
                            };
                            if let Some(u) = units.filter(|u| *u > 0) {
                                iface.units = u;
                            }
                        }
                        if code == 14 && olen >= 8 {
                            let b = &self.buf[v..v + 8];
                            let raw = if big {
                                i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                            } else {
                                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                            };
                            iface.offset = raw;
                        }
                        o = v + olen.div_ceil(4) * 4;
                    }
                    if iface.units > 1_000_000 {
                        self.nanosecond = true;
                    }
                    self.ifaces.push(iface);
                }
                6 | 2 => {
                    // Enhanced packet block (6) or obsolete packet block (2).
                    if body_len < 20 {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: "packet block is too short".into(),
                        });
                    }
                    let ifid = if btype == 6 {
                        rd_u32(&self.buf[0..4], big) as usize
                    } else {
                        rd_u16(&self.buf[0..2], big) as usize
                    };
                    let hi = rd_u32(&self.buf[4..8], big) as u64;
                    let lo = rd_u32(&self.buf[8..12], big) as u64;
                    let caplen = rd_u32(&self.buf[12..16], big) as usize;
                    let orig = rd_u32(&self.buf[16..20], big);
                    if caplen > body_len - 20 {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: format!(
                                "packet claims {caplen} bytes but its block holds {}",
                                body_len - 20
                            ),
                        });
                    }
                    let Some(iface) = self.ifaces.get(ifid).copied() else {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: format!(
                                "packet names interface {ifid}, which was never described"
                            ),
                        });
                    };
                    if iface.linktype != LINKTYPE_ETHERNET {
                        self.skipped_not_ethernet += 1;
                        continue;
                    }
                    let raw = (hi << 32) | lo;
                    let secs = raw / iface.units;
                    let rem = raw % iface.units;
                    let ns = (rem as u128 * 1_000_000_000 / iface.units as u128) as u64;
                    let secs = (secs as i64).saturating_add(iface.offset).max(0) as u64;
                    let ts = Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(ns));
                    self.buf.copy_within(20..20 + caplen, 0);
                    self.buf.truncate(caplen);
                    return Ok(Some((ts, orig, iface.linktype)));
                }
                3 => {
                    // Simple packet block: interface 0, no timestamp.
                    if body_len < 4 {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: "simple packet block is too short".into(),
                        });
                    }
                    let Some(iface) = self.ifaces.first().copied() else {
                        return Err(PcapError::Damaged {
                            offset: off,
                            what: "simple packet before any interface block".into(),
                        });
                    };
                    if iface.linktype != LINKTYPE_ETHERNET {
                        self.skipped_not_ethernet += 1;
                        continue;
                    }
                    let orig = rd_u32(&self.buf[0..4], big);
                    let caplen = (orig as usize).min(body_len - 4);
                    self.buf.copy_within(4..4 + caplen, 0);
                    self.buf.truncate(caplen);
                    return Ok(Some((Timestamp(0), orig, iface.linktype)));
                }
                _ => continue, // statistics, name resolution, custom...
            }
        }
    }
}

/// Writes a classic pcap file of Ethernet frames.
pub struct PcapWriter<W: Write> {
    w: BufWriter<W>,
    nanos: bool,
}

impl<W: Write> fmt::Debug for PcapWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapWriter")
            .field("nanos", &self.nanos)
            .finish()
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header. With `nanos`, timestamps keep nanoseconds.
    pub fn new(inner: W, nanos: bool) -> io::Result<Self> {
        let mut w = BufWriter::with_capacity(1 << 16, inner);
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        w.write_all(&magic.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        w.write_all(&(MAX_RECORD as u32).to_le_bytes())?;
        w.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter { w, nanos })
    }

    /// Appends one frame.
    pub fn write(&mut self, ts: Timestamp, frame: &[u8]) -> io::Result<()> {
        let frac = if self.nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_nanos() / 1000
        };
        // Classic pcap has 32-bit seconds: later times are clamped.
        self.w
            .write_all(&(ts.secs().min(u32::MAX as u64) as u32).to_le_bytes())?;
        self.w.write_all(&frac.to_le_bytes())?;
        self.w.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.w.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.w.write_all(frame)
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Reads every Ethernet frame of a capture into memory (tests, tools).
pub fn read_all(bytes: &[u8]) -> Result<Vec<(Timestamp, Vec<u8>)>, PcapError> {
    let mut r = PcapReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push((rec.ts, rec.data.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(nanos: bool, frames: &[(Timestamp, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = PcapWriter::new(&mut out, nanos).expect("header");
            for (t, f) in frames {
                w.write(*t, f).expect("write");
            }
            w.flush().expect("flush");
        }
        out
    }

    #[test]
    fn round_trip_micro_and_nano() {
        let t = Timestamp(1_700_000_000_123_456_789);
        for nanos in [false, true] {
            let b = pcap(nanos, &[(t, &[1, 2, 3]), (t, &[4; 70])]);
            let recs = read_all(&b).expect("reads");
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[1].1, vec![4; 70]);
            let want = if nanos {
                t
            } else {
                Timestamp(1_700_000_000_123_456_000)
            };
            assert_eq!(recs[0].0, want);
        }
    }

    #[test]
    fn big_endian_pcap() {
        let mut b = vec![
            0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0,
            1,
        ];
        b.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 2, 0xaa, 0xbb]);
        let recs = read_all(&b).expect("reads");
        assert_eq!(recs, vec![(Timestamp(5_000_007_000), vec![0xaa, 0xbb])]);
    }

    #[test]
    fn damage_is_reported_after_good_records() {
        let b = pcap(false, &[(Timestamp(0), &[1; 20]), (Timestamp(0), &[2; 20])]);
        let cut = &b[..b.len() - 5];
        let mut r = PcapReader::new(cut).expect("header ok");
        assert!(r.next_record().expect("first").is_some());
        match r.next_record() {
            Err(PcapError::Truncated { offset }) => assert_eq!(offset, 24 + 16 + 20),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.next_record(), Ok(None)));
        assert!(matches!(
            PcapReader::new(&b"hello world"[..]),
            Err(PcapError::BadMagic(_))
        ));
    }

    #[test]
    fn pcapng_with_tsresol() {
        let mut b = Vec::new();
        // SHB
        b.extend_from_slice(&0x0a0d0d0au32.to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        b.extend_from_slice(&0x1a2b3c4du32.to_le_bytes());
        b.extend_from_slice(&[1, 0, 0, 0]);
        b.extend_from_slice(&(-1i64).to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        // IDB with if_tsresol = 9 (nanoseconds)
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&9u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[9, 0, 0, 0]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        // EPB
        let ts: u64 = 1_500_000_000_000_000_123;
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&36u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&[7, 8, 9, 0]);
        b.extend_from_slice(&36u32.to_le_bytes());
        let recs = read_all(&b).expect("reads");
        assert_eq!(recs, vec![(Timestamp(ts), vec![7, 8, 9])]);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x1234_5678u64;
        for _ in 0..2000 {
            let mut b = vec![
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0,
            ];
            if seed & 1 == 0 {
                b = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a];
            }
            for _ in 0..(seed % 200) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b.push((seed >> 33) as u8);
            }
            if let Ok(mut r) = PcapReader::new(&b[..]) {
                while let Ok(Some(_)) = r.next_record() {}
            }
        }
    }
}
