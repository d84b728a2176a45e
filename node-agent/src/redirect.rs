//! Loads the kernel programs, reuses or creates their pinned maps, and attaches them to the
//! node's pod cgroup subtree with pinned bpf_links.
//!
//! Links are pinned so that the redirect outlives an agent restart: while the agent is down,
//! enrolled pods' connects still go to 15001 and fail, rather than silently bypassing the mesh.
//! A restart attaches the new programs first and then detaches the old links, so there is no
//! moment without a redirect. A cgroup bpf_link is always multi-attach (the kernel takes no
//! flags for it, hence `CgroupAttachMode::Single` = flags 0), so a CNI's own programs on the
//! same cgroups keep running beside ours.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ambit_common::maps::programs::{
    FORWARD_MSG, RECORD_ESTABLISHED, REDIRECT_CONNECT4, REDIRECT_CONNECT6,
};
use ambit_common::{IpWords, RedirectConfig};
use anyhow::{anyhow, Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SkMsg, SockOps};
use aya::{Ebpf, EbpfLoader};

use crate::kernel_maps::KernelMaps;

/// The compiled kernel programs, built by build.rs from `ebpf/`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ambit.bpf.o"));

/// What to load and where to attach it.
#[derive(Debug, Clone)]
pub struct RedirectSpec {
    /// `/sys/fs/bpf/ambit/<node>`.
    pub pin_dir: PathBuf,
    /// The node's pod cgroup subtree (must also contain the agent, for sockops to see both ends).
    pub cgroup: PathBuf,
    pub agent_ip4: Option<Ipv4Addr>,
    pub agent_ip6: Option<Ipv6Addr>,
    pub agent_netns_cookie: u64,
    pub outbound_port: u16,
    pub fastpath: bool,
    /// aya-log level for the kernel programs (0 = off … 4 = debug).
    pub kernel_log_level: u8,
    /// Bound on redirected connections (live and connecting); None keeps the built-in size.
    /// Applies when the maps are created; pinned maps keep the size they were created with.
    pub max_connections: Option<u32>,
    /// The mark `steer_replies` puts on pods' replies to transparent deliveries; 0 when the
    /// agent delivers from its own address.
    pub reply_mark: u32,
    /// The HBONE port `capture_hbone` steers to the agent; 0 captures nothing.
    pub hbone_port: u16,
}

/// The loaded programs. Dropping it leaves the pinned links and maps in place.
pub struct Redirect {
    pub ebpf: Ebpf,
    pub maps: KernelMaps,
}

pub fn load(spec: &RedirectSpec) -> Result<Redirect> {
    std::fs::create_dir_all(spec.pin_dir.join("links")).with_context(|| {
        format!(
            "creating {} (is bpffs mounted? `mount -t bpf bpf /sys/fs/bpf`)",
            spec.pin_dir.display()
        )
    })?;
    let mut loader = EbpfLoader::new();
    if let Some(max) = spec.max_connections {
        loader
            .map_max_entries(ambit_common::maps::ORIG_DST, max)
            .map_max_entries(ambit_common::maps::PENDING_ORIG_DST, max);
    }
    let mut ebpf = loader
        .default_map_pin_directory(&spec.pin_dir)
        .override_global("AYA_LOG_LEVEL", &spec.kernel_log_level, true)
        .override_global("REPLY_MARK", &spec.reply_mark, true)
        .override_global("HBONE_PORT", &spec.hbone_port, true)
        .load(PROGRAMS)
        .map_err(|e| explain_load_error(e, &spec.pin_dir))?;
    let cgroup = File::open(&spec.cgroup).with_context(|| {
        format!(
            "opening cgroup {} (a cgroup v2 directory)",
            spec.cgroup.display()
        )
    })?;

    for (name, _) in [(REDIRECT_CONNECT4, ()), (REDIRECT_CONNECT6, ())] {
        let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
        prog.load().map_err(|e| program_error(name, e))?;
        let id = prog
            .attach(&cgroup, CgroupAttachMode::Single)
            .map_err(|e| program_error(name, e))?;
        let link: FdLink = prog.take_link(id)?.try_into()?;
        replace_pinned_link(&spec.pin_dir, name, link)?;
    }
    {
        let prog: &mut SockOps = program(&mut ebpf, RECORD_ESTABLISHED)?;
        prog.load()
            .map_err(|e| program_error(RECORD_ESTABLISHED, e))?;
        let id = prog
            .attach(&cgroup, CgroupAttachMode::Single)
            .map_err(|e| program_error(RECORD_ESTABLISHED, e))?;
        let link: FdLink = prog.take_link(id)?.try_into()?;
        replace_pinned_link(&spec.pin_dir, RECORD_ESTABLISHED, link)?;
    }

    let maps = KernelMaps::from_ebpf(&mut ebpf)?;
    {
        let fastpath = maps
            .fastpath
            .lock()
            .map_err(|_| anyhow!("fastpath lock poisoned"))?;
        let prog: &mut SkMsg = program(&mut ebpf, FORWARD_MSG)?;
        prog.load().map_err(|e| program_error(FORWARD_MSG, e))?;
        // Replaces the verdict program of a previous agent on the same pinned map.
        let id = prog
            .attach(fastpath.fd())
            .map_err(|e| program_error(FORWARD_MSG, e))?;
        // The attachment belongs to the pinned map, not to this process: keep it when the
        // agent exits, like the pinned cgroup links.
        std::mem::forget(prog.take_link(id)?);
    }

    let config = RedirectConfig {
        agent_netns_cookie: spec.agent_netns_cookie,
        agent_ip6: spec
            .agent_ip6
            .map(|ip| IpWords::from(std::net::IpAddr::V6(ip)))
            .unwrap_or_default(),
        agent_ip4: spec
            .agent_ip4
            .map(|ip| u32::from_ne_bytes(ip.octets()))
            .unwrap_or(0),
        outbound_port: spec.outbound_port,
        flags: if spec.fastpath {
            RedirectConfig::FLAG_FASTPATH
        } else {
            0
        },
    };
    maps.config
        .lock()
        .map_err(|_| anyhow!("config lock poisoned"))?
        .set(0, config, 0)
        .context("writing REDIRECT_CONFIG")?;
    Ok(Redirect { ebpf, maps })
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} is missing from the eBPF object"))?;
    prog.try_into()
        .with_context(|| format!("program {name} has an unexpected type"))
}

/// Pins `link` at `<pin_dir>/links/<name>`, detaching the link a previous agent pinned there
/// only after the new one is attached.
fn replace_pinned_link(pin_dir: &Path, name: &str, link: FdLink) -> Result<()> {
    let path = pin_dir.join("links").join(name);
    // bpffs refuses names with a dot.
    let staged = pin_dir.join("links").join(format!("{name}_new"));
    let _ = std::fs::remove_file(&staged);
    let new = link
        .pin(&staged)
        .with_context(|| format!("pinning link {}", staged.display()))?;
    if path.exists() {
        match PinnedLink::from_pin(&path) {
            // Unpinning drops the last reference: the old program detaches.
            Ok(old) => drop(old.unpin()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "removing unreadable link pin")
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    std::fs::rename(&staged, &path)
        .with_context(|| format!("renaming link pin to {}", path.display()))?;
    drop(new);
    Ok(())
}

/// Removes the node's programs and maps: detaches every pinned link and deletes the pins.
pub fn unload(pin_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let links = pin_dir.join("links");
    if let Ok(entries) = std::fs::read_dir(&links) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(link) = PinnedLink::from_pin(&path) {
                drop(link.unpin());
            }
            let _ = std::fs::remove_file(&path);
            removed.push(path);
        }
    }
    let _ = std::fs::remove_dir(&links);
    if let Ok(entries) = std::fs::read_dir(pin_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed.push(path);
        }
    }
    if pin_dir.exists() {
        std::fs::remove_dir(pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    }
    Ok(removed)
}

fn explain_load_error(e: aya::EbpfError, pin_dir: &Path) -> anyhow::Error {
    let text = e.to_string();
    let hint = if text.contains("Operation not permitted") || text.contains("EPERM") {
        "loading eBPF needs CAP_BPF and CAP_SYS_ADMIN (and CAP_NET_ADMIN); run `ambit-node preflight`"
    } else if text.contains("pin") {
        "a pinned map could not be reused; if it was pinned by another Ambit version, remove the pins with `ambit-node unload`"
    } else if text.contains("BTF") || text.contains("btf") {
        "the kernel needs BTF support (CONFIG_DEBUG_INFO_BTF) for socket storage maps"
    } else {
        "run `ambit-node preflight` to see what the kernel lacks"
    };
    anyhow!(e).context(format!(
        "loading Ambit's eBPF programs (pins in {}): {hint}",
        pin_dir.display()
    ))
}

fn program_error(name: &str, e: aya::programs::ProgramError) -> anyhow::Error {
    let needs = match name {
        REDIRECT_CONNECT4 | REDIRECT_CONNECT6 => {
            "cgroup/connect hooks (CONFIG_CGROUP_BPF, cgroup v2)"
        }
        RECORD_ESTABLISHED => "sockops with bpf_get_socket_cookie (Linux ≥ 5.15)",
        _ => "sk_msg on SOCKHASH with socket storage (CONFIG_BPF_STREAM_PARSER, Linux ≥ 5.15)",
    };
    anyhow!(e).context(format!(
        "loading or attaching {name}: needs {needs}; run `ambit-node preflight`"
    ))
}
