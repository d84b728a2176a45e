//! `cargo xtask gen-manifests`: renders `deploy/manifests/base` from the Helm chart.
//!
//! The chart is the one source of truth (see deploy/README.md); the overlays are hand-written
//! patches that `tests/tests/deploy.rs` checks against the chart rendered with their values.

use anyhow::{Context, Result};

use ambit_e2e::deploy;

pub fn run() -> Result<()> {
    // The base includes the CRDs: regenerate them first so the two cannot disagree.
    crate::gen_crds::run()?;
    let files = deploy::base_files()?;
    let base = deploy::manifests_dir().join("base");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    for entry in std::fs::read_dir(&base).with_context(|| format!("{}", base.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| !files.contains_key(&n)) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for (name, text) in &files {
        let path = base.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
