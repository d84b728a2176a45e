//! Names and size bounds of the kernel maps, shared by the programs, the agent and the inspector.
//!
//! Every map is pinned under `/sys/fs/bpf/ambit/<node>/<NAME>`; user space finds maps and
//! programs by these names, so they are the contract between the two sides.

/// netns cookie -> [`crate::EnrolledNetns`]: which network namespaces are in the mesh.
pub const ENROLLED_NETNS: &str = "ENROLLED_NETNS";
/// socket cookie -> [`crate::OrigDst`]: a redirected connect whose handshake has not finished.
pub const PENDING_ORIG_DST: &str = "PENDING_ORIG_DST";
/// [`crate::SockKey`] (agent-side view) -> [`crate::OrigDst`]: live redirected connections.
pub const ORIG_DST: &str = "ORIG_DST";
/// [`crate::SockKey`] (own view) -> socket: same-node sockets joined by the sk_msg fast path.
pub const SOCK_FASTPATH: &str = "SOCK_FASTPATH";
/// Per-socket storage: marks a socket that sent once through TCP, so it never switches to the
/// fast path mid-stream (which would reorder bytes at the receiver).
pub const FASTPATH_OFF: &str = "FASTPATH_OFF";
/// index 0 -> [`crate::RedirectConfig`].
pub const REDIRECT_CONFIG: &str = "REDIRECT_CONFIG";
/// destination port (host order) -> 1: never redirected.
pub const EXCLUDED_PORTS: &str = "EXCLUDED_PORTS";
/// LPM trie over IPv4-mapped IPv6 addresses -> 1: destinations never redirected.
pub const EXCLUDED_CIDRS: &str = "EXCLUDED_CIDRS";
/// Per-CPU `u64` counters indexed by [`crate::Counter`].
pub const COUNTERS: &str = "COUNTERS";

/// Every pinned map, in the order the inspector prints them.
pub const ALL: [&str; 9] = [
    ENROLLED_NETNS,
    PENDING_ORIG_DST,
    ORIG_DST,
    SOCK_FASTPATH,
    FASTPATH_OFF,
    REDIRECT_CONFIG,
    EXCLUDED_PORTS,
    EXCLUDED_CIDRS,
    COUNTERS,
];

/// Size bounds. A full map is counted ([`crate::Counter`]) and handled as each program documents.
pub const ENROLLED_NETNS_MAX: u32 = 16_384;
pub const PENDING_ORIG_DST_MAX: u32 = 65_536;
pub const ORIG_DST_MAX: u32 = 65_536;
pub const SOCK_FASTPATH_MAX: u32 = 131_072;
pub const EXCLUDED_PORTS_MAX: u32 = 256;
pub const EXCLUDED_CIDRS_MAX: u32 = 256;
/// Pods of one node whose HBONE port the agent serves; past it, a pod's address is left out
/// (the agent logs which).
pub const LOCAL_PODS_MAX: u32 = 4_096;

/// Not pinned: [`crate::IpWords`] -> 1, this node's pods whose HBONE port the running agent
/// serves (Istio's ztunnel dials a pod's own address).
pub const LOCAL_PODS: &str = "LOCAL_PODS";

/// Program names (the Rust function names in `ebpf/src/main.rs`).
pub mod programs {
    pub const REDIRECT_CONNECT4: &str = "redirect_connect4";
    pub const REDIRECT_CONNECT6: &str = "redirect_connect6";
    pub const RECORD_ESTABLISHED: &str = "record_established";
    pub const FORWARD_MSG: &str = "forward_msg";
    /// tc ingress on the interfaces of enrolled pods; attached per interface by the agent,
    /// not pinned (its marks only matter to the running agent's sockets).
    pub const STEER_REPLIES: &str = "steer_replies";
    /// tc ingress on the interfaces towards other nodes; attached like STEER_REPLIES.
    pub const CAPTURE_HBONE: &str = "capture_hbone";

    /// Programs attached to the node's cgroup through a pinned link (`links/<name>`).
    /// FORWARD_MSG is attached to the SOCK_FASTPATH map instead.
    pub const CGROUP_LINKED: [&str; 3] = [REDIRECT_CONNECT4, REDIRECT_CONNECT6, RECORD_ESTABLISHED];
}
