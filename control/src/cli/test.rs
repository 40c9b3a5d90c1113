//! `xsw test`: replays scenarios and compares their outputs with
//! `expected/`, like a test runner.

use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use xsw_datapath::check::{self, junit, RunOptions, ScenarioResult, Status};

/// `xsw test`'s help: what a scenario holds, what is compared, how to
/// update.
const LONG_ABOUT: &str = "\
Replay scenarios and compare what every port sends with the scenario's expected/ outputs, \
like a test runner.

A scenario is a directory holding scenario.toml (its ports; see `xsw replay --help`), \
optionally flows.txt (rules) and in/<port>.pcap (what each port receives), and expected/: \
<port>.pcap for every port and summary.json, as `xsw replay` writes them. Every PATH is searched \
recursively for scenario directories (expected/ and in/ directories and hidden ones are not \
searched); a PATH that is itself a scenario counts. Without PATH, `pcaps` is searched.

Each scenario is replayed into a fresh temporary directory, then every port's frames are compared \
with expected/<port>.pcap, in order, and summary.json with expected/summary.json as JSON (counters \
and drops by reason of every port, rule counters). A failure says where the outputs part: the \
port, the frame number and the first differing field by name (`p2 frame 3: vlan_vid 10, expected \
20`), frames more or fewer than expected with a one-line summary of the first, and the summary \
values that differ by path (`ports[p2].drops.no_route: 3, expected 2`). Times are seconds since \
the scenario's first input frame.

scenario.toml's [check] table adjusts the comparison: `unordered = true` (or a list of port \
names) compares those ports' frames as a multiset of (time, bytes), for flooding whose order Open \
vSwitch leaves unspecified; `tolerance = { \"ports\" = 0.05 }` lets numbers in summary.json under \
that path prefix differ by up to 5%.

After a deliberate change, `xsw test --update` rewrites expected/ of the scenarios that differ \
(and says what differed); review the diff (e.g. `git diff --stat`) and commit it.

Exit status: 0 every scenario passed (or was updated); 1 a scenario failed; 2 usage error, or no \
scenario found.";

const AFTER_HELP: &str = "\
What a run prints (a failure's lines say what differs, indented under it):
  ok   pcaps/learning (0.01 s)
  FAIL pcaps/vlan-access-trunk (0.02 s)
         b10: 1 frame more than expected, first (frame 1): 0.000000 02:00:00:00:00:01 > ...
         trunk frame 2: vlan_vid 20, expected 30
         ports[c20].tx_packets: 2, expected 4

  1 passed, 1 failed

Examples:
  xsw test                              # every scenario under pcaps/
  xsw test my-scenarios -j 4 --junit report.xml
  xsw test pcaps --filter vlan          # the scenarios whose path contains 'vlan'
  xsw test pcaps/learning --keep /tmp/out   # keep the outputs to look at
  xsw test pcaps/learning --update      # accept the new behaviour";

/// `xsw test`: replays scenarios and compares their outputs with
/// `expected/` (the help text is [`LONG_ABOUT`]).
#[derive(Args, Debug)]
#[command(
    about = "Replay scenarios and compare every port's output with expected/, like a test runner",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct TestArgs {
    /// Scenario directories, or directories to search for them [default: pcaps].
    paths: Vec<PathBuf>,
    /// Rewrite expected/ of every scenario whose outputs differ.
    #[arg(long)]
    update: bool,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run N scenarios at a time (the output stays in scenario order).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Only the scenarios whose path contains NAME.
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
    /// Keep every scenario's outputs, in DIR/SCENARIO_PATH (the path as found).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Print the results as JSON instead of text: `passed`, `failed`, `updated`, and
    /// `scenarios`, each with `scenario`, `status`, `seconds`, `differences`, `output`.
    #[arg(long)]
    json: bool,
}

/// Where a scenario's outputs are kept under `keep`: its path without
/// root, `.` and `..` parts.
fn keep_dir(keep: &Path, scenario: &Path) -> PathBuf {
    let mut d = keep.to_path_buf();
    for c in scenario.components() {
        if let Component::Normal(n) = c {
            d.push(n);
        }
    }
    d
}

/// Prints `s`; a closed stdout (`xsw test | head`) is no error: the
/// exit status still tells the outcome.
fn say(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes()).and_then(|()| o.flush());
}

/// The text lines of one result.
fn result_text(r: &ScenarioResult) -> String {
    let mut s = format!(
        "{:<4} {} ({:.2} s)\n",
        r.status.label(),
        r.dir.display(),
        r.elapsed.as_secs_f64()
    );
    for l in &r.lines {
        s.push_str("       ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn result_json(r: &ScenarioResult) -> serde_json::Value {
    let status = match r.status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Updated => "updated",
    };
    json!({
        "scenario": r.dir.display().to_string(),
        "status": status,
        "seconds": r.elapsed.as_secs_f64(),
        "differences": r.lines,
        "output": r.output.as_ref().map(|p| p.display().to_string()),
    })
}

/// Runs every scenario with `jobs` threads; `each` sees the results in
/// scenario order, as soon as all before it are done.
fn run_all(
    dirs: &[PathBuf],
    jobs: usize,
    opts: impl Fn(&Path) -> RunOptions + Sync,
    mut each: impl FnMut(&ScenarioResult),
) -> Vec<ScenarioResult> {
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<ScenarioResult>> = vec![None; dirs.len()];
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..jobs.min(dirs.len()) {
            let tx = tx.clone();
            let (next, opts) = (&next, &opts);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = dirs.get(i) else { break };
                let r = check::run_scenario(d, &opts(d));
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut shown = 0;
        for (i, r) in rx {
            slots[i] = Some(r);
            while let Some(Some(r)) = slots.get(shown) {
                each(r);
                shown += 1;
            }
        }
    });
    slots.into_iter().flatten().collect()
}

/// Runs `xsw test`.
pub fn run(a: TestArgs) -> Result<ExitCode> {
    let paths = if a.paths.is_empty() {
        vec![PathBuf::from("pcaps")]
    } else {
        a.paths.clone()
    };
    let looked = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut dirs = match check::find_scenarios(&paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("xsw test: {e}");
            if a.paths.is_empty() {
                eprintln!("(without PATH, xsw test searches `pcaps` in the current directory)");
            }
            return Ok(ExitCode::from(2));
        }
    };
    if dirs.is_empty() {
        eprintln!("xsw test: no scenario (a directory holding scenario.toml) under {looked}");
        return Ok(ExitCode::from(2));
    }
    if let Some(f) = &a.filter {
        dirs.retain(|d| d.display().to_string().contains(f.as_str()));
        if dirs.is_empty() {
            eprintln!("xsw test: no scenario under {looked} has `{f}` in its path");
            return Ok(ExitCode::from(2));
        }
    }
    let opts = |d: &Path| RunOptions {
        update: a.update,
        keep: a.keep.as_deref().map(|k| keep_dir(k, d)),
    };
    let json = a.json;
    let results = run_all(&dirs, usize::from(a.jobs), opts, |r| {
        if !json {
            say(&result_text(r));
        }
    });
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let (passed, failed, updated) = (
        count(Status::Passed),
        count(Status::Failed),
        count(Status::Updated),
    );
    if json {
        let doc = json!({
            "passed": passed,
            "failed": failed,
            "updated": updated,
            "scenarios": results.iter().map(result_json).collect::<Vec<_>>(),
        });
        say(&(serde_json::to_string_pretty(&doc)? + "\n"));
    } else if a.update {
        say(&format!(
            "\n{passed} passed, {failed} failed, {updated} updated\n"
        ));
    } else {
        say(&format!("\n{passed} passed, {failed} failed\n"));
    }
    if let Some(j) = &a.junit {
        fs::write(j, junit::to_xml(&results))
            .with_context(|| format!("--junit {}", j.display()))?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
