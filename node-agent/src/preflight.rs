//! Checks that this node can run the redirect, and says exactly what is missing and how to fix
//! it. `run` performs the same checks and refuses to start with the same message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use aya::maps::MapType;
use aya::programs::ProgramType;

/// Oldest kernel with everything the programs use (netns cookies in sockops and sk_msg,
/// SO_NETNS_COOKIE, socket storage in sk_msg, bpf_link for cgroups).
pub const MIN_KERNEL: (u32, u32) = (5, 15);

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// How to fix it, when it failed.
    pub fix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PreflightSpec {
    pub bpffs: PathBuf,
    /// The cgroup the programs attach to, when known.
    pub cgroup: Option<PathBuf>,
}

pub fn run(spec: &PreflightSpec) -> Vec<Check> {
    let mut checks = vec![
        kernel_version(),
        capabilities(),
        bpffs(&spec.bpffs),
        cgroup_v2(spec.cgroup.as_deref()),
        btf(),
    ];
    // Feature probes need the capabilities; without them they would only repeat that failure.
    if checks[1].ok {
        checks.extend(program_types());
        checks.extend(map_types());
    }
    checks
}

pub fn failures(checks: &[Check]) -> Vec<&Check> {
    checks.iter().filter(|c| !c.ok).collect()
}

pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let _ = writeln!(
            out,
            "  {:<4}  {:<28} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "        {:<28} fix: {fix}", "");
        }
    }
    out
}

fn check(name: &'static str, ok: bool, detail: String, fix: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail,
        fix: (!ok).then(|| fix.into()),
    }
}

fn kernel_version() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    check(
        "kernel version",
        version >= MIN_KERNEL,
        format!("Linux {release} (need ≥ {}.{})", MIN_KERNEL.0, MIN_KERNEL.1),
        format!(
            "run on a node with Linux ≥ {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        ),
    )
}

/// Effective capabilities from /proc/self/status.
fn capabilities() -> Check {
    const NEEDED: [(u32, &str); 4] = [
        (39, "CAP_BPF"),
        (12, "CAP_NET_ADMIN"),
        (21, "CAP_SYS_ADMIN"),
        (19, "CAP_SYS_PTRACE"),
    ];
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| eff & (1u64 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    check(
        "capabilities",
        missing.is_empty(),
        if missing.is_empty() {
            "CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN CAP_SYS_PTRACE".to_string()
        } else {
            format!("missing {}", missing.join(" "))
        },
        "run as root, or grant these capabilities to the DaemonSet container (securityContext.capabilities.add)",
    )
}

fn fs_magic(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: zeroed statfs is a valid out-parameter; c is a valid NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type)
}

fn bpffs(path: &Path) -> Check {
    let ok = fs_magic(path) == Some(BPF_FS_MAGIC);
    check(
        "bpffs",
        ok,
        if ok {
            format!("mounted at {}", path.display())
        } else {
            format!("{} is not a bpf filesystem", path.display())
        },
        format!(
            "mount -t bpf bpf {} (in Kubernetes: a hostPath mount of /sys/fs/bpf)",
            path.display()
        ),
    )
}

/// The cgroup v2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

fn cgroup_v2(cgroup: Option<&Path>) -> Check {
    let Some(mount) = cgroup2_mount() else {
        return check(
            "cgroup v2",
            false,
            "no cgroup2 filesystem is mounted".to_string(),
            "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or mount it: mount -t cgroup2 none /sys/fs/cgroup/unified",
        );
    };
    match cgroup {
        Some(dir) if fs_magic(dir) != Some(CGROUP2_SUPER_MAGIC) => check(
            "cgroup v2",
            false,
            format!(
                "{} is not a cgroup v2 directory (cgroup2 is mounted at {})",
                dir.display(),
                mount.display()
            ),
            format!(
                "pass --cgroup with the pods' cgroup under {}",
                mount.display()
            ),
        ),
        Some(dir) => check(
            "cgroup v2",
            true,
            format!("attach point {}", dir.display()),
            "",
        ),
        None => check(
            "cgroup v2",
            true,
            format!("mounted at {}", mount.display()),
            "",
        ),
    }
}

fn btf() -> Check {
    let ok = Path::new("/sys/kernel/btf/vmlinux").exists();
    check(
        "kernel BTF",
        ok,
        if ok {
            "/sys/kernel/btf/vmlinux present".to_string()
        } else {
            "no /sys/kernel/btf/vmlinux".to_string()
        },
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (socket storage maps need BTF)",
    )
}

fn program_types() -> Vec<Check> {
    [
        (
            ProgramType::CgroupSockAddr,
            "program cgroup/connect",
            "CONFIG_CGROUP_BPF=y",
        ),
        (
            ProgramType::SockOps,
            "program sockops",
            "CONFIG_CGROUP_BPF=y",
        ),
        (
            ProgramType::SkMsg,
            "program sk_msg",
            "CONFIG_BPF_STREAM_PARSER=y",
        ),
    ]
    .into_iter()
    .map(|(ty, name, config)| {
        supported(
            name,
            aya::sys::is_program_supported(ty).unwrap_or(false),
            config,
        )
    })
    .collect()
}

fn map_types() -> Vec<Check> {
    [
        (
            MapType::SockHash,
            "map SOCKHASH",
            "CONFIG_BPF_STREAM_PARSER=y",
        ),
        (
            MapType::SkStorage,
            "map socket storage",
            "CONFIG_BPF_SYSCALL=y and BTF",
        ),
        (MapType::LpmTrie, "map LPM trie", "CONFIG_BPF_SYSCALL=y"),
    ]
    .into_iter()
    .map(|(ty, name, config)| {
        supported(
            name,
            aya::sys::is_map_supported(ty).unwrap_or(false),
            config,
        )
    })
    .collect()
}

/// The result of a kernel feature probe.
fn supported(name: &'static str, ok: bool, config: &str) -> Check {
    let detail = if ok {
        "supported"
    } else {
        "not supported by this kernel"
    };
    check(
        name,
        ok,
        detail.to_string(),
        format!("use a kernel with {config}"),
    )
}
