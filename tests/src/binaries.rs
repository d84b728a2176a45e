//! Finding the workspace's built binaries from tests, xtask and benchmarks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Overrides where binaries are looked up first.
pub const BIN_DIR_ENV: &str = "AMBIT_BIN_DIR";

/// The path of binary `name`: `$AMBIT_BIN_DIR/<name>`, then `target/release/<name>`, then
/// `target/debug/<name>` (the target dir is `$CARGO_TARGET_DIR` or the workspace's `target/`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let candidates = candidates(name);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "binary {name} not found (looked at {}); build it with `cargo xtask test`",
        looked.join(", ")
    )
}

fn candidates(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        out.push(PathBuf::from(dir).join(name));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    for profile in ["release", "debug"] {
        out.push(target.join(profile).join(name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_the_build_command() {
        let err = binary("ambit-no-such-binary").unwrap_err().to_string();
        assert!(err.contains("cargo xtask test"), "{err}");
        assert!(err.contains("debug/ambit-no-such-binary"), "{err}");
    }
}
