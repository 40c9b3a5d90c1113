//! The offline crate (`xsw-datapath`: pipeline, flow model, replay, trace)
//! builds without a C toolchain: nothing in its normal or build
//! dependencies is libbpf, libxdp or an AF_XDP socket crate. Those belong
//! to this crate.

use std::process::Command;

fn tree(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--package",
            package,
            "--edges",
            "normal,build",
            "--prefix",
            "none",
        ])
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

const PRIVILEGED: [&str; 4] = ["libbpf", "libxdp", "xsk", "xsw-ebpf"];

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
    // The same check on this crate finds them: the test is not vacuous.
    let t = tree("xsw-live");
    let found = privileged(&t, &PRIVILEGED);
    for want in ["libbpf-rs", "xsk-rs", "xsw-ebpf"] {
        assert!(
            found.iter().any(|l| l.starts_with(want)),
            "{want} not in {found:?}"
        );
    }
}
