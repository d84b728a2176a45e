//! `cargo xtask demo`.

use anyhow::Result;

pub fn run(_keep: bool) -> Result<()> {
    anyhow::bail!("not yet")
}
