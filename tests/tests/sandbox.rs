//! The sandbox itself: pods reach each other and the nodes, and teardown leaves nothing behind.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ambit_e2e::sandbox::{self, Pod, Sandbox};
use ambit_e2e::testapp::{self, EchoReport, TestApp, WhoamiLine, ECHO_PORT, WHOAMI_PORT};
use ambit_e2e::{require_privileged, sandbox_down};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn app() -> TestApp {
    TestApp::at(env!("CARGO_BIN_EXE_ambit-testapp"))
}

/// Asks the whoami server at `addr` from `client` and checks it saw the client's pod IP.
fn assert_whoami_sees_client(sb: &Sandbox, client: &Pod, addr: SocketAddrV4, server: &str) {
    let output = sb
        .run_in_pod(client, app().whoami(addr), RUN_TIMEOUT)
        .expect("running whoami");
    assert!(output.status.success(), "whoami {addr}: {output:?}");
    let line = WhoamiLine::parse(&String::from_utf8_lossy(&output.stdout)).expect("a whoami line");
    eprintln!(
        "  {} -> {addr}: {} saw {}",
        client.id(),
        line.server,
        line.peer
    );
    assert_eq!(line.server, server);
    assert_eq!(
        line.peer.ip(),
        client.ip,
        "the server must see the pod's own address"
    );
}

/// Set in the child process of `ctrl_c_tears_down_the_live_sandboxes`.
const INTERRUPT_CHILD_ENV: &str = "AMBIT_E2E_INTERRUPT_CHILD";

/// Where a sandbox's objects live, remembered so they can be checked after it is gone.
struct Footprint {
    name: String,
    paths: Vec<PathBuf>,
    scratch: PathBuf,
}

impl Footprint {
    fn of(sb: &Sandbox) -> Footprint {
        let mut paths = vec![sb.cgroup_dir().to_path_buf(), sb.dir().to_path_buf()];
        paths.extend(sb.nodes().iter().map(|n| n.bpf_pin_dir.clone()));
        Footprint {
            name: sb.name().to_string(),
            paths,
            scratch: sb.dir().to_path_buf(),
        }
    }

    /// One line: the name, then the paths.
    fn to_line(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        format!(
            "{} {} {}",
            self.name,
            self.scratch.display(),
            paths.join(" ")
        )
    }

    fn from_line(line: &str) -> Footprint {
        let mut words = line.split_whitespace();
        let name = words.next().expect("a sandbox name").to_string();
        let scratch = PathBuf::from(words.next().expect("a scratch dir"));
        Footprint {
            name,
            scratch,
            paths: words.map(PathBuf::from).collect(),
        }
    }

    /// What still exists: netns named after the sandbox, and its directories.
    fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{}-", self.name)))
            .map(|n| format!("netns {n}"))
            .collect();
        found.extend(
            self.paths
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string()),
        );
        found
    }
}

/// The interfaces of the host's (this process's) network namespace.
fn host_interfaces() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .expect("listing /sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sleep_600() -> Command {
    let mut sleeper = Command::new("sleep");
    sleeper.arg("600");
    sleeper
}

/// A pin directory like the node agent's, with a nested directory, to prove removal.
fn fake_agent_pins(pin_dir: &Path) {
    fs::create_dir_all(pin_dir.join("maps")).expect("creating a fake pin dir");
}

#[test]
fn pods_reach_pods_on_the_same_node_on_other_nodes_and_node_addresses() {
    if !require_privileged() {
        return;
    }
    let host_forwarding = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_links = host_interfaces();
    let mut sb = Sandbox::new("reachability").unwrap();
    eprintln!("sandbox {} with two nodes and three pods", sb.name());
    let node1 = sb.add_node("node1").unwrap();
    let node2 = sb.add_node("node2").unwrap();
    let client = sb.add_pod("node1", "shop", "client").unwrap();
    let near = sb.add_pod("node1", "shop", "near").unwrap();
    let far = sb.add_pod("node2", "shop", "far").unwrap();
    assert!(node1.pod_cidr.contains(client.ip) && node2.pod_cidr.contains(far.ip));

    eprintln!("forwarding is on inside the nodes, and the host is untouched");
    assert_eq!(
        sandbox::read_sysctl(&node1.netns_path, "ipv4/ip_forward").unwrap(),
        "1"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forwarding
    );
    assert_eq!(host_interfaces(), host_links);

    eprintln!("servers in both server pods and on node2's address");
    let near_server = app().serve_in_pod(&sb, &near, "near").unwrap();
    app().serve_in_pod(&sb, &far, "far").unwrap();
    app().serve_on_node(&sb, &node2, "node2").unwrap();

    eprintln!("a pod's processes run in the pod's cgroup");
    let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", near_server.pid())).unwrap();
    let relative = near
        .cgroup_dir
        .strip_prefix(sandbox::cgroup2_mount().unwrap())
        .unwrap();
    assert!(
        cgroup.contains(&format!("0::/{}", relative.display())),
        "{cgroup}"
    );

    eprintln!("whoami: same node, across nodes, node address");
    assert_whoami_sees_client(
        &sb,
        &client,
        SocketAddrV4::new(near.ip, WHOAMI_PORT),
        "near",
    );
    assert_whoami_sees_client(&sb, &client, SocketAddrV4::new(far.ip, WHOAMI_PORT), "far");
    assert_whoami_sees_client(
        &sb,
        &client,
        SocketAddrV4::new(node2.address, WHOAMI_PORT),
        "node2",
    );
    assert_whoami_sees_client(&sb, &far, SocketAddrV4::new(near.ip, WHOAMI_PORT), "near");

    eprintln!("a 4 MiB echo across nodes comes back byte for byte");
    let output = sb
        .run_in_pod(
            &client,
            app().echo(SocketAddrV4::new(far.ip, ECHO_PORT), 4 << 20),
            RUN_TIMEOUT,
        )
        .unwrap();
    let echo: EchoReport = testapp::parse_report(&output).unwrap();
    assert!(echo.ok && echo.bytes == 4 << 20, "{echo:?}");
    assert!(echo.local.starts_with(&client.ip.to_string()), "{echo:?}");

    eprintln!("a node reaches a pod on another node");
    let output = sb
        .run_in_node(
            &node1,
            app().whoami(SocketAddrV4::new(far.ip, WHOAMI_PORT)),
            RUN_TIMEOUT,
        )
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn dropping_a_sandbox_removes_everything_it_created() {
    if !require_privileged() {
        return;
    }
    let mut sb = Sandbox::new("drop-cleanup").unwrap();
    let node = sb.add_node("node1").unwrap();
    let pod = sb.add_pod("node1", "shop", "web").unwrap();
    fake_agent_pins(&node.bpf_pin_dir);
    eprintln!("a long-running process in the pod");
    let sleeper = sb.spawn_in_pod(&pod, sleep_600()).unwrap();
    let footprint = Footprint::of(&sb);
    assert_eq!(
        footprint.leftovers().len(),
        6,
        "netns x3, cgroup, scratch, pins"
    );

    eprintln!("dropping {}", sb.name());
    drop(sb);
    assert_eq!(footprint.leftovers(), Vec::<String>::new());
    assert!(
        sleeper.try_wait().unwrap().is_some(),
        "the pod's process was killed and reaped"
    );
}

#[test]
fn a_sandbox_dropped_while_a_test_panics_is_cleaned_up() {
    if !require_privileged() {
        return;
    }
    let footprint = Mutex::new(None);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut sb = Sandbox::new("panic-cleanup").unwrap();
        let node = sb.add_node("node1").unwrap();
        sb.add_pod("node1", "shop", "web").unwrap();
        fake_agent_pins(&node.bpf_pin_dir);
        sb.spawn_in_node_agent(&node, sleep_600()).unwrap();
        *footprint.lock().unwrap() = Some(Footprint::of(&sb));
        panic!("deliberate panic with sandbox {} alive", sb.name());
    }));
    assert!(result.is_err());
    let footprint = footprint.lock().unwrap().take().unwrap();
    eprintln!(
        "after the panic at most the scratch dir (logs) of {} is left",
        footprint.name
    );
    let mut left = footprint.leftovers();
    left.retain(|path| Path::new(path) != footprint.scratch);
    assert_eq!(left, Vec::<String>::new());
    // A concurrent `sandbox_down` (another test) may already have removed the logs.
    if footprint.scratch.exists() {
        fs::remove_dir_all(&footprint.scratch).unwrap();
    }
}

#[test]
fn sandbox_down_removes_what_a_kept_sandbox_left_behind() {
    if !require_privileged() {
        return;
    }
    let mut sb = Sandbox::new("kept").unwrap();
    let node = sb.add_node("node1").unwrap();
    let pod = sb.add_pod("node1", "shop", "web").unwrap();
    fake_agent_pins(&node.bpf_pin_dir);
    let sleeper = sb.spawn_in_pod(&pod, sleep_600()).unwrap();
    let footprint = Footprint::of(&sb);
    let name = sb.name().to_string();

    eprintln!("keeping {name} and dropping the guard");
    sb.keep();
    drop(sb);
    assert_eq!(
        footprint.leftovers().len(),
        6,
        "netns x3, cgroup, scratch, pins"
    );
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "a kept sandbox keeps its processes"
    );

    eprintln!("sandbox_down");
    let report = sandbox_down().unwrap();
    eprint!("{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(footprint.leftovers(), Vec::<String>::new());
    let status = sleeper.wait_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        !status.success(),
        "the kept pod's process was killed: {status}"
    );
}

#[test]
fn a_command_that_overruns_its_deadline_is_killed() {
    if !require_privileged() {
        return;
    }
    let mut sb = Sandbox::new("deadline").unwrap();
    sb.add_node("node1").unwrap();
    let pod = sb.add_pod("node1", "shop", "slow").unwrap();
    let start = Instant::now();
    let err = sb
        .run_in_pod(&pod, sleep_600(), Duration::from_millis(300))
        .unwrap_err();
    eprintln!("run_in_pod said: {err:#}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(format!("{err:#}").contains("did not finish"), "{err:#}");
}

#[test]
fn ctrl_c_tears_down_the_live_sandboxes() {
    if !require_privileged() {
        return;
    }
    eprintln!("a child test process builds a sandbox and waits");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holds_a_sandbox_until_interrupted",
            "--nocapture",
        ])
        .env(INTERRUPT_CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(footprint) = line.strip_prefix("SANDBOX ") {
                let _ = tx.send(footprint.to_string());
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child never reported its sandbox: {e}");
        }
    };
    let footprint = Footprint::from_line(&line);
    assert!(!footprint.leftovers().is_empty());

    eprintln!("SIGINT to the child (pid {})", child.id());
    // SAFETY: kill(2) on our own unreaped child; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not exit within 20s of SIGINT");
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    assert_eq!(footprint.leftovers(), Vec::<String>::new());
}

/// The child half of `ctrl_c_tears_down_the_live_sandboxes`; returns at once otherwise.
#[test]
fn holds_a_sandbox_until_interrupted() {
    if std::env::var_os(INTERRUPT_CHILD_ENV).is_none() {
        return;
    }
    assert!(require_privileged());
    let mut sb = Sandbox::new("interrupted").unwrap();
    let node = sb.add_node("node1").unwrap();
    let pod = sb.add_pod("node1", "shop", "web").unwrap();
    fake_agent_pins(&node.bpf_pin_dir);
    sb.spawn_in_pod(&pod, sleep_600()).unwrap();
    println!("SANDBOX {}", Footprint::of(&sb).to_line());
    thread::sleep(Duration::from_secs(60));
    panic!("no signal arrived within 60s");
}
