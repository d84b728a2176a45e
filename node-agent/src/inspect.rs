//! The inspector: what the kernel is redirecting right now, read from the pinned maps.
//!
//! It opens `/sys/fs/bpf/ambit/<node>/` from any process, while the agent runs or after it
//! stopped, and never writes. `cargo xtask inspect` runs this same code (`ambit-node inspect`).
//! The maps hold only what is enrolled; the agent's last published view (`run_dir`) adds the
//! node's other workloads and why each is left out (host network, opted out, …) or waiting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ambit_common::maps;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::kernel_maps::{pin_dir, KernelMaps};
use crate::records::monotonic_ns;
use crate::run_dir::{self, State, WorkloadsView};

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub pin_dir: PathBuf,
    /// Program name -> whether its link is pinned (attached).
    pub programs: BTreeMap<String, bool>,
    pub enrolled: Vec<EnrolledEntry>,
    pub records: Vec<RecordEntry>,
    pub pending: Vec<PendingEntry>,
    pub fastpath_sockets: usize,
    pub limits: BTreeMap<String, u32>,
    pub counters: BTreeMap<String, u64>,
    /// The agent's last published view of the node's workloads; `None` when no agent has
    /// published one in the run directory.
    pub workloads: Option<WorkloadsView>,
    /// Where that view is (or would be) read from.
    pub workloads_file: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct EnrolledEntry {
    pub netns_cookie: u64,
    pub workload: String,
}

/// A live redirected connection.
#[derive(Debug, Serialize)]
pub struct RecordEntry {
    pub client: SocketAddr,
    pub agent: SocketAddr,
    pub original_destination: SocketAddr,
    pub origin_netns_cookie: u64,
    /// The enrolled workload of that netns, if it is still enrolled.
    pub origin_workload: Option<String>,
}

/// A redirected connect whose handshake has not completed.
#[derive(Debug, Serialize)]
pub struct PendingEntry {
    pub socket_cookie: u64,
    pub original_destination: SocketAddr,
    pub origin_netns_cookie: u64,
    pub age_ms: u64,
}

/// Nodes with pins under `<bpffs>/ambit/`.
pub fn pinned_nodes(bpffs: &Path) -> Vec<String> {
    let mut nodes: Vec<String> = std::fs::read_dir(bpffs.join("ambit"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

pub fn inspect(bpffs: &Path, run_dir: &Path, node: &str) -> Result<NodeReport> {
    let dir = pin_dir(bpffs, node);
    let kernel = KernelMaps::open_pinned(&dir)
        .with_context(|| format!("inspecting node {node} (pins in {})", dir.display()))?;
    let programs = maps::programs::CGROUP_LINKED
        .iter()
        .map(|p| (p.to_string(), dir.join("links").join(p).exists()))
        .collect::<BTreeMap<_, _>>();

    let enrolled_map: BTreeMap<u64, String> = {
        let map = kernel
            .enrolled
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        map.iter()
            .filter_map(|r| r.ok())
            .map(|(cookie, e)| (cookie, e.name().to_string()))
            .collect()
    };
    let records = {
        let map = kernel
            .orig_dst
            .read()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        let mut records: Vec<RecordEntry> = map
            .iter()
            .filter_map(|r| r.ok())
            .map(|(key, orig)| RecordEntry {
                client: key.remote(),
                agent: key.local(),
                original_destination: orig.socket_addr(),
                origin_netns_cookie: orig.netns_cookie,
                origin_workload: enrolled_map.get(&orig.netns_cookie).cloned(),
            })
            .collect();
        records.sort_by_key(|r| (r.client, r.original_destination));
        records
    };
    let now = monotonic_ns();
    let pending = {
        let map = kernel
            .pending
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        map.iter()
            .filter_map(|r| r.ok())
            .map(|(cookie, orig)| PendingEntry {
                socket_cookie: cookie,
                original_destination: orig.socket_addr(),
                origin_netns_cookie: orig.netns_cookie,
                age_ms: now.saturating_sub(orig.created_ns) / 1_000_000,
            })
            .collect()
    };
    let fastpath_sockets = kernel
        .fastpath
        .lock()
        .map_err(|_| anyhow::anyhow!("lock poisoned"))?
        .keys()
        .filter(|k| k.is_ok())
        .count();
    let limits = kernel
        .limits()
        .into_iter()
        .map(|(n, max)| (n.to_string(), max))
        .collect();
    let counters = kernel
        .counter_totals()
        .into_iter()
        .map(|(c, v)| (c.name().to_string(), v))
        .collect();
    Ok(NodeReport {
        node: node.to_string(),
        pin_dir: dir,
        programs,
        enrolled: enrolled_map
            .into_iter()
            .map(|(netns_cookie, workload)| EnrolledEntry {
                netns_cookie,
                workload,
            })
            .collect(),
        records,
        pending,
        fastpath_sockets,
        limits,
        counters,
        workloads: run_dir::read(run_dir, node)?,
        workloads_file: run_dir::node_dir(run_dir, node).join(run_dir::WORKLOADS),
    })
}

/// The report in plain words, for a terminal.
pub fn render(r: &NodeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node {} (pins in {})", r.node, r.pin_dir.display());
    let attached: Vec<&str> = r
        .programs
        .iter()
        .map(|(p, on)| if *on { p.as_str() } else { "" })
        .filter(|p| !p.is_empty())
        .collect();
    let _ = writeln!(
        out,
        "  programs attached: {}",
        if attached.is_empty() {
            "none".to_string()
        } else {
            attached.join(", ")
        }
    );
    let _ = writeln!(out, "  enrolled network namespaces: {}", r.enrolled.len());
    for e in &r.enrolled {
        let _ = writeln!(out, "    netns {:>20}  {}", e.netns_cookie, e.workload);
    }
    let _ = writeln!(
        out,
        "  redirected connections: {} live (limit {}), {} connecting",
        r.records.len(),
        r.limits.get(maps::ORIG_DST).copied().unwrap_or(0),
        r.pending.len()
    );
    for rec in &r.records {
        let who = rec
            .origin_workload
            .clone()
            .unwrap_or_else(|| format!("netns {}", rec.origin_netns_cookie));
        let _ = writeln!(
            out,
            "    {:<22} -> {:<22} via agent {}  from {}",
            rec.client, rec.original_destination, rec.agent, who
        );
    }
    for p in &r.pending {
        let _ = writeln!(
            out,
            "    connecting to {} from netns {} ({} ms)",
            p.original_destination, p.origin_netns_cookie, p.age_ms
        );
    }
    let _ = writeln!(
        out,
        "  fast-path sockets: {} (limit {})",
        r.fastpath_sockets,
        r.limits.get(maps::SOCK_FASTPATH).copied().unwrap_or(0)
    );
    let _ = writeln!(out, "  counters:");
    for (name, value) in &r.counters {
        let _ = writeln!(out, "    {name:<24} {value}");
    }
    render_workloads(&mut out, r);
    out
}

/// The agent's view: every workload on the node, enrolled or not, and why.
fn render_workloads(out: &mut String, r: &NodeReport) {
    let Some(view) = &r.workloads else {
        let _ = writeln!(
            out,
            "  workloads: no view published by an agent ({} missing)",
            r.workloads_file.display()
        );
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let running = Path::new("/proc").join(view.agent_pid.to_string()).exists();
    let _ = writeln!(
        out,
        "  workloads on this node: {} (agent's view {} s old{})",
        view.workloads.len(),
        now.saturating_sub(view.written_unix_secs),
        if running {
            ""
        } else {
            "; that agent is not running"
        }
    );
    if let Some(rp) = &view.return_path {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "  client address kept for {} pods (replies marked {} -> table {}): {}",
            rp.kept_pods.len(),
            rp.mark,
            rp.table,
            rp.kept_pods
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(out, "    steer_replies on: {}", list(&rp.reply_interfaces));
        let _ = writeln!(out, "    capture_hbone on: {}", list(&rp.hbone_interfaces));
    }
    for w in &view.workloads {
        // The enrollment decision's own words start with "not enrolled".
        let line = match (w.state, w.netns_cookie) {
            (State::Enrolled, Some(cookie)) => format!("enrolled, netns {cookie}: {}", w.detail),
            (State::Enrolled, None) => format!("enrolled: {}", w.detail),
            (State::Waiting, _) => format!("waiting: {}", w.detail),
            (State::NotEnrolled, _) => w.detail.clone(),
        };
        let _ = writeln!(out, "    {:<32} {line}", w.workload);
    }
}
