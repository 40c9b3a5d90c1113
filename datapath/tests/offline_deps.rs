//! The offline crate (`xsw-datapath`: pipeline, flow model, replay, trace)
//! builds, and tests, without a C toolchain: nothing `cargo tree -p
//! xsw-datapath` lists (all edge kinds: normal, build and dev
//! dependencies) is libbpf, libxdp, an AF_XDP socket crate or xsw-ebpf.
//! Those belong to the live crate, `xsw-live`. The `xsw` command, built
//! without the control crate's `daemon` feature, needs none of them either.
//!
//! The test lives in this crate, not in `xsw-live`, so that running it does
//! not itself need clang and libbpf.

use std::process::Command;

fn tree(package: &str) -> String {
    tree_with(package, &[])
}

/// `cargo tree -p package EXTRA...`, one crate per line.
fn tree_with(package: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        // Cargo's default edges: normal, build and dev dependencies. Only
        // the output's shape is changed (one crate per line, no prefix).
        .args([
            "tree",
            "--offline",
            "--package",
            package,
            "--prefix",
            "none",
        ])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// The crates in `tree` output whose name starts with one of `prefixes`.
fn privileged<'a>(tree: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    tree.lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect()
}

const PRIVILEGED: [&str; 5] = ["libbpf", "libxdp", "xsk", "xsw-ebpf", "xsw-live"];

#[test]
fn the_offline_crate_has_no_bpf_or_xdp_dependency() {
    let t = tree("xsw-datapath");
    assert!(t.lines().any(|l| l.starts_with("xsw-datapath ")), "{t}");
    let bad = privileged(&t, &PRIVILEGED);
    assert!(
        bad.is_empty(),
        "xsw-datapath must build without a C toolchain, but depends on: {bad:?}"
    );
}

#[test]
fn the_check_sees_the_live_crates_dependencies() {
    // The same check on the live crate finds them: the test is not vacuous.
    let t = tree("xsw-live");
    let found = privileged(&t, &PRIVILEGED);
    for want in ["libbpf-rs", "xsk-rs", "xsw-ebpf"] {
        assert!(
            found.iter().any(|l| l.starts_with(want)),
            "{want} not in {found:?}"
        );
    }
}

#[test]
fn the_xsw_command_builds_without_the_live_switch() {
    // `xsw` (replay, trace, flow check, and the commands that talk to a
    // running xswd) needs no BPF toolchain once the daemon feature is off;
    // with the default features the daemon's dependencies are there.
    let t = tree_with("xsw-control", &["--no-default-features"]);
    assert!(t.lines().any(|l| l.starts_with("xsw-control ")), "{t}");
    let bad = privileged(&t, &PRIVILEGED);
    assert!(
        bad.is_empty(),
        "xsw-control without its daemon feature depends on: {bad:?}"
    );
    let full = tree("xsw-control");
    let found = privileged(&full, &PRIVILEGED);
    for want in ["libbpf-rs", "xsk-rs", "xsw-ebpf", "xsw-live"] {
        assert!(
            found.iter().any(|l| l.starts_with(want)),
            "{want} not in {found:?}"
        );
    }
}
