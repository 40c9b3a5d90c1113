//! `xsw show`: the running switch at a glance.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use xsw_control::proto::{Show, ShowReply};
use xsw_datapath::spec::QosSpec;

use super::{or_dash, table, Live};

/// The running switch: bridges, ports (interface, type, VLANs, MTU, XDP
/// mode, state), flow and MAC counts.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Only this bridge.
    bridge: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `xsw show`.
pub fn run(live: &Live, a: ShowArgs) -> Result<ExitCode> {
    let req = Show { bridge: a.bridge };
    if a.json {
        super::print_json(&live.call_value(req)?)?;
    } else {
        print!("{}", text(&live.call(req)?));
    }
    Ok(ExitCode::SUCCESS)
}

/// Bridges with a table of their ports, and the polling thread's load.
fn text(v: &ShowReply) -> String {
    let mut out = String::new();
    if v.bridges.is_empty() {
        out.push_str("no bridges (add one: xsw bridge add NAME)\n");
    }
    for b in &v.bridges {
        out.push_str(&format!(
            "bridge {}: {} port(s), {} flow(s), {} MAC(s) learned (aging {} s, up to {})\n",
            b.name,
            b.ports.len(),
            b.flows,
            b.mac_entries,
            b.mac_aging,
            b.mac_table_size,
        ));
        if b.ports.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = b
            .ports
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.ofport.to_string(),
                    p.kind.clone(),
                    p.interface.clone(),
                    p.vlan.clone(),
                    or_dash(&p.mtu),
                    qos_text(p.qos.as_ref()),
                    or_dash(&p.xdp_mode),
                    p.state.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PORT",
                "OFPORT",
                "TYPE",
                "INTERFACE",
                "VLAN",
                "MTU",
                "QOS",
                "XDP",
                "STATE",
            ],
            &rows,
        ));
    }
    let e = &v.engine;
    let (run, busy) = (e.run_seconds, e.busy_seconds);
    let pct = if run > 0.0 { busy / run * 100.0 } else { 0.0 };
    out.push_str(&format!(
        "polling thread: busy {pct:.1}% of {run:.0} s, {} control command(s)\n",
        e.commands
    ));
    out
}

/// A port's QoS in a few words: `100M strict`, `drr`, `police 50M`, `-`.
fn qos_text(q: Option<&QosSpec>) -> String {
    let Some(q) = q else {
        return "-".into();
    };
    let mut parts = Vec::new();
    if let Some(r) = &q.rate {
        parts.push(r.clone());
    }
    let sched = q.scheduler.as_deref().unwrap_or("strict");
    match q.strict_queues {
        Some(n) => parts.push(format!("{sched}/{n}")),
        None => parts.push(sched.to_string()),
    }
    if let Some(r) = &q.police_rate {
        parts.push(format!("police {r}"));
    }
    if q.dscp_map.is_some() {
        parts.push("dscp".into());
    }
    if q.remark_pcp == Some(true) {
        parts.push("remark".into());
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_in_a_few_words() {
        assert_eq!(qos_text(None), "-");
        assert_eq!(qos_text(Some(&QosSpec::default())), "strict");
        let q = QosSpec {
            rate: Some("1G".into()),
            scheduler: Some("ets".into()),
            strict_queues: Some(2),
            police_rate: Some("50M".into()),
            dscp_map: Some(Default::default()),
            remark_pcp: Some(true),
            ..Default::default()
        };
        assert_eq!(qos_text(Some(&q)), "1G ets/2 police 50M dscp remark");
    }
}
