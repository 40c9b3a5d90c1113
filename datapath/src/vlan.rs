//! Per-port VLAN configuration and the VLAN translation NORMAL does, as Open
//! vSwitch does it (`vlan_mode` access / trunk / native-untagged /
//! native-tagged, `tag`, `trunks`, `priority-tags=never`).

use std::fmt;

use crate::parse::consts::{ETH_TYPE_VLAN, VLAN_CFI, VLAN_PCP_MASK, VLAN_VID_MASK};
use crate::parse::eth_type_vlan;

/// A port's VLAN mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    /// Untagged frames only, all in VLAN `tag`.
    Access,
    /// Tagged frames in the `trunks` VLANs (all when unset); untagged = VLAN 0.
    Trunk,
    /// Trunk, plus untagged frames in VLAN `tag`, which leave untagged.
    NativeUntagged,
    /// Trunk, plus untagged frames in VLAN `tag`, which leave tagged.
    NativeTagged,
}

impl VlanMode {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            VlanMode::Access => "access",
            VlanMode::Trunk => "trunk",
            VlanMode::NativeUntagged => "native-untagged",
            VlanMode::NativeTagged => "native-tagged",
        }
    }
}

impl fmt::Display for VlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of VLAN IDs 0..=4095.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl VlanSet {
    /// The empty set.
    pub fn new() -> Self {
        VlanSet([0; 64])
    }
    /// Adds `vid`.
    pub fn insert(&mut self, vid: u16) {
        let v = (vid & 0xfff) as usize;
        self.0[v / 64] |= 1 << (v % 64);
    }
    /// Removes `vid`.
    pub fn remove(&mut self, vid: u16) {
        let v = (vid & 0xfff) as usize;
        self.0[v / 64] &= !(1 << (v % 64));
    }
    /// True when `vid` is in the set.
    #[inline(always)]
    pub fn contains(&self, vid: u16) -> bool {
        let v = (vid & 0xfff) as usize;
        self.0[v / 64] & (1 << (v % 64)) != 0
    }
    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0u16..4096).filter(|v| self.contains(*v))
    }
}

impl Default for VlanSet {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One VLAN level as NORMAL sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XTag {
    /// TPID (0 = none recorded).
    pub tpid: u16,
    /// VLAN ID (0 = untagged or priority-tagged).
    pub vid: u16,
    /// PCP bits in place (`tci & 0xe000`).
    pub pcp: u16,
}

/// The VLAN levels of a frame as NORMAL sees them (outer first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Xvlan {
    /// Levels.
    pub v: [XTag; 2],
}

/// A VLAN header in the flow: TPID and TCI, where the TCI has
/// [`VLAN_CFI`] set when the tag is present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tag {
    /// TPID.
    pub tpid: u16,
    /// TCI with the CFI bit meaning "present"; 0 = absent.
    pub tci: u16,
}

impl Tag {
    /// True when two two-level stacks are identical (both tags, TPID and TCI).
    #[inline(always)]
    pub fn same2(a: &[Tag; 2], b: &[Tag; 2]) -> bool {
        a[0].tpid == b[0].tpid
            && a[0].tci == b[0].tci
            && a[1].tpid == b[1].tpid
            && a[1].tci == b[1].tci
    }

    /// True when the tag is present.
    #[inline(always)]
    pub fn present(self) -> bool {
        self.tci & VLAN_CFI != 0
    }
}

impl Xvlan {
    /// Reads the tags of a flow (OVS `xvlan_extract`).
    #[inline]
    pub fn extract(vlans: &[Tag; 2]) -> Xvlan {
        let mut x = Xvlan::default();
        for (i, t) in vlans.iter().enumerate() {
            if !eth_type_vlan(t.tpid) || !t.present() {
                break;
            }
            x.v[i] = XTag {
                tpid: t.tpid,
                vid: t.tci & VLAN_VID_MASK,
                pcp: t.tci & VLAN_PCP_MASK,
            };
        }
        x
    }

    /// Writes the tags back into a flow (OVS `xvlan_put` with
    /// `priority-tags=never`): a level is tagged when its VID or PCP is
    /// non-zero. So a priority-tagged frame with PCP 5 that stays in VLAN 0
    /// (trunk to trunk) keeps its VID-0 tag, while one with PCP 0 loses it;
    /// `never` itself only matters where a tag is removed (access ports,
    /// the native VLAN of native-untagged ports), which drops the PCP.
    #[inline]
    pub fn put(&self, vlans: &mut [Tag; 2]) {
        for (i, x) in self.v.iter().enumerate() {
            if x.vid != 0 || x.pcp != 0 {
                vlans[i].tci = x.vid | x.pcp | VLAN_CFI;
                vlans[i].tpid = if x.tpid != 0 { x.tpid } else { ETH_TYPE_VLAN };
            } else {
                vlans[i].tci = 0;
            }
        }
    }

    fn pop(&mut self) {
        self.v[0] = self.v[1];
        self.v[1] = XTag::default();
    }
}

/// A port's VLAN configuration, resolved as OVS resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortVlan {
    /// Mode.
    pub mode: VlanMode,
    /// Access VLAN or native VLAN (0 when unset).
    pub tag: u16,
    /// Trunked VLANs (`None` = all).
    pub trunks: Option<Box<VlanSet>>,
}

impl Default for PortVlan {
    fn default() -> Self {
        PortVlan {
            mode: VlanMode::Trunk,
            tag: 0,
            trunks: None,
        }
    }
}

impl PortVlan {
    /// Resolves a port's configuration: with no `vlan_mode`, a port with a
    /// `tag` is an access port and one without is a trunk; native modes
    /// always trunk their native VLAN and never VLAN 0.
    pub fn new(
        mode: Option<VlanMode>,
        tag: Option<u16>,
        trunks: Option<&[u16]>,
    ) -> Result<Self, String> {
        if let Some(t) = tag {
            if t > 4095 {
                return Err(format!("tag {t} is not a VLAN ID (0-4095)"));
            }
        }
        if let Some(ts) = trunks {
            if let Some(bad) = ts.iter().find(|t| **t > 4095) {
                return Err(format!("trunks: {bad} is not a VLAN ID (0-4095)"));
            }
        }
        let mode = mode.unwrap_or(if tag.is_some() {
            VlanMode::Access
        } else {
            VlanMode::Trunk
        });
        let set = |ts: &[u16]| {
            let mut s = VlanSet::new();
            for &t in ts {
                s.insert(t);
            }
            Box::new(s)
        };
        Ok(match mode {
            VlanMode::Access => {
                if trunks.is_some_and(|t| !t.is_empty()) {
                    return Err("an access port carries one VLAN: drop `trunks` or use vlan_mode = \"trunk\"".into());
                }
                PortVlan {
                    mode,
                    tag: tag.unwrap_or(0),
                    trunks: None,
                }
            }
            VlanMode::Trunk => {
                if tag.is_some() {
                    return Err("a trunk port has no `tag`: use vlan_mode = \"native-untagged\" or \"native-tagged\" for a native VLAN".into());
                }
                PortVlan {
                    mode,
                    tag: 0,
                    trunks: trunks.filter(|t| !t.is_empty()).map(set),
                }
            }
            VlanMode::NativeUntagged | VlanMode::NativeTagged => {
                let vlan = tag.unwrap_or(0);
                let mut trunks = trunks.filter(|t| !t.is_empty()).map(set);
                let needs_fix = vlan != 0
                    && match &trunks {
                        None => true,
                        Some(s) => !s.contains(vlan) || s.contains(0),
                    };
                if needs_fix {
                    let mut s = trunks.unwrap_or_else(|| {
                        let mut all = Box::new(VlanSet::new());
                        all.0 = [u64::MAX; 64];
                        all
                    });
                    s.insert(vlan);
                    s.remove(0);
                    trunks = Some(s);
                }
                PortVlan {
                    mode,
                    tag: vlan,
                    trunks,
                }
            }
        })
    }

    /// An access port in VLAN `tag`.
    pub fn access(tag: u16) -> Self {
        PortVlan {
            mode: VlanMode::Access,
            tag,
            trunks: None,
        }
    }

    #[inline(always)]
    fn trunks_vlan(&self, vid: u16) -> bool {
        self.mode != VlanMode::Access && self.trunks.as_ref().is_none_or(|s| s.contains(vid))
    }

    /// May a frame whose outer VID is `vid` (0 = untagged) enter here?
    #[inline]
    pub fn input_vid_valid(&self, vid: u16) -> bool {
        match self.mode {
            VlanMode::Access => vid == 0,
            VlanMode::NativeUntagged | VlanMode::NativeTagged if vid == 0 => true,
            _ => self.trunks_vlan(vid),
        }
    }

    /// The frame's VLAN inside the switch (OVS `xvlan_input_translate`).
    #[inline]
    pub fn input_translate(&self, x: &Xvlan) -> Xvlan {
        match self.mode {
            VlanMode::Access => {
                let mut out = Xvlan::default();
                out.v[0] = XTag {
                    tpid: if x.v[0].tpid != 0 {
                        x.v[0].tpid
                    } else {
                        ETH_TYPE_VLAN
                    },
                    vid: self.tag,
                    pcp: x.v[0].pcp,
                };
                out
            }
            VlanMode::Trunk => *x,
            VlanMode::NativeUntagged | VlanMode::NativeTagged => {
                let mut out = *x;
                if x.v[0].vid == 0 {
                    out.v[0] = XTag {
                        tpid: if x.v[0].tpid != 0 {
                            x.v[0].tpid
                        } else {
                            ETH_TYPE_VLAN
                        },
                        vid: self.tag,
                        pcp: x.v[0].pcp,
                    };
                }
                out
            }
        }
    }

    /// Does this port carry the frame's VLAN (OVS `xbundle_includes_vlan`)?
    #[inline]
    pub fn includes(&self, x: &Xvlan) -> bool {
        match self.mode {
            VlanMode::Access => x.v[0].vid == self.tag && x.v[1].vid == 0,
            _ => self.trunks_vlan(x.v[0].vid),
        }
    }

    /// The tags the frame leaves with (OVS `xvlan_output_translate`).
    #[inline]
    pub fn output_translate(&self, x: &Xvlan) -> Xvlan {
        match self.mode {
            VlanMode::Access => Xvlan::default(),
            VlanMode::Trunk | VlanMode::NativeTagged => *x,
            VlanMode::NativeUntagged => {
                let mut out = *x;
                if x.v[0].vid == self.tag {
                    out.pop();
                }
                out
            }
        }
    }

    /// A short description, e.g. `access tag=10` or `trunk trunks=10,20`.
    pub fn describe(&self) -> String {
        let mut s = self.mode.name().to_string();
        if self.mode != VlanMode::Trunk {
            s.push_str(&format!(" tag={}", self.tag));
        }
        if self.mode != VlanMode::Access {
            match &self.trunks {
                None => s.push_str(" trunks=all"),
                Some(t) => {
                    let v: Vec<u16> = t.iter().collect();
                    s.push_str(&format!(" trunks={}", compress_ranges(&v)));
                }
            }
        }
        s
    }
}

/// `1,2,3,7` → `1-3,7`.
pub fn compress_ranges(v: &[u16]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if start == end {
            out.push(start.to_string());
        } else {
            out.push(format!("{start}-{end}"));
        }
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(vid: u16, pcp: u16) -> Xvlan {
        let mut x = Xvlan::default();
        if vid != 0 || pcp != 0 {
            x.v[0] = XTag {
                tpid: ETH_TYPE_VLAN,
                vid,
                pcp: pcp << 13,
            };
        }
        x
    }

    #[test]
    fn defaults_follow_ovs() {
        assert_eq!(
            PortVlan::new(None, Some(10), None).map(|p| p.mode),
            Ok(VlanMode::Access)
        );
        assert_eq!(
            PortVlan::new(None, None, None).map(|p| p.mode),
            Ok(VlanMode::Trunk)
        );
        let n =
            PortVlan::new(Some(VlanMode::NativeUntagged), Some(10), Some(&[0, 20])).expect("valid");
        let t = n.trunks.as_ref().expect("trunks");
        assert!(t.contains(10) && t.contains(20) && !t.contains(0));
        assert!(PortVlan::new(None, Some(5000), None).is_err());
    }

    #[test]
    fn access_port() {
        let p = PortVlan::access(10);
        assert!(p.input_vid_valid(0));
        assert!(!p.input_vid_valid(10));
        let inside = p.input_translate(&x(0, 3));
        assert_eq!(inside.v[0].vid, 10);
        assert_eq!(inside.v[0].pcp, 3 << 13);
        assert!(p.includes(&inside));
        assert_eq!(p.output_translate(&inside), Xvlan::default());
    }

    #[test]
    fn native_untagged_pops_its_own_vlan_only() {
        let p = PortVlan::new(Some(VlanMode::NativeUntagged), Some(10), Some(&[10, 20]))
            .expect("valid");
        assert_eq!(p.output_translate(&x(10, 0)).v[0].vid, 0);
        assert_eq!(p.output_translate(&x(20, 0)).v[0].vid, 20);
        assert!(!p.includes(&x(30, 0)));
        assert!(!p.input_vid_valid(30));
        assert!(p.input_vid_valid(0));
    }

    #[test]
    fn put_keeps_nonzero_priority_tags_only() {
        let mut vlans = [Tag::default(); 2];
        x(0, 5).put(&mut vlans);
        assert_eq!(vlans[0].tci, (5 << 13) | VLAN_CFI);
        x(0, 0).put(&mut vlans);
        assert!(!vlans[0].present());
        x(7, 5).put(&mut vlans);
        assert_eq!(vlans[0].tci, 7 | (5 << 13) | VLAN_CFI);
        assert_eq!(compress_ranges(&[1, 2, 3, 7, 9, 10]), "1-3,7,9-10");
    }
}
