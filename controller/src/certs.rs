//! The sandbox's certificate chores: creating the CA and issuing node certificates.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ambit_mesh::identity::{Ca, NodeId, NODE_CERT, NODE_KEY, TRUST_BUNDLE};
use anyhow::{Context, Result};

pub fn init_ca(dir: &Path) -> Result<()> {
    Ca::init(dir).with_context(|| format!("creating a CA in {}", dir.display()))?;
    println!("created a root and an intermediate in {}", dir.display());
    Ok(())
}

pub fn issue_node_cert(ca_dir: &Path, trust_domain: &str, node: &str, out: &Path) -> Result<()> {
    let ca = Ca::load(ca_dir, trust_domain)?;
    let node = NodeId::new(trust_domain, node)?;
    let (chain, key) = ca.issue_node_cert(&node)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write(&out.join(NODE_CERT), &chain, 0o644)?;
    write(&out.join(NODE_KEY), &key, 0o600)?;
    write(&out.join(TRUST_BUNDLE), ca.root_pem(), 0o644)?;
    println!("issued {node} into {}", out.display());
    Ok(())
}

/// Writes a file created with `mode`, so that a key is never readable by others.
fn write(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
