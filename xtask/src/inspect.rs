//! `cargo xtask inspect`: runs the agent binary's inspector (the same code as `ambit-node inspect`).

use std::process::Command;

use anyhow::Result;

use crate::build;
use crate::setup;
use crate::shell;

pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    let agent = build::bin_dir().join("ambit-node");
    if !agent.exists() {
        build::release_binaries()?;
    }
    shell::run(Command::new(agent).arg("inspect").args(args))
}
