//! The `xsw` commands, one module per command group: each holds its clap
//! types, its handler and its text rendering. Shared here: the connection
//! to `xswd`, scenario loading, and small parsing and output helpers.

pub mod bridge;
pub mod fdb;
pub mod flow;
pub mod meter;
pub mod port;
pub mod replay;
pub mod show;
pub mod test;
pub mod trace;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use xsw_control::client::Client;
use xsw_control::proto::Call;
use xsw_datapath::replay::Scenario;

/// The running `xswd`, reached through its socket (one connection per
/// request).
#[derive(Debug)]
pub struct Live {
    /// The control socket.
    pub socket: PathBuf,
}

impl Live {
    /// Sends `req` and returns its reply.
    pub fn call<C: Call>(&self, req: C) -> Result<C::Reply> {
        let mut c = Client::connect(&self.socket)?;
        Ok(c.call(req)?)
    }

    /// Sends `req` and returns its reply as the daemon wrote it, for
    /// `--json`: a field the reply type does not know is kept, and a reply
    /// that does not fit the type still comes back.
    pub fn call_value<C: Call>(&self, req: C) -> Result<serde_json::Value> {
        let mut c = Client::connect(&self.socket)?;
        Ok(c.call_value(req.command())?)
    }
}

/// Splits KEY=VALUE settings.
fn settings(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("`{a}`: expected KEY=VALUE"))
        })
        .collect()
}

/// A comma-separated list of numbers, for setting `key`.
fn num_list<T: std::str::FromStr>(key: &str, v: &str) -> Result<Vec<T>> {
    v.split(',').map(|x| num(key, x)).collect()
}

/// A number, for setting `key`.
fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{key}: `{v}` is not a number"))
}

/// A frame given as hex with `--frame`.
fn parse_hex(s: &str) -> Result<Vec<u8>> {
    xsw_control::proto::parse_hex(s).map_err(|e| anyhow::anyhow!("--frame: {e}"))
}

/// Loads a scenario directory.
fn load(dir: &Path) -> Result<Scenario> {
    if !dir.is_dir() {
        bail!("{}: no such scenario directory", dir.display());
    }
    Ok(Scenario::load(dir)?)
}

/// Port names and numbers of a scenario (empty without one).
fn port_names(scenario: Option<&Path>) -> Result<Vec<(String, u16)>> {
    Ok(match scenario {
        Some(d) => load(d)?
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.ofport))
            .collect(),
        None => Vec::new(),
    })
}

/// A table with aligned columns.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            s.push(' ');
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i] - c.len()));
                s.push(' ');
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A value for a table cell: `-` when there is none.
fn or_dash<T: Display>(v: &Option<T>) -> String {
    match v {
        Some(x) => x.to_string(),
        None => "-".into(),
    }
}

/// Prints a reply as pretty JSON, as the daemon wrote it (keys in
/// alphabetical order, as on the socket).
fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
