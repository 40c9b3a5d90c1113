//! Builds the XDP classifier with libbpf-cargo's SkeletonBuilder. The
//! skeleton and the object file land in OUT_DIR; neither is committed.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/xsw.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = match arch.as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    if let Err(e) = SkeletonBuilder::new()
        .source(SRC)
        .obj(out.join("xsw.bpf.o"))
        .clang_args([
            "-O2".to_string(),
            "-g".to_string(),
            format!("-I/usr/include/{multiarch}"),
        ])
        .build_and_generate(out.join("xsw.skel.rs"))
    {
        panic!(
            "building {SRC} failed: {e:#}\n\
             (the XDP program needs clang and the libbpf/kernel headers: \
             apt-get install clang libbpf-dev linux-libc-dev)"
        );
    }
    println!("cargo:rerun-if-changed={SRC}");
}
