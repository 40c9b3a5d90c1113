//! The flow model: matches, actions and rules, in `ovs-ofctl` text syntax.

pub mod action;
pub mod syntax;

pub use action::{Action, Actions};
pub use syntax::{parse_flow, parse_match_spec, FlowError, MatchSpec, PortNames};

use crate::key::FlowKey;

/// Default rule priority (OpenFlow's `OFP_DEFAULT_PRIORITY`).
pub const DEFAULT_PRIORITY: u16 = 32768;
/// Number of flow tables: one per `u8`, so any table id indexes safely
/// (rules go in 0-253; 254 is OVS's internal table, 255 stays empty).
pub const N_TABLES: usize = 256;
/// Highest table a rule may go in (OVS refuses 254, its internal table).
pub const MAX_TABLE: u8 = 253;

/// A masked match over the flow key. `value` never has bits outside `mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Match {
    /// Values of the significant bits.
    pub value: FlowKey,
    /// Which bits are significant.
    pub mask: FlowKey,
}

impl Match {
    /// The match-everything match.
    pub const ANY: Match = Match {
        value: FlowKey::ZERO,
        mask: FlowKey::ZERO,
    };

    /// True when `key` satisfies the match.
    #[inline(always)]
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.matches(&self.mask, &self.value)
    }

    /// Sets `field` to `value` under `mask` (both truncated to the field width).
    pub fn set(&mut self, field: crate::key::Field, value: u64, mask: u64) {
        let old_m = self.mask.get(field);
        let old_v = self.value.get(field);
        let m = mask & field.full();
        self.mask.set(field, old_m | m);
        self.value.set(field, (old_v & !m) | (value & m));
    }

    /// The field's (value, mask).
    pub fn get(&self, field: crate::key::Field) -> (u64, u64) {
        (self.value.get(field), self.mask.get(field))
    }

    /// True when the field is matched on all its bits.
    pub fn is_exact(&self, field: crate::key::Field) -> bool {
        self.mask.get(field) == field.full()
    }
}

/// A flow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Table 0..=254.
    pub table: u8,
    /// Higher wins.
    pub priority: u16,
    /// Opaque controller-chosen identifier.
    pub cookie: u64,
    /// Seconds without a hit before removal (0 = never).
    pub idle_timeout: u16,
    /// Seconds after installation before removal (0 = never).
    pub hard_timeout: u16,
    /// What it matches.
    pub matches: Match,
    /// What it does (empty = drop).
    pub actions: Vec<Action>,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            table: 0,
            priority: DEFAULT_PRIORITY,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            matches: Match::ANY,
            actions: Vec::new(),
        }
    }
}

impl Rule {
    /// The first meter this rule's actions name that `known` does not know
    /// (a rule must not name a missing meter).
    pub fn missing_meter(&self, known: impl Fn(u32) -> bool) -> Option<u32> {
        self.actions.iter().find_map(|a| match a {
            Action::Meter(id) if !known(*id) => Some(*id),
            _ => None,
        })
    }

    /// The rule OVS installs in a new bridge: `priority=0,actions=NORMAL`.
    pub fn default_normal() -> Rule {
        Rule {
            priority: 0,
            actions: vec![Action::Normal],
            ..Rule::default()
        }
    }
}

impl std::fmt::Display for Rule {
    /// `ovs-ofctl add-flow` syntax that parses back to the same rule.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<String> = Vec::new();
        if self.table != 0 {
            items.push(format!("table={}", self.table));
        }
        if self.cookie != 0 {
            items.push(format!("cookie={:#x}", self.cookie));
        }
        if self.idle_timeout != 0 {
            items.push(format!("idle_timeout={}", self.idle_timeout));
        }
        if self.hard_timeout != 0 {
            items.push(format!("hard_timeout={}", self.hard_timeout));
        }
        let m = syntax::format_match(&self.matches, self.priority);
        if !m.is_empty() {
            items.push(m);
        }
        if !items.is_empty() {
            write!(f, "{} ", items.join(","))?;
        }
        write!(f, "actions={}", Actions(&self.actions))
    }
}
