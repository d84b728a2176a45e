//! Evidence of the route a benchmarked path took, and whether it matches the path's name.
//!
//! A path is only worth its label if it went where it says: (a) straight to the server, (b)
//! and (c) through the agent, and only (c) socket-to-socket. The evidence is whom the server
//! saw connecting (whoami) and the client node's kernel counters.

use std::net::IpAddr;

use serde::Serialize;

use super::summary::DataPath;

/// Below this share of its messages on the fast path, (c) is said to mostly bypass it.
const FASTPATH_SHARE_WARN: f64 = 0.9;

#[derive(Clone, Debug, Serialize)]
pub struct Route {
    /// The client pod's own address.
    pub client_ip: IpAddr,
    /// The client node's addresses, one of which the agent connects from: the fabric address
    /// towards other nodes, the pod gateway towards a pod on the same node.
    pub node_ips: Vec<IpAddr>,
    /// The client address the server's whoami reported.
    pub server_saw: IpAddr,
    /// Increase of the client node's kernel counters over this path's rr and bulk runs.
    pub counters: RouteCounters,
}

/// The kernel counters that tell the routes apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteCounters {
    /// Redirected connections that reached ESTABLISHED.
    pub established: u64,
    /// Messages sk_msg handed socket-to-socket.
    pub fastpath_redirected: u64,
    /// Messages of fast-path sockets that took the TCP stack.
    pub fastpath_passed: u64,
}

impl RouteCounters {
    /// `self - earlier`, per counter (counters only grow while the agent runs).
    pub fn since(self, earlier: RouteCounters) -> RouteCounters {
        RouteCounters {
            established: self.established.saturating_sub(earlier.established),
            fastpath_redirected: self
                .fastpath_redirected
                .saturating_sub(earlier.fastpath_redirected),
            fastpath_passed: self.fastpath_passed.saturating_sub(earlier.fastpath_passed),
        }
    }

    pub fn add(&mut self, other: RouteCounters) {
        self.established += other.established;
        self.fastpath_redirected += other.fastpath_redirected;
        self.fastpath_passed += other.fastpath_passed;
    }

    /// Share of fast-path sockets' messages that went socket-to-socket (0 with no message).
    fn fastpath_share(self) -> f64 {
        let total = self.fastpath_redirected + self.fastpath_passed;
        if total == 0 {
            0.0
        } else {
            self.fastpath_redirected as f64 / total as f64
        }
    }
}

/// What the evidence showed: findings that confirm the route, and warnings that contradict it.
#[derive(Debug, Default)]
pub struct RouteCheck {
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

impl RouteCheck {
    fn expect(&mut self, holds: bool, note: String, warning: String) {
        if holds {
            self.notes.push(note);
        } else {
            self.warnings.push(warning);
        }
    }
}

pub fn check(path: DataPath, route: &Route) -> RouteCheck {
    let tag = path.tag();
    let c = route.counters;
    let saw = route.server_saw;
    let mut check = RouteCheck::default();
    if path == DataPath::Direct {
        check.expect(
            saw == route.client_ip,
            format!("the server saw the client itself ({saw})"),
            format!(
                "{tag} is not direct: the server saw {saw}, not the client {}",
                route.client_ip
            ),
        );
        check.expect(
            c.established == 0,
            "the kernel redirected no connection".into(),
            format!(
                "{tag} is not direct: the kernel redirected {} connections",
                c.established
            ),
        );
        return check;
    }
    check.expect(
        route.node_ips.contains(&saw),
        format!("the server saw the node's agent ({saw})"),
        format!(
            "{tag} did not go through the agent: the server saw {saw}, expected one of the node's addresses {:?}",
            route.node_ips
        ),
    );
    check.expect(
        c.established > 0,
        format!("{} redirected connections", c.established),
        format!("{tag}: the kernel counted no redirected connection; did the agent relay it?"),
    );
    if path == DataPath::Agent {
        check.expect(
            c.fastpath_redirected == 0,
            "no fast-path message".into(),
            format!(
                "{tag} should not use the fast path, yet {} messages took it",
                c.fastpath_redirected
            ),
        );
        return check;
    }
    let messages = c.fastpath_redirected + c.fastpath_passed;
    let percent = c.fastpath_share() * 100.0;
    check.expect(
        c.fastpath_redirected > 0,
        format!(
            "{} of {messages} messages on the fast path ({percent:.1}%)",
            c.fastpath_redirected
        ),
        format!(
            "{tag} did not use the fast path: fastpath_redirected did not move \
             ({} messages took the TCP stack)",
            c.fastpath_passed
        ),
    );
    if c.fastpath_redirected > 0 && c.fastpath_share() < FASTPATH_SHARE_WARN {
        check.warnings.push(format!(
            "{tag} partly bypassed the fast path: only {percent:.1}% of {messages} messages of fast-path sockets went socket-to-socket, the rest took the TCP stack"
        ));
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(server_saw: &str, established: u64, redirected: u64, passed: u64) -> Route {
        Route {
            client_ip: "10.1.1.2".parse().unwrap(),
            node_ips: vec!["10.0.0.1".parse().unwrap(), "10.1.1.1".parse().unwrap()],
            server_saw: server_saw.parse().unwrap(),
            counters: RouteCounters {
                established,
                fastpath_redirected: redirected,
                fastpath_passed: passed,
            },
        }
    }

    #[test]
    fn each_path_on_its_route_passes_the_check() {
        for (path, route) in [
            (DataPath::Direct, route("10.1.1.2", 0, 0, 0)),
            (DataPath::Agent, route("10.1.1.1", 6, 0, 0)),
            (DataPath::Fastpath, route("10.0.0.1", 6, 990, 10)),
        ] {
            let check = check(path, &route);
            assert!(check.warnings.is_empty(), "{path:?}: {check:?}");
        }
    }

    #[test]
    fn fast_path_that_never_redirected_is_flagged() {
        let check = check(DataPath::Fastpath, &route("10.0.0.1", 6, 0, 800));
        assert_eq!(check.warnings.len(), 1, "{check:?}");
        assert!(check.warnings[0].contains("did not use the fast path"));
    }

    #[test]
    fn fast_path_bypassed_for_most_messages_is_flagged() {
        let check = check(DataPath::Fastpath, &route("10.0.0.1", 6, 10, 90));
        assert_eq!(check.warnings.len(), 1, "{check:?}");
        assert!(check.warnings[0].contains("10.0%"), "{check:?}");
    }

    #[test]
    fn agent_path_where_the_server_saw_the_client_is_flagged() {
        let check = check(DataPath::Agent, &route("10.1.1.2", 0, 0, 0));
        assert_eq!(check.warnings.len(), 2, "{check:?}");
        assert!(check.warnings[0].contains("did not go through the agent"));
    }

    #[test]
    fn direct_path_that_was_redirected_is_flagged() {
        let check = check(DataPath::Direct, &route("10.0.0.1", 3, 0, 0));
        assert_eq!(check.warnings.len(), 2, "{check:?}");
    }

    #[test]
    fn counters_since_do_not_underflow_after_a_restart() {
        let later = RouteCounters {
            established: 5,
            fastpath_redirected: 1,
            fastpath_passed: 0,
        };
        let earlier = RouteCounters {
            established: 2,
            fastpath_redirected: 3,
            fastpath_passed: 0,
        };
        assert_eq!(later.since(earlier).established, 3);
        assert_eq!(later.since(earlier).fastpath_redirected, 0);
    }
}
