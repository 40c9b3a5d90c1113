//! Scenario regression checks, the library under `xsw test`: find scenario
//! directories, replay each into a fresh directory, and compare every
//! port's `<port>.pcap` and `summary.json` with the scenario's `expected/`,
//! with differences told the way a person reads them ([`diff`]); or rewrite
//! `expected/` from the run ([`RunOptions::update`]). [`junit`] writes the
//! results for CI systems.
//!
//! What the `[check]` table of `scenario.toml` changes
//! ([`crate::replay::CheckFile`]): `unordered` ports are compared as a
//! multiset of (timestamp, bytes) frames, and numbers in `summary.json`
//! under a `tolerance` prefix match within that relative difference.

pub mod diff;
pub mod junit;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::clock::Timestamp;
use crate::pcap::{read_all, PcapError, PcapReader};
use crate::replay::{replay, Scenario, Unordered};

use diff::Frame;

/// What can stop a scenario from being checked at all (as opposed to a
/// check that finds differences).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A path given to search does not exist.
    #[error("{}: no such file or directory", .0.display())]
    NoSuchPath(PathBuf),
    /// A path given to search is a file other than a `scenario.toml`.
    #[error("{}: not a directory (give a scenario directory, a directory holding scenarios, or a scenario.toml)", .0.display())]
    NotADirectory(PathBuf),
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A capture is unreadable.
    #[error("{}: {source}", path.display())]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: PcapError,
    },
    /// A summary is not JSON.
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The `[check]` table names something that does not exist, or a
    /// tolerance that is no fraction.
    #[error("{}: [check] {msg}", path.display())]
    Check {
        /// The scenario.toml.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The scenario does not load or does not replay.
    #[error(transparent)]
    Datapath(#[from] crate::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckError + '_ {
    move |source| CheckError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Directory names never searched for scenarios: a scenario's own inputs and
/// expected outputs.
const SKIP_DIRS: &[&str] = &["expected", "in"];

/// How deep [`find_scenarios`] looks below each path.
const MAX_DEPTH: usize = 32;

/// The scenario directories (those holding `scenario.toml`) at or under
/// `paths`, sorted and without duplicates. A path that is itself a
/// scenario counts (so does its `scenario.toml`); directories are searched
/// recursively, except `expected/` and `in/` directories, hidden ones, and
/// the inside of a scenario. A path that does not exist is an error. A
/// leading `./` is dropped (`./x` is found as `x`).
pub fn find_scenarios(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CheckError> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), CheckError> {
        if dir.join("scenario.toml").is_file() {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        let mut subdirs: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_ref())
            })
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        for d in subdirs {
            walk(&d, depth + 1, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, 0, &mut out)?;
        } else if p.is_file() && p.file_name().is_some_and(|n| n == "scenario.toml") {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            out.push(dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf));
        } else if p.exists() {
            return Err(CheckError::NotADirectory(p.clone()));
        } else {
            return Err(CheckError::NoSuchPath(p.clone()));
        }
    }
    // `./x` reads as `x`.
    for d in &mut out {
        let mut c = d.components();
        if c.next() == Some(std::path::Component::CurDir) && c.clone().next().is_some() {
            *d = c.as_path().to_path_buf();
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// How [`run_scenario`] runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rewrite `expected/` from the run when it differs (each port's pcap
    /// and summary.json; pcaps of ports the scenario no longer has are
    /// removed).
    pub update: bool,
    /// Write the outputs into this directory and keep them; by default
    /// they go to a fresh temporary directory, removed afterwards.
    pub keep: Option<PathBuf>,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The outputs equal `expected/`.
    Passed,
    /// They differ, or the scenario could not run.
    Failed,
    /// They differed and `expected/` was rewritten.
    Updated,
}

impl Status {
    /// `ok`, `FAIL` or `updated`, as `xsw test` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::Failed => "FAIL",
            Status::Updated => "updated",
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The scenario directory, as found.
    pub dir: PathBuf,
    /// Passed, failed or updated.
    pub status: Status,
    /// What differs (for an updated scenario: what differed), or why the
    /// scenario could not run; empty when it passed.
    pub lines: Vec<String>,
    /// Wall time of the load, replay and comparison.
    pub elapsed: Duration,
    /// Where the outputs were kept, if they were.
    pub output: Option<PathBuf>,
}

/// The `[check]` settings `xsw test` uses, checked against the scenario.
#[derive(Debug, Clone, Default)]
struct Settings {
    unordered: Unordered,
    tolerance: BTreeMap<String, f64>,
}

fn settings(sc: &Scenario) -> Result<Settings, CheckError> {
    let Some(c) = &sc.check else {
        return Ok(Settings::default());
    };
    let err = |msg: String| CheckError::Check {
        path: sc.dir.join("scenario.toml"),
        msg,
    };
    if let Unordered::Ports(names) = &c.unordered {
        for n in names {
            if !sc.ports.iter().any(|p| &p.name == n) {
                return Err(err(format!(
                    "unordered: there is no port named `{n}` (ports: {})",
                    sc.ports
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    for (k, v) in &c.tolerance {
        if !v.is_finite() || *v < 0.0 {
            return Err(err(format!(
                "tolerance.\"{k}\" = {v}: a tolerance is a relative difference, a number from 0 (exact) up, like 0.05 for 5%"
            )));
        }
    }
    Ok(Settings {
        unordered: c.unordered.clone(),
        tolerance: c.tolerance.clone(),
    })
}

/// The scenario clock's start: the earliest first frame of its inputs
/// (a simulation without inputs starts at [`crate::sim::SIM_EPOCH`]).
fn start_of(sc: &Scenario) -> Result<Timestamp, CheckError> {
    let mut best: Option<Timestamp> = None;
    for path in sc.inputs.iter().flatten() {
        let f = fs::File::open(path).map_err(io(path))?;
        let pcap = |source| CheckError::Pcap {
            path: path.clone(),
            source,
        };
        let mut r = PcapReader::new(std::io::BufReader::new(f)).map_err(pcap)?;
        if let Some(rec) = r.next_record().map_err(pcap)? {
            best = Some(best.map_or(rec.ts, |b| b.min(rec.ts)));
        }
    }
    Ok(best.unwrap_or(crate::sim::SIM_EPOCH))
}

fn read_frames(path: &Path) -> Result<Vec<Frame>, CheckError> {
    let bytes = fs::read(path).map_err(io(path))?;
    read_all(&bytes).map_err(|source| CheckError::Pcap {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, CheckError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| CheckError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The `expected/*.pcap` files that belong to no port of the scenario.
fn stray_expected(sc: &Scenario) -> Result<Vec<PathBuf>, CheckError> {
    let exp = sc.dir.join("expected");
    if !exp.is_dir() {
        return Ok(Vec::new());
    }
    let mut v: Vec<PathBuf> = fs::read_dir(&exp)
        .map_err(io(&exp))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "pcap")
                && !p
                    .file_stem()
                    .is_some_and(|s| sc.ports.iter().any(|port| s == port.name.as_str()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Compares the outputs of `sc` in `out` with `sc.dir/expected/`: every
/// port's frames (in order, or as a multiset for `unordered` ports), then
/// `summary.json` as JSON values (with the scenario's tolerances). Returns
/// the lines that describe the differences; empty when there are none.
pub fn compare(sc: &Scenario, out: &Path) -> Result<Vec<String>, CheckError> {
    let set = settings(sc)?;
    let exp = sc.dir.join("expected");
    if !exp.is_dir() {
        return Ok(vec![
            "expected/ is missing (xsw test --update creates it from this run)".into(),
        ]);
    }
    let start = start_of(sc)?;
    let mut lines = Vec::new();
    for p in &sc.ports {
        let file = format!("{}.pcap", p.name);
        let want_path = exp.join(&file);
        if !want_path.is_file() {
            lines.push(format!(
                "expected/{file} is missing (xsw test --update creates it)"
            ));
            continue;
        }
        let got_path = out.join(&file);
        let got = read_frames(&got_path)?;
        let want = read_frames(&want_path)?;
        let d = if set.unordered.includes(&p.name) {
            diff::diff_port_unordered(&p.name, &got, &want, start)
        } else {
            diff::diff_port(&p.name, &got, &want, start)
        };
        if d.is_empty() && !set.unordered.includes(&p.name) {
            // Same frames; the files themselves should be equal too.
            let g = fs::read(&got_path).map_err(io(&got_path))?;
            let w = fs::read(&want_path).map_err(io(&want_path))?;
            if g != w {
                lines.push(format!(
                    "{}: same frames, but the file differs from expected/{file} (pcap header or timestamp resolution)",
                    p.name
                ));
            }
        }
        lines.extend(d);
    }
    for s in stray_expected(sc)? {
        let name = s.file_name().map(|n| n.to_string_lossy().into_owned());
        lines.push(format!(
            "expected/{}: the scenario has no such port (xsw test --update removes it)",
            name.unwrap_or_default()
        ));
    }
    let want_path = exp.join("summary.json");
    if want_path.is_file() {
        let got = read_json(&out.join("summary.json"))?;
        let want = read_json(&want_path)?;
        lines.extend(diff::diff_json(
            &got,
            &want,
            &set.tolerance,
            diff::JSON_DIFF_LIMIT,
        ));
    } else {
        lines.push("expected/summary.json is missing (xsw test --update creates it)".into());
    }
    Ok(lines)
}

/// Rewrites `sc.dir/expected/` from the outputs in `out`: every port's
/// pcap and `summary.json`; removes the pcaps of ports the scenario no
/// longer has.
pub fn update_expected(sc: &Scenario, out: &Path) -> Result<(), CheckError> {
    let exp = sc.dir.join("expected");
    fs::create_dir_all(&exp).map_err(io(&exp))?;
    let mut files: Vec<String> = sc
        .ports
        .iter()
        .map(|p| format!("{}.pcap", p.name))
        .collect();
    files.push("summary.json".into());
    for f in &files {
        let to = exp.join(f);
        fs::copy(out.join(f), &to).map_err(io(&to))?;
    }
    for s in stray_expected(sc)? {
        fs::remove_file(&s).map_err(io(&s))?;
    }
    Ok(())
}

/// A fresh output directory under the system's temporary directory, unique
/// per scenario and process.
fn temp_out(dir: &Path) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("xsw-test-{}-{n}-{name}", std::process::id()))
}

/// Loads, replays and compares one scenario (or updates its `expected/`,
/// with [`RunOptions::update`]). Never fails: a scenario that cannot run is
/// a failed result that says why.
pub fn run_scenario(dir: &Path, opts: &RunOptions) -> ScenarioResult {
    let t0 = Instant::now();
    let (out, temp) = match &opts.keep {
        Some(k) => (k.clone(), false),
        None => (temp_out(dir), true),
    };
    let run = || -> Result<(Status, Vec<String>), CheckError> {
        let sc = Scenario::load(dir)?;
        settings(&sc)?;
        if temp {
            // Leftovers of an earlier process with the same id.
            let _ = fs::remove_dir_all(&out);
        }
        let summary = replay(&sc, &out)?;
        // A failed [[expect]] fails the scenario whatever expected/ holds
        // (and --update cannot make it pass).
        let broken: Vec<String> = summary
            .expectations
            .iter()
            .filter(|e| !e.ok)
            .map(|e| {
                let note = e
                    .note
                    .as_deref()
                    .map_or_else(String::new, |n| format!(" ({n})"));
                format!("expect {}: {}, expected {}{note}", e.path, e.got, e.want)
            })
            .collect();
        let lines = compare(&sc, &out)?;
        if !broken.is_empty() {
            if opts.update && !lines.is_empty() {
                update_expected(&sc, &out)?;
            }
            let mut all = broken;
            all.extend(lines);
            Ok((Status::Failed, all))
        } else if lines.is_empty() {
            Ok((Status::Passed, lines))
        } else if opts.update {
            update_expected(&sc, &out)?;
            Ok((Status::Updated, lines))
        } else {
            Ok((Status::Failed, lines))
        }
    };
    // A panic anywhere in the run is a bug, but it fails this scenario
    // only: the others still run and the report is still written.
    let (status, lines) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r.unwrap_or_else(|e| (Status::Failed, vec![e.to_string()])),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            (
                Status::Failed,
                vec![format!(
                    "xsw panicked running this scenario (a bug, please report it): {what}"
                )],
            )
        }
    };
    if temp {
        let _ = fs::remove_dir_all(&out);
    }
    ScenarioResult {
        dir: dir.to_path_buf(),
        status,
        lines,
        elapsed: t0.elapsed(),
        output: (!temp).then_some(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xsw-check-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn finds_scenarios_recursively_and_sorted() {
        let root = tmp("find");
        for d in [
            "b/s2",
            "a/s1",
            "a/s1/in",
            "c/expected/s3",
            ".hidden/s4",
            "s0",
        ] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for d in ["b/s2", "a/s1", "c/expected/s3", ".hidden/s4", "s0"] {
            fs::write(root.join(d).join("scenario.toml"), "").expect("write");
        }
        // A nested scenario inside a scenario is not searched.
        fs::create_dir_all(root.join("a/s1/nested")).expect("mkdir");
        fs::write(root.join("a/s1/nested/scenario.toml"), "").expect("write");
        let found = find_scenarios(&[root.clone(), root.join("s0")]).expect("find");
        assert_eq!(
            found,
            vec![root.join("a/s1"), root.join("b/s2"), root.join("s0")]
        );
        let found = find_scenarios(&[root.join("b/s2/scenario.toml")]).expect("find");
        assert_eq!(found, vec![root.join("b/s2")]);
        assert!(matches!(
            find_scenarios(&[root.join("nope")]),
            Err(CheckError::NoSuchPath(_))
        ));
        fs::write(root.join("file"), "").expect("write");
        assert!(matches!(
            find_scenarios(&[root.join("file")]),
            Err(CheckError::NotADirectory(_))
        ));

        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_scenario_without_expected_fails_and_update_creates_it() {
        let root = tmp("update");
        fs::create_dir_all(root.join("in")).expect("mkdir");
        fs::write(
            root.join("scenario.toml"),
            "[[port]]\nname = \"p1\"\nofport = 1\n[[port]]\nname = \"p2\"\nofport = 2\n[check]\nunordered = [\"p2\"]\n",
        )
        .expect("write");
        let r = run_scenario(&root, &RunOptions::default());
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.lines,
            vec!["expected/ is missing (xsw test --update creates it from this run)"]
        );
        let r = run_scenario(
            &root,
            &RunOptions {
                update: true,
                keep: None,
            },
        );
        assert_eq!(r.status, Status::Updated);
        assert!(root.join("expected/p2.pcap").is_file());
        // A stray expected pcap fails, and --update removes it.
        fs::write(root.join("expected/p9.pcap"), "").expect("write");
        let r = run_scenario(&root, &RunOptions::default());
        assert_eq!(
            r.lines,
            vec!["expected/p9.pcap: the scenario has no such port (xsw test --update removes it)"]
        );
        let upd = RunOptions {
            update: true,
            keep: None,
        };
        assert_eq!(run_scenario(&root, &upd).status, Status::Updated);
        assert!(!root.join("expected/p9.pcap").exists());
        assert_eq!(
            run_scenario(&root, &RunOptions::default()).status,
            Status::Passed
        );
        // An unknown port in `unordered` is refused.
        fs::write(
            root.join("scenario.toml"),
            "[[port]]\nname = \"p1\"\nofport = 1\n[check]\nunordered = [\"p7\"]\n",
        )
        .expect("write");
        let r = run_scenario(&root, &RunOptions::default());
        assert_eq!(r.status, Status::Failed);
        assert!(
            r.lines[0].ends_with("[check] unordered: there is no port named `p7` (ports: p1)"),
            "{:?}",
            r.lines
        );
        let _ = fs::remove_dir_all(&root);
    }
}
