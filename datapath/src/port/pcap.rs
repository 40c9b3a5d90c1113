//! A port backed by capture files: receives from a pcap/pcapng file, sends
//! into a pcap file. Frames keep their capture timestamps.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{BackendStats, Port, PortError};
use crate::clock::Clock;
use crate::error::Error;
use crate::packet::{Batch, PacketBuf, PacketMeta, MAX_FRAME};
use crate::pcap::{PcapError, PcapReader, PcapWriter};

/// A capture-file port.
#[derive(Debug)]
pub struct PcapPort {
    name: String,
    reader: Option<PcapReader<File>>,
    rx_path: Option<PathBuf>,
    writer: Option<PcapWriter<File>>,
    tx_path: Option<PathBuf>,
    stats: BackendStats,
    rx_error: Option<PcapError>,
    exhausted: bool,
}

impl PcapPort {
    /// Opens `rx` for reading (if given) and creates `tx` for writing (if
    /// given; with nanosecond timestamps when `nanos`).
    pub fn open(
        name: &str,
        rx: Option<&Path>,
        tx: Option<&Path>,
        nanos: bool,
    ) -> Result<Self, Error> {
        let reader = match rx {
            Some(p) => {
                let f = File::open(p).map_err(|e| Error::io(p, e))?;
                Some(PcapReader::new(f).map_err(|source| Error::Pcap {
                    path: p.to_path_buf(),
                    source,
                })?)
            }
            None => None,
        };
        let writer = match tx {
            Some(p) => {
                let f = File::create(p).map_err(|e| Error::io(p, e))?;
                Some(PcapWriter::new(f, nanos).map_err(|e| Error::io(p, e))?)
            }
            None => None,
        };
        Ok(PcapPort {
            name: name.to_string(),
            exhausted: reader.is_none(),
            reader,
            rx_path: rx.map(Path::to_path_buf),
            writer,
            tx_path: tx.map(Path::to_path_buf),
            stats: BackendStats::default(),
            rx_error: None,
        })
    }

    /// True when the input has sub-microsecond timestamps.
    pub fn rx_nanosecond(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| r.nanosecond)
    }

    /// The damage that stopped reading, if any (frames before it were delivered).
    pub fn take_rx_error(&mut self) -> Option<PcapError> {
        self.rx_error.take()
    }

    /// The input file.
    pub fn rx_path(&self) -> Option<&Path> {
        self.rx_path.as_deref()
    }

    /// The output file.
    pub fn tx_path(&self) -> Option<&Path> {
        self.tx_path.as_deref()
    }
}

impl Port for PcapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(
        &mut self,
        batch: &mut Batch,
        port_index: u16,
        _clock: &dyn Clock,
    ) -> Result<usize, PortError> {
        let Some(r) = self.reader.as_mut() else {
            return Ok(0);
        };
        let mut n = 0;
        while !batch.is_full() {
            match r.next_record() {
                Ok(Some(rec)) => {
                    if rec.data.len() > MAX_FRAME {
                        self.stats.rx_oversize += 1;
                        continue;
                    }
                    if (rec.data.len() as u64) < rec.orig_len as u64 {
                        self.stats.rx_snap_truncated += 1;
                    }
                    batch.push_frame(rec.data, PacketMeta::new(port_index, rec.ts));
                    n += 1;
                }
                Ok(None) => {
                    self.exhausted = true;
                    break;
                }
                Err(e) => {
                    self.rx_error = Some(e);
                    self.exhausted = true;
                    break;
                }
            }
        }
        self.stats.rx_not_ethernet = r.skipped_not_ethernet;
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(frames.len());
        };
        for f in frames {
            w.write(f.meta.ts, f.data())?;
        }
        Ok(frames.len())
    }

    fn flush(&mut self) -> Result<(), PortError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    fn backend_stats(&self) -> BackendStats {
        self.stats
    }

    fn rx_exhausted(&self) -> bool {
        self.exhausted
    }
}
