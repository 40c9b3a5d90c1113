//! Which drop rules the XDP programs enforce in the kernel.
//!
//! The program extracts the first [`KEY_WORDS`] words of the flow key
//! itself, laid out as `ebpf/src/bpf/xsw_abi.h` says; the assertions below
//! make the build fail if userspace's key ([`Field::loc`]) ever disagrees.

use xsw_datapath::flow::Match;
use xsw_datapath::key::Field;
use xsw_datapath::pipeline::Pipeline;
use xsw_datapath::table::Installed;
use xsw_ebpf::{abi, XdpRule, KEY_WORDS};

/// True when `f` sits at (word, shift, width) in the key.
const fn at(f: Field, word: u64, shift: u64, width: u64) -> bool {
    let (w, s, b) = f.loc();
    w as u64 == word && s as u64 == shift && b as u64 == width
}

// Every field the program extracts is where userspace keeps it...
const _: () = {
    use abi::*;
    assert!(at(
        Field::InPort,
        XSW_KEY_IN_PORT_WORD,
        XSW_KEY_IN_PORT_SHIFT,
        XSW_KEY_IN_PORT_BITS
    ));
    assert!(at(
        Field::DlType,
        XSW_KEY_DL_TYPE_WORD,
        XSW_KEY_DL_TYPE_SHIFT,
        XSW_KEY_DL_TYPE_BITS
    ));
    assert!(at(
        Field::VlanTci,
        XSW_KEY_VLAN_TCI_WORD,
        XSW_KEY_VLAN_TCI_SHIFT,
        XSW_KEY_VLAN_TCI_BITS
    ));
    assert!(at(
        Field::NwProto,
        XSW_KEY_NW_PROTO_WORD,
        XSW_KEY_NW_PROTO_SHIFT,
        XSW_KEY_NW_PROTO_BITS
    ));
    assert!(at(
        Field::NwTos,
        XSW_KEY_NW_TOS_WORD,
        XSW_KEY_NW_TOS_SHIFT,
        XSW_KEY_NW_TOS_BITS
    ));
    assert!(at(
        Field::DlSrc,
        XSW_KEY_DL_SRC_WORD,
        XSW_KEY_DL_SRC_SHIFT,
        XSW_KEY_DL_SRC_BITS
    ));
    assert!(at(
        Field::TpSrc,
        XSW_KEY_TP_SRC_WORD,
        XSW_KEY_TP_SRC_SHIFT,
        XSW_KEY_TP_SRC_BITS
    ));
    assert!(at(
        Field::DlDst,
        XSW_KEY_DL_DST_WORD,
        XSW_KEY_DL_DST_SHIFT,
        XSW_KEY_DL_DST_BITS
    ));
    assert!(at(
        Field::TpDst,
        XSW_KEY_TP_DST_WORD,
        XSW_KEY_TP_DST_SHIFT,
        XSW_KEY_TP_DST_BITS
    ));
    assert!(at(
        Field::NwSrc,
        XSW_KEY_NW_SRC_WORD,
        XSW_KEY_NW_SRC_SHIFT,
        XSW_KEY_NW_SRC_BITS
    ));
    assert!(at(
        Field::NwDst,
        XSW_KEY_NW_DST_WORD,
        XSW_KEY_NW_DST_SHIFT,
        XSW_KEY_NW_DST_BITS
    ));
    // ...and those eleven are all the fields of those words.
    let mut n = 0;
    let mut i = 0;
    while i < Field::ALL.len() {
        if Field::ALL[i].loc().0 < KEY_WORDS {
            n += 1;
        }
        i += 1;
    }
    assert!(n == 11);
};

/// The fields the program knows only for IPv4 and ARP frames (it leaves
/// IPv6 and 802.3 frames' to userspace).
const L3_FIELDS: [Field; 6] = [
    Field::NwProto,
    Field::NwTos,
    Field::TpSrc,
    Field::TpDst,
    Field::NwSrc,
    Field::NwDst,
];

/// Their bits, per key word the program sees.
const L3_BITS: [u64; KEY_WORDS] = {
    let mut m = [0u64; KEY_WORDS];
    let mut i = 0;
    while i < L3_FIELDS.len() {
        let (w, s, _) = L3_FIELDS[i].loc();
        m[w] |= L3_FIELDS[i].full() << s;
        i += 1;
    }
    m
};

/// How many of table 0's highest-priority rules are considered for the XDP
/// program (it holds [`xsw_ebpf::MAX_RULES`]); rules further down stay in
/// userspace, which keeps this O(rules) however large the table.
const XDP_CANDIDATES: usize = 4096;

/// Which table-0 drop rules the XDP program of the port numbered `ofport`
/// can enforce, highest priority first: a drop rule qualifies when it reads
/// only the first four key words, has no timeouts, and no
/// higher-priority rule that stays in userspace overlaps it (so the
/// kernel's decision and counters are exactly userspace's).
pub fn xdp_rules_for(pipe: &Pipeline, ofport: u16) -> Vec<(u32, XdpRule)> {
    let mut out = Vec::new();
    let mut blockers: Vec<Match> = Vec::new();
    let mut top: Vec<(u32, &Installed)> = pipe.tables().table_rules(0);
    let by_rank = |a: &(u32, &Installed), b: &(u32, &Installed)| b.1.rank.cmp(&a.1.rank);
    if top.len() > XDP_CANDIDATES {
        top.select_nth_unstable_by(XDP_CANDIDATES, by_rank);
        top.truncate(XDP_CANDIDATES);
    }
    top.sort_unstable_by(by_rank);
    for (id, r) in top {
        let m = &r.rule.matches;
        // A rule for another in_port never sees this port's frames.
        let (inp, inm) = m.get(Field::InPort);
        if inm != 0 && inp != ofport as u64 {
            continue;
        }
        let overlaps = |b: &Match| {
            let common = b.mask.and(&m.mask);
            b.value.and(&common) == m.value.and(&common)
        };
        let simple = m.mask.w[KEY_WORDS..].iter().all(|w| *w == 0);
        // Rules with timeouts stay in userspace: the kernel would go on
        // dropping after they expire.
        let pushable = r.rule.actions.is_empty()
            && simple
            && r.rule.idle_timeout == 0
            && r.rule.hard_timeout == 0
            && out.len() < xsw_ebpf::MAX_RULES
            && !blockers.iter().any(overlaps);
        if pushable {
            let mut mask = [0u64; KEY_WORDS];
            let mut value = [0u64; KEY_WORDS];
            mask.copy_from_slice(&m.mask.w[..KEY_WORDS]);
            value.copy_from_slice(&m.value.w[..KEY_WORDS]);
            // in_port was checked above; the program knows its own port.
            let needs_l3 = mask.iter().zip(L3_BITS).any(|(m, l3)| m & l3 != 0);
            out.push((
                id,
                XdpRule {
                    mask,
                    value,
                    needs_l3,
                },
            ));
        } else if out.len() >= xsw_ebpf::MAX_RULES {
            // The program is full: nothing after this is pushed.
            break;
        } else {
            blockers.push(*m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsw_datapath::clock::Timestamp;
    use xsw_datapath::flow::parse_flow;
    use xsw_datapath::pipeline::{PipelineOptions, PortConfig};

    #[test]
    fn only_untimed_drop_rules_go_to_xdp() {
        let mut p = Pipeline::new(
            vec![PortConfig::new("a", 1), PortConfig::new("b", 2)],
            PipelineOptions::default(),
        )
        .expect("pipeline");
        for r in [
            "priority=30,udp,tp_dst=9,hard_timeout=10,actions=drop",
            "priority=20,udp,tp_dst=8,idle_timeout=10,actions=drop",
            "priority=10,udp,tp_dst=7,actions=drop",
            "priority=0,actions=NORMAL",
        ] {
            p.add_rule(parse_flow(r, &()).expect("rule"), Timestamp(0));
        }
        let pushed = xdp_rules_for(&p, 1);
        assert_eq!(pushed.len(), 1, "only the rule without timeouts");
        let (_, r) = pushed[0];
        assert_eq!(r.value[2] >> 48, 7);
    }

    #[test]
    fn l3_bits_are_the_l3_and_l4_fields() {
        // nw_proto and nw_tos, tp_src, tp_dst, nw_src and nw_dst.
        assert_eq!(
            L3_BITS,
            [0xffff << 48, 0xffff << 48, 0xffff << 48, u64::MAX]
        );
    }
}
