//! `dump-flows` formatting: a rule and its counters as `ovs-ofctl
//! dump-flows` prints them.

use crate::clock::Timestamp;
use crate::flow::Rule;
use crate::table::Installed;

/// Formats a rule like `ovs-ofctl dump-flows` does, counters included.
pub fn dump_flow(r: &Installed, now: Timestamp) -> String {
    dump_rule(&r.rule, &r.stats, now)
}

/// [`dump_flow`] for a rule and its counters held apart.
pub fn dump_rule(rule: &Rule, stats: &crate::table::RuleStats, now: Timestamp) -> String {
    struct View<'a> {
        rule: &'a Rule,
        stats: &'a crate::table::RuleStats,
    }
    let r = View { rule, stats };
    // OVS keeps flow times in whole milliseconds.
    let ms = |t: Timestamp| t.0 / 1_000_000;
    let dur = ms(now).saturating_sub(ms(r.stats.installed));
    let duration = if dur == 0 {
        "0s".to_string()
    } else {
        format!("{}.{:03}s", dur / 1000, dur % 1000)
    };
    let mut s = format!(
        " cookie={:#x}, duration={duration}, table={}, n_packets={}, n_bytes={}, ",
        r.rule.cookie, r.rule.table, r.stats.packets, r.stats.bytes
    );
    if r.rule.idle_timeout > 0 {
        s.push_str(&format!("idle_timeout={}, ", r.rule.idle_timeout));
    }
    if r.rule.hard_timeout > 0 {
        s.push_str(&format!("hard_timeout={}, ", r.rule.hard_timeout));
    }
    s.push_str(&format!(
        "idle_age={}, ",
        ms(now).saturating_sub(ms(r.stats.last_used)) / 1000
    ));
    let m = crate::flow::syntax::format_match(&r.rule.matches, r.rule.priority);
    s.push_str(&m);
    if !m.is_empty() {
        s.push(' ');
    }
    s.push_str(&format!(
        "actions={}",
        crate::flow::Actions(&r.rule.actions)
    ));
    s
}
