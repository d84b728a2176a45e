//! Starting the proxies on 127.0.0.1: CPU pinning, free ports, generated configs and logs
//! under `<target dir>/bench-waypoint`, and waiting until each listens.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::envoy::Envoy;
use super::process::Running;
use super::route::{self, Backends};

/// How long a proxy or a backend may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// CPUs the proxies and the load run on, when there are at least two.
const PROXY_CPU: usize = 1;
const LOAD_CPU: usize = 0;

/// Where the load and the proxies run: `taskset -c <cpu>`, or anywhere on a 1-CPU machine.
#[derive(Clone, Copy)]
pub struct Pinning {
    pub proxy: Option<usize>,
    pub load: Option<usize>,
}

impl Pinning {
    pub fn detect() -> Pinning {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = crate::shell::probe(Command::new("taskset").arg("--version"));
        if cpus >= 2 && taskset {
            Pinning {
                proxy: Some(PROXY_CPU),
                load: Some(LOAD_CPU),
            }
        } else {
            Pinning {
                proxy: None,
                load: None,
            }
        }
    }

    pub fn describe(self) -> String {
        match (self.proxy, self.load) {
            (Some(proxy), Some(load)) => format!(
                "proxies on CPU {proxy} (one worker each); client and backends on CPU {load}"
            ),
            _ => "none (fewer than 2 CPUs, or no taskset): every process floats".into(),
        }
    }
}

/// `cmd` run as `taskset -c <cpu> cmd` when `cpu` is given.
pub fn pinned(cpu: Option<usize>, cmd: Command) -> Command {
    let Some(cpu) = cpu else {
        return cmd;
    };
    let mut wrapped = Command::new("taskset");
    wrapped
        .args(["-c", &cpu.to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

/// A free port on 127.0.0.1 (free when asked; nothing else here binds ports meanwhile).
pub fn free_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// Waits until `addr` accepts connections.
fn wait_listening(proxy: &mut Running, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        proxy.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{} is not listening on {addr} after {START_TIMEOUT:?}",
        proxy.label
    )
}

/// A proxy and where the client reaches it.
pub struct Proxy {
    pub process: Running,
    pub listen: SocketAddr,
}

/// `<target dir>/bench-waypoint`: the generated configs and the proxies' logs.
pub fn work_dir() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::shell::workspace().join("target"));
    let dir = target.join("bench-waypoint");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn write_config(path: &Path, config: &serde_json::Value) -> Result<()> {
    let text = serde_yaml::to_string(config).context("rendering YAML")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    let path = dir.join(format!("{name}.log"));
    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
}

pub fn start_waypoint(dir: &Path, pinning: Pinning, backends: &Backends) -> Result<Proxy> {
    let config = dir.join("waypoint.yaml");
    write_config(&config, &route::waypoint_config(backends))?;
    let (listen, metrics) = (free_addr()?, free_addr()?);
    let mut cmd = Command::new(ambit_e2e::binary("ambit-waypoint")?);
    cmd.arg("local")
        .args(["--listen", &listen.to_string()])
        .arg("--config")
        .arg(&config)
        .args([
            "--service",
            &format!("{}/{}", route::NAMESPACE, route::SERVICE),
        ])
        .args(["--port", &route::SERVICE_PORT.to_string()])
        .args(["--metrics-listen", &metrics.to_string()]);
    let mut cmd = pinned(pinning.proxy, cmd);
    cmd.stderr(log_file(dir, "waypoint")?);
    let mut process = Running::start("ambit-waypoint", cmd, false)?;
    wait_listening(&mut process, listen)?;
    Ok(Proxy { process, listen })
}

pub fn start_envoy(
    envoy: &Envoy,
    dir: &Path,
    pinning: Pinning,
    backends: &Backends,
) -> Result<Proxy> {
    let config = dir.join("envoy.yaml");
    let (listen, admin) = (free_addr()?, free_addr()?);
    write_config(&config, &route::envoy_config(listen, admin, backends))?;
    let mut cmd = Command::new(&envoy.binary);
    cmd.arg("--config-path")
        .arg(&config)
        .args(["--log-level", "warn", "--disable-hot-restart"]);
    if pinning.proxy.is_some() {
        cmd.args(["--concurrency", "1"]);
    }
    let mut cmd = pinned(pinning.proxy, cmd);
    cmd.stderr(log_file(dir, "envoy")?);
    let mut process = Running::start("envoy", cmd, false)?;
    wait_listening(&mut process, listen)?;
    Ok(Proxy { process, listen })
}
