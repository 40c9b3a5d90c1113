//! Open vSwitch is the reference: every scenario that Open vSwitch can run
//! (scenario.toml without `[check] ovs = false`) is run through a private
//! OVS 3.1 instance (userspace dummy datapath, tests/ovs/oracle.py) and what
//! OVS sends on each port must equal, frame for frame, the scenario's
//! expected/ output, which the replay test holds xsw to.
//!
//! Needs `ovs-vswitchd` (Debian's openvswitch-switch; tests/setup-debian.sh
//! installs it) and Python 3.11. Set XSW_SKIP_OVS=1 to skip on a machine
//! without them; CI always runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> &'static str {
    // Debian's interpreter; any python3 >= 3.11 works.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn open_vswitch_sends_what_the_expected_outputs_say() {
    if std::env::var_os("XSW_SKIP_OVS").is_some() {
        eprintln!("XSW_SKIP_OVS set: not comparing with Open vSwitch");
        return;
    }
    let have_ovs = Command::new("ovs-vswitchd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_ovs,
        "ovs-vswitchd not found: install openvswitch-switch (tests/setup-debian.sh), or set XSW_SKIP_OVS=1 to skip this check"
    );
    let oracle = repo().join("tests/ovs/oracle.py");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("pcaps"))
        .expect("pcaps/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.toml").is_file())
        .collect();
    dirs.sort();
    let tmp = std::env::temp_dir().join(format!("xsw-ovs-agree-{}", std::process::id()));
    let (mut compared, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let out = tmp.join(&name);
        let run = Command::new(python())
            .arg(&oracle)
            .arg(dir)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run oracle");
        if !run.status.success() {
            failures.push(format!(
                "{name}: oracle failed:\n{}",
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        if out.join("SKIPPED").exists() {
            skipped.push(name);
            continue;
        }
        let cmp = Command::new(python())
            .arg(&oracle)
            .arg("--compare")
            .arg(dir.join("expected"))
            .arg(&out)
            .output()
            .expect("run compare");
        compared += 1;
        if !cmp.status.success() {
            failures.push(format!(
                "{name}: xsw's expected output differs from Open vSwitch's:\n{}",
                String::from_utf8_lossy(&cmp.stdout)
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("compared {compared} scenarios with Open vSwitch; not comparable: {skipped:?}");
    assert!(compared >= 12, "only {compared} scenarios were compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
