//! Which drop rules the XDP programs enforce in the kernel.

use xsw_datapath::flow::Match;
use xsw_datapath::key::Field;
use xsw_datapath::pipeline::Pipeline;
use xsw_datapath::table::Installed;
use xsw_ebpf::XdpRule;

/// The word-0 bits that are L3/L4 fields (nw_proto, nw_tos).
const W0_L3: u64 = 0xffff << 48;
/// The word-1/2 bits that are L4 ports.
const W12_L4: u64 = 0xffff << 48;

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
        let simple = m.mask.w[4..].iter().all(|w| *w == 0);
        // Rules with timeouts stay in userspace: the kernel would go on
        // dropping after they expire.
        let pushable = r.rule.actions.is_empty()
            && simple
            && r.rule.idle_timeout == 0
            && r.rule.hard_timeout == 0
            && out.len() < xsw_ebpf::MAX_RULES
            && !blockers.iter().any(overlaps);
        if pushable {
            let mut mask = [0u64; 4];
            let mut value = [0u64; 4];
            mask.copy_from_slice(&m.mask.w[..4]);
            value.copy_from_slice(&m.value.w[..4]);
            // in_port was checked above; the program knows its own port.
            let needs_l3 = mask[0] & W0_L3 != 0
                || mask[1] & W12_L4 != 0
                || mask[2] & W12_L4 != 0
                || mask[3] != 0;
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
}
