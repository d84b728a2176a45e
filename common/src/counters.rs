//! Per-CPU event counters kept by the kernel programs and summed by the inspector.

/// Index into the `COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A connect was rewritten to the node agent's outbound listener.
    Redirected = 0,
    /// Skipped: the socket's network namespace is not enrolled.
    SkippedNotEnrolled,
    /// Skipped: loopback destination (the pod talking to itself).
    SkippedLoopback,
    /// Skipped: the destination is one of the node agent's own addresses.
    SkippedAgentAddress,
    /// Skipped: destination port excluded by config.
    SkippedExcludedPort,
    /// Skipped: destination address excluded by config.
    SkippedExcludedCidr,
    /// Skipped: not a TCP stream socket.
    SkippedNotTcp,
    /// Skipped: an IPv6 destination while the agent has no IPv6 address.
    SkippedNoAgentIpv6,
    /// Skipped: no agent configuration written yet (agent never started).
    SkippedNoConfig,
    /// A redirect could not be recorded because a record map is full; the connect was refused.
    OrigDstMapFull,
    /// A redirected connection was established and its record moved to the 4-tuple key.
    Established,
    /// A redirected connection established with no pending record (should not happen).
    RecordMissing,
    /// A record was removed because its connection closed.
    RecordClosed,
    /// A socket could not join the fast path (SOCK_FASTPATH full or refused).
    FastpathInsertFailed,
    /// A message went socket-to-socket through the fast path.
    FastpathRedirected,
    /// A message from a fast-path socket took the TCP stack (no peer socket in the map).
    FastpathPassed,
    /// Skipped: a connect from the node's own network namespace (the agent's upstream
    /// connections, host-network pods), which is never enrolled.
    SkippedNodeNetns,
    /// A pod's reply to a connection the agent opened from the caller's address was marked
    /// for local delivery (see the agent's `--client-address`).
    RepliesSteered,
    /// A packet to a local pod's HBONE port (from another node) was marked for the agent's
    /// transparent listener.
    HboneCaptured,
}

impl Counter {
    pub const COUNT: u32 = 19;

    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Redirected,
        Counter::SkippedNotEnrolled,
        Counter::SkippedLoopback,
        Counter::SkippedAgentAddress,
        Counter::SkippedExcludedPort,
        Counter::SkippedExcludedCidr,
        Counter::SkippedNotTcp,
        Counter::SkippedNoAgentIpv6,
        Counter::SkippedNoConfig,
        Counter::OrigDstMapFull,
        Counter::Established,
        Counter::RecordMissing,
        Counter::RecordClosed,
        Counter::FastpathInsertFailed,
        Counter::FastpathRedirected,
        Counter::FastpathPassed,
        Counter::SkippedNodeNetns,
        Counter::RepliesSteered,
        Counter::HboneCaptured,
    ];

    /// Stable snake_case name, used by the inspector and as a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Redirected => "redirected",
            Counter::SkippedNotEnrolled => "skipped_not_enrolled",
            Counter::SkippedLoopback => "skipped_loopback",
            Counter::SkippedAgentAddress => "skipped_agent_address",
            Counter::SkippedExcludedPort => "skipped_excluded_port",
            Counter::SkippedExcludedCidr => "skipped_excluded_cidr",
            Counter::SkippedNotTcp => "skipped_not_tcp",
            Counter::SkippedNoAgentIpv6 => "skipped_no_agent_ipv6",
            Counter::SkippedNoConfig => "skipped_no_config",
            Counter::OrigDstMapFull => "orig_dst_map_full",
            Counter::Established => "established",
            Counter::RecordMissing => "record_missing",
            Counter::RecordClosed => "record_closed",
            Counter::FastpathInsertFailed => "fastpath_insert_failed",
            Counter::FastpathRedirected => "fastpath_redirected",
            Counter::FastpathPassed => "fastpath_passed",
            Counter::SkippedNodeNetns => "skipped_node_netns",
            Counter::RepliesSteered => "replies_steered",
            Counter::HboneCaptured => "hbone_captured",
        }
    }
}
