//! Simulated hosts: smoltcp TCP/IP stacks plugged into switch ports, run
//! with the pipeline on one virtual clock.
//!
//! A scenario's `[[host]]` tables describe hosts (a MAC, addresses, an
//! optional VLAN tag and PCP/DSCP marking, a NIC rate and cable delay) and
//! what they do on the scenario clock (`ping`, `tcp`, `udp`, `arp`,
//! `move`); `[[change]]` tables add or delete rules at given times;
//! `[[expect]]` tables state properties of the results. [`crate::replay::replay`] plays it
//! all as one discrete-event simulation: the same scenario gives the same
//! bytes every time, on any machine. pcaps/REFERENCE.md documents every key.

mod host;
mod run;
mod spec;
mod wire;

pub use host::{ActionResult, Connection, HostSummary, Rtt};
pub use run::SIM_EPOCH;
pub use spec::{ActionSpec, ChangeOp, ChangeSpec, ExpectSpec, HostSpec, SimSpec, Target};

pub(crate) use run::run;
pub(crate) use spec::{load, ChangeFile, ExpectFile, HostFile, SimFile};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The outcome of one `[[expect]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExpectResult {
    /// The path into summary.json.
    pub path: String,
    /// What was asked, e.g. `at least 9500000`.
    pub want: String,
    /// What the run gave (`missing` when the path leads nowhere).
    pub got: String,
    /// Whether it holds.
    pub ok: bool,
    /// The scenario's note, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Finds `path` in a summary: dot-separated keys; an array step is an
/// index or the `name` (or `port`) of one of its items.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for step in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(step)?,
            Value::Array(a) => match step.parse::<usize>() {
                Ok(i) => a.get(i)?,
                // By `name` first, then by `port`.
                Err(_) => ["name", "port"].iter().find_map(|k| {
                    a.iter()
                        .find(|x| x.get(k).and_then(Value::as_str) == Some(step))
                })?,
            },
            _ => return None,
        };
    }
    Some(cur)
}

/// Checks `[[expect]]` tables against a summary (as JSON).
pub fn check_expectations(summary: &Value, expects: &[ExpectSpec]) -> Vec<ExpectResult> {
    let mut out = Vec::new();
    for e in expects {
        let ratio;
        let got = match &e.divided_by {
            None => lookup(summary, &e.path),
            Some(d) => {
                let a = lookup(summary, &e.path).and_then(Value::as_f64);
                let b = lookup(summary, d)
                    .and_then(Value::as_f64)
                    .filter(|b| *b != 0.0);
                ratio = match (a, b) {
                    (Some(a), Some(b)) => serde_json::Number::from_f64(a / b).map(Value::Number),
                    _ => None,
                };
                ratio.as_ref()
            }
        };
        let mut want = Vec::new();
        let mut ok = got.is_some();
        let num = got.and_then(Value::as_f64);
        if let Some(lo) = e.at_least {
            want.push(format!("at least {lo}"));
            ok &= num.is_some_and(|n| n >= lo);
        }
        if let Some(hi) = e.at_most {
            want.push(format!("at most {hi}"));
            ok &= num.is_some_and(|n| n <= hi);
        }
        if let Some(eq) = &e.equals {
            want.push(format!("equal to {eq}"));
            ok &= match (got, eq.as_f64()) {
                (Some(g), Some(x)) => g.as_f64() == Some(x),
                (Some(g), None) => g == eq,
                (None, _) => false,
            };
        }
        out.push(ExpectResult {
            path: match &e.divided_by {
                Some(d) => format!("{} / {d}", e.path),
                None => e.path.clone(),
            },
            want: want.join(" and "),
            got: got.map_or_else(|| "missing".to_string(), Value::to_string),
            ok,
            note: e.note.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_index_and_name() {
        let v: Value = serde_json::json!({
            "hosts": [{"name": "h1", "actions": [{"sent": 5}]}, {"name": "h2"}],
        });
        assert_eq!(lookup(&v, "hosts.h1.actions.0.sent"), Some(&Value::from(5)));
        assert_eq!(lookup(&v, "hosts.1.name"), Some(&Value::from("h2")));
        assert_eq!(lookup(&v, "hosts.h3"), None);
        let r = check_expectations(
            &v,
            &[
                ExpectSpec {
                    path: "hosts.h1.actions.0.sent".into(),
                    divided_by: None,
                    at_least: Some(5.0),
                    at_most: Some(5.0),
                    equals: None,
                    note: None,
                },
                ExpectSpec {
                    path: "hosts.h1.actions.0.sent".into(),
                    divided_by: Some("hosts.h1.actions.0.sent".into()),
                    at_least: Some(6.0),
                    at_most: None,
                    equals: None,
                    note: None,
                },
                ExpectSpec {
                    path: "hosts.h9".into(),
                    divided_by: None,
                    at_least: None,
                    at_most: None,
                    equals: Some(Value::from("x")),
                    note: None,
                },
            ],
        );
        assert!(r[0].ok);
        assert!(!r[1].ok);
        assert_eq!(r[1].want, "at least 6");
        assert_eq!(r[1].got, "1.0", "a ratio");
        assert!(!r[2].ok);
        assert_eq!(r[2].got, "missing");
    }
}
