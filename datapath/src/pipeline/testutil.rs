//! Test helpers shared by the stage tests: frames, a three-port rig.

use super::{Pipeline, PipelineOptions, PortConfig};
pub(super) use crate::clock::Timestamp;
pub(super) use crate::flow::parse_flow;
pub(super) use crate::flow::Rule;
pub(super) use crate::packet::{Batch, BURST};
pub(super) use crate::port::memory::MemoryPort;
pub(super) use crate::stats::{DropReason, PortStats};
pub(super) use crate::trace::{NoTrace, TraceLog};
pub(super) use crate::vlan::PortVlan;
pub(super) use crate::vlan::VlanMode;

pub(super) fn frame(dst: u64, src: u64, vlan: Option<(u16, u16)>, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&crate::key::mac_to_bytes(dst));
    f.extend_from_slice(&crate::key::mac_to_bytes(src));
    if let Some((vid, pcp)) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&((pcp << 13) | vid).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(f.len() + 46, 0xab);
    f
}

pub(super) struct Rig {
    pub(super) p: Pipeline,
    pub(super) ports: Vec<MemoryPort>,
    pub(super) batch: Batch,
}

impl Rig {
    pub(super) fn new(cfgs: Vec<PortConfig>, rules: &[&str]) -> Rig {
        let ports = cfgs.iter().map(|c| MemoryPort::new(&c.name)).collect();
        let mut p = Pipeline::new(cfgs, PipelineOptions::default()).expect("pipeline");
        if rules.is_empty() {
            p.add_rule(Rule::default_normal(), Timestamp(0));
        }
        for r in rules {
            p.add_rule(parse_flow(r, &()).expect("rule"), Timestamp(0));
        }
        Rig {
            p,
            ports,
            batch: Batch::new(BURST),
        }
    }

    /// Sends one frame in on port index `i` at second `s`; returns what
    /// each port sent.
    pub(super) fn send(&mut self, i: u16, s: u64, f: &[u8]) -> Vec<Vec<Vec<u8>>> {
        self.batch.clear();
        self.batch.push_frame(
            f,
            crate::packet::PacketMeta::new(i, Timestamp::from_secs(s)),
        );
        self.p.process(&mut self.batch, &mut NoTrace);
        let mut out = Vec::new();
        for (k, port) in self.ports.iter_mut().enumerate() {
            self.p.flush_port(k as u16, port).expect("flush");
            out.push(port.take_sent().into_iter().map(|(_, f)| f).collect());
        }
        out
    }
}

pub(super) fn ports3() -> Vec<PortConfig> {
    vec![
        PortConfig::new("p1", 1),
        PortConfig::new("p2", 2),
        PortConfig::new("p3", 3),
    ]
}

pub(super) const A: u64 = 0x0200_0000_000a;
pub(super) const B: u64 = 0x0200_0000_000b;
pub(super) const BCAST: u64 = 0xffff_ffff_ffff;

/// Frames for the equivalence test: a mix of sources, destinations,
/// VLANs and ports, with repeats so learning and caching matter.
pub(super) fn mixed_frames() -> Vec<(u16, Vec<u8>)> {
    let mut v = Vec::new();
    let mut x = 7u32;
    for _ in 0..600 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let port = (x >> 8) % 3;
        let src = 0x0200_0000_0000 + ((x >> 12) % 6) as u64;
        let dst = match (x >> 16) % 8 {
            0 => BCAST,
            1 => 0x0180_c200_0000,
            n => 0x0200_0000_0000 + (n % 6) as u64,
        };
        let vlan = match (x >> 20) % 4 {
            0 => Some((10, 3)),
            1 => Some((0, 5)),
            _ => None,
        };
        let ty = [0x0800u16, 0x0806, 0x86dd][((x >> 24) % 3) as usize];
        v.push((port as u16, frame(dst, src, vlan, ty)));
    }
    v
}
