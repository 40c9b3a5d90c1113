//! The user-facing spec types: what people write in `scenario.toml`,
//! `xswd`'s configuration, rule files and control requests (meters, QoS,
//! rules), with the checks that turn them into the pipeline's settings.

use crate::flow::{parse_flow, FlowError, PortNames, Rule};
use crate::packet::MAX_FRAME;
use crate::qos::{
    default_burst, parse_bits, BitRate, QosConfig, Scheduler, MAX_DEPTH, MAX_PORT_FRAMES, N_QUEUES,
};

/// Line and column (both from 1, the column in characters) of byte offset
/// `byte` in `text`, for messages about configuration files.
pub fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let upto = &text[..byte.min(text.len())];
    let line = upto.matches('\n').count() + 1;
    let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A meter, checked: id, rate (bits/s), burst (bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterDef {
    /// Id (1-65535).
    pub id: u32,
    /// Rate, bits/s.
    pub rate: u64,
    /// Burst, bits.
    pub burst: u64,
}

impl MeterDef {
    /// Checks a meter given as text (`rate` and `burst` in bits, k/M/G).
    pub fn parse(id: u32, rate: &str, burst: Option<&str>) -> Result<MeterDef, String> {
        if id == 0 || id > crate::flow::syntax::MAX_METER {
            return Err(format!(
                "meter {id}: ids are 1-{}",
                crate::flow::syntax::MAX_METER
            ));
        }
        let spec = QosSpec {
            police_rate: Some(rate.to_string()),
            police_burst: burst.map(str::to_string),
            ..Default::default()
        };
        let c = spec
            .to_config()
            .map_err(|e| format!("meter {id}: {}", e.replace("police_", "")))?;
        let (rate, burst) = c.police.unwrap_or((0, 0));
        Ok(MeterDef { id, rate, burst })
    }
}

/// One queue's settings as written in files and requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Queue number, 0-7.
    pub queue: u8,
    /// Shaper rate (bits/s, e.g. `40M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Shaper burst (bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
    /// Frames it holds (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
}

/// A port's QoS as written in `scenario.toml` (`[port.qos]`), in `xswd`'s
/// config (`[bridge.port.qos]`) and in control requests. Rates and bursts
/// are bits (`100M`, `1.5G`, `64k`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosSpec {
    /// Port shaper rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Port shaper burst (default: 1 ms at the rate, at least two largest frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
    /// `strict` (default), `drr` or `ets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// With `ets`: how many of the highest queues are strict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_queues: Option<u8>,
    /// DRR weights for queues 0-7 (1-100 each; default all 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<u32>>,
    /// Queue for each priority 0-7 (default 1,0,2,3,4,5,6,7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcp_map: Option<Vec<u8>>,
    /// Priority of frames that arrive untagged on this port (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pcp: Option<u8>,
    /// DSCP → priority for IP frames that arrive untagged on this port.
    /// With a map, DSCPs it does not list map to their class selector
    /// (DSCP / 8), not to `default_pcp` (which non-IP frames keep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp_map: Option<std::collections::BTreeMap<String, u8>>,
    /// Tags this port adds to frames that arrived untagged carry the
    /// frame's priority (the one that picks its queue) as their PCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark_pcp: Option<bool>,
    /// Ingress policing rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub police_rate: Option<String>,
    /// Ingress policing burst (default: as for `burst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub police_burst: Option<String>,
    /// Per-queue settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueueSpec>>,
    /// Replay only: the port's line rate (frames leave one after another at
    /// it; output timestamps are departure times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_rate: Option<String>,
}

fn rate_of(what: &str, s: &str) -> Result<BitRate, String> {
    let r = parse_bits(s).map_err(|e| format!("{what}: {e}"))?;
    if !(1_000..=400_000_000_000).contains(&r) {
        return Err(format!("{what}: {s} is out of range (1k-400G bit/s)"));
    }
    Ok(r)
}

fn burst_of(what: &str, s: Option<&str>, rate: BitRate) -> Result<u64, String> {
    match s {
        None => Ok(default_burst(rate)),
        Some(s) => {
            let b = parse_bits(s).map_err(|e| format!("{what}: {e}"))?;
            if b < MAX_FRAME as u64 * 8 {
                return Err(format!(
                    "{what}: {s} is less than one largest frame ({} bits)",
                    MAX_FRAME * 8
                ));
            }
            Ok(b)
        }
    }
}

impl QosSpec {
    /// Checks everything and makes the configuration.
    pub fn to_config(&self) -> Result<QosConfig, String> {
        let mut c = QosConfig::default();
        if let Some(r) = &self.rate {
            let rate = rate_of("rate", r)?;
            c.shaper = Some((rate, burst_of("burst", self.burst.as_deref(), rate)?));
        } else if self.burst.is_some() {
            return Err("burst without rate: give the shaper's rate too".into());
        }
        c.scheduler =
            match (self.scheduler.as_deref(), self.strict_queues) {
                (None | Some("strict"), None) => Scheduler::Strict,
                (Some("drr"), None) => Scheduler::Drr,
                (Some("ets"), Some(n)) if n as usize <= N_QUEUES => Scheduler::Ets { strict: n },
                (Some("ets"), Some(n)) => {
                    return Err(format!("strict_queues = {n}: at most {N_QUEUES}"))
                }
                (Some("ets"), None) => return Err(
                    "scheduler ets needs strict_queues (how many of the highest queues are strict)"
                        .into(),
                ),
                (Some(s), None) => return Err(format!("scheduler `{s}`: use strict, drr or ets")),
                (_, Some(_)) => return Err("strict_queues goes with scheduler = \"ets\"".into()),
            };
        if let Some(w) = &self.weights {
            if w.len() != N_QUEUES || w.iter().any(|x| !(1..=100).contains(x)) {
                return Err(format!(
                    "weights: give {N_QUEUES} numbers, 1-100 each (queues 0-7), not {w:?}"
                ));
            }
            c.weights.copy_from_slice(w);
        }
        if let Some(m) = &self.pcp_map {
            if m.len() != 8 || m.iter().any(|q| *q as usize >= N_QUEUES) {
                return Err(format!(
                    "pcp_map: give 8 queue numbers (0-7), one per priority 0-7, not {m:?}"
                ));
            }
            c.pcp_map.copy_from_slice(m);
        }
        if let Some(p) = self.default_pcp {
            if p > 7 {
                return Err(format!("default_pcp = {p}: a priority is 0-7"));
            }
            c.default_pcp = p;
        }
        if let Some(m) = &self.dscp_map {
            let mut map: [u8; 64] = std::array::from_fn(|d| (d >> 3) as u8);
            for (k, v) in m {
                let d: u8 = k
                    .trim()
                    .parse()
                    .ok()
                    .filter(|d| *d < 64)
                    .ok_or_else(|| format!("dscp_map: `{k}` is not a DSCP (0-63)"))?;
                if *v > 7 {
                    return Err(format!("dscp_map: {k} = {v}: a priority is 0-7"));
                }
                map[d as usize] = *v;
            }
            c.dscp_map = Some(map);
        }
        c.remark_pcp = self.remark_pcp.unwrap_or(false);
        if let Some(r) = &self.police_rate {
            let rate = rate_of("police_rate", r)?;
            c.police = Some((
                rate,
                burst_of("police_burst", self.police_burst.as_deref(), rate)?,
            ));
        } else if self.police_burst.is_some() {
            return Err("police_burst without police_rate".into());
        }
        let mut seen = [false; N_QUEUES];
        for q in self.queues.iter().flatten() {
            let i = q.queue as usize;
            if i >= N_QUEUES {
                return Err(format!("queues: queue {i}: queues are 0-7"));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(format!("queues: queue {i} is listed twice"));
            }
            let qc = &mut c.queues[i];
            if let Some(d) = q.depth {
                if !(1..=MAX_DEPTH).contains(&d) {
                    return Err(format!(
                        "queues: queue {i}: depth {d}: 1-{MAX_DEPTH} frames"
                    ));
                }
                qc.depth = d;
            }
            if let Some(r) = &q.rate {
                let rate = rate_of(&format!("queues: queue {i}: rate"), r)?;
                qc.shaper = Some((
                    rate,
                    burst_of(
                        &format!("queues: queue {i}: burst"),
                        q.burst.as_deref(),
                        rate,
                    )?,
                ));
            } else if q.burst.is_some() {
                return Err(format!("queues: queue {i}: burst without rate"));
            }
        }
        if let Some(l) = &self.line_rate {
            c.line_rate = Some(rate_of("line_rate", l)?);
        }
        if c.buffers() > MAX_PORT_FRAMES {
            return Err(format!(
                "queues: {} frames in all; a port's queues hold at most {MAX_PORT_FRAMES}",
                c.buffers()
            ));
        }
        Ok(c)
    }
}

/// A rule of a rules file with the line it came from (0 for a rule no
/// file gave, such as the default NORMAL rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberedRule {
    /// 1-based line.
    pub line: usize,
    /// The rule.
    pub rule: Rule,
}

/// A line of a rules file that is not a rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct RuleFileError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong (with the column).
    pub error: FlowError,
}

/// Parses a rules file: one rule per line, `#` starts a comment, blank
/// lines ignored. Returns each rule with its line number.
pub fn parse_rules<P: PortNames + ?Sized>(
    text: &str,
    ports: &P,
) -> Result<Vec<NumberedRule>, RuleFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(p) => &raw[..p],
            None => raw,
        };
        if line.trim().is_empty() {
            continue;
        }
        let rule = parse_flow(line, ports).map_err(|error| RuleFileError { line: i + 1, error })?;
        out.push(NumberedRule { line: i + 1, rule });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let ok = QosSpec {
            rate: Some("100M".into()),
            scheduler: Some("ets".into()),
            strict_queues: Some(2),
            weights: Some(vec![1, 1, 2, 2, 4, 4, 8, 8]),
            dscp_map: Some([("46".to_string(), 5u8)].into_iter().collect()),
            queues: Some(vec![QueueSpec {
                queue: 6,
                rate: Some("40M".into()),
                depth: Some(64),
                burst: None,
            }]),
            ..Default::default()
        };
        let c = ok.to_config().expect("valid");
        assert_eq!(c.scheduler, Scheduler::Ets { strict: 2 });
        assert_eq!(c.dscp_map.map(|m| (m[46], m[48])), Some((5, 6)));
        assert_eq!(c.queues[6].depth, 64);
        for (bad, why) in [
            (
                QosSpec {
                    scheduler: Some("wfq".into()),
                    ..Default::default()
                },
                "scheduler",
            ),
            (
                QosSpec {
                    weights: Some(vec![1, 2]),
                    ..Default::default()
                },
                "weights",
            ),
            (
                QosSpec {
                    rate: Some("1".into()),
                    ..Default::default()
                },
                "out of range",
            ),
            (
                QosSpec {
                    default_pcp: Some(9),
                    ..Default::default()
                },
                "0-7",
            ),
            (
                QosSpec {
                    burst: Some("1M".into()),
                    ..Default::default()
                },
                "without rate",
            ),
        ] {
            let e = bad.to_config().expect_err(why);
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 11), (2, 5));
        assert_eq!(line_col(text, 999), (3, 1));
    }
}
