//! `cargo xtask gen-crds`: writes Ambit's CRDs, generated from `mesh/src/api`, into
//! `deploy/crds/` and the Helm chart's `crds/`.
//!
//! The generator lives in `ambit-controller crds` so that xtask need not compile the Kubernetes
//! types on every call; `mesh/tests/crds.rs` fails when the committed files are stale.

use anyhow::{Context, Result};

use crate::shell::{self, cargo, workspace};

/// Where the CRDs are written, relative to the workspace (the test checks the same list).
pub const CRD_DIRS: &[&str] = &["deploy/crds", "deploy/helm/ambit/crds"];

pub fn run() -> Result<()> {
    let root = workspace();
    for dir in CRD_DIRS {
        let dir = root.join(dir);
        // Start empty, so that a CRD whose type was removed disappears too.
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
    }
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "ambit-controller", "--", "crds"]);
    for dir in CRD_DIRS {
        cmd.arg("--out-dir").arg(root.join(dir));
    }
    shell::run(&mut cmd)
}
