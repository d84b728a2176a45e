//! `cargo xtask bench`.

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum Which {
    Redirect {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(_which: Which) -> Result<()> {
    anyhow::bail!("not yet")
}
