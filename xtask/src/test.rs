//! `cargo xtask test`: unit tests of every crate and the end-to-end tests on the sandbox.

use anyhow::Result;

use crate::build;
use crate::setup;
use crate::shell::{self, cargo};

pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    build::release_binaries()?;
    let mut cmd = cargo();
    // Every test binary runs even after a failure, so one report shows all of them.
    cmd.args(["test", "--release", "--workspace", "--no-fail-fast"])
        .env("AMBIT_BIN_DIR", build::bin_dir());
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    shell::run(&mut cmd)
}
