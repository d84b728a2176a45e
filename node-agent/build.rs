//! Builds the kernel programs and hands the object to `include_bytes_aligned!`.

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("node-agent sits in the workspace")
        .to_path_buf();
    for watched in [
        "ebpf/src",
        "ebpf/Cargo.toml",
        "ebpf/Cargo.lock",
        "common/src",
        "common/Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-changed=../xtask/src/ebpf_build.rs");
    let object = match ebpf_build::build(&workspace) {
        Ok(object) => object,
        Err(e) => {
            // A build script's panic stops the build: no agent without its programs.
            panic!("ambit-node needs its eBPF programs: {e}");
        }
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("ambit.bpf.o");
    std::fs::copy(&object, &out).expect("copying the eBPF object into OUT_DIR");
}
