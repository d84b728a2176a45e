//! Waypoints on the sandbox, deployed as the chart's waypoint template deploys them: a
//! Gateway of class `ambit-waypoint`, a pod labelled with the Gateway's name and opted out of
//! capture (a waypoint speaks HBONE itself), service account = the Gateway's name, and
//! `ambit-waypoint run` in that pod.
//!
//! In the sandbox the waypoint gets its SVID from the mesh CA with its node's credential; the
//! CA signs it because the model lists the waypoint's pod, with that service account, on that
//! node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ambit_mesh::model::labels::{DATAPLANE_MODE, GATEWAY_NAME, USE_WAYPOINT, WAYPOINT_CLASS};
use anyhow::{bail, Context, Result};

use super::{tail, MeshCluster, AGENT_START};
use crate::sandbox::Pod;

/// Ports of a waypoint pod (DESIGN.md).
pub const WAYPOINT_HBONE_PORT: u16 = 15008;
pub const WAYPOINT_METRICS_PORT: u16 = 15020;
pub const WAYPOINT_READINESS_PORT: u16 = 15021;

impl MeshCluster {
    /// Declares waypoint `name` in `namespace` (the Gateway) and adds the pod that runs it on
    /// `node`, named `<name>-0`. Nothing uses it until a namespace or Service is labelled
    /// ([`MeshCluster::use_waypoint`]); start it with [`MeshCluster::start_waypoint`].
    pub fn add_waypoint(&mut self, node: &str, namespace: &str, name: &str) -> Result<Pod> {
        let pod = self.add_pod(node, namespace, &format!("{name}-0"))?;
        let workload = self
            .state
            .workloads
            .iter_mut()
            .find(|w| w.namespace == namespace && w.name == pod.name)
            .context("the waypoint pod's workload was just added")?;
        workload.service_account = name.to_string();
        workload.labels = BTreeMap::from([
            (GATEWAY_NAME.to_string(), name.to_string()),
            (DATAPLANE_MODE.to_string(), "none".to_string()),
        ]);
        let gateway = serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": { "name": name, "namespace": namespace },
            "spec": {
                "gatewayClassName": WAYPOINT_CLASS,
                "listeners": [{ "name": "mesh", "port": WAYPOINT_HBONE_PORT, "protocol": "HBONE" }],
            },
        });
        self.state
            .gateways
            .push(serde_json::from_value(gateway).context("the waypoint's Gateway object")?);
        Ok(pod)
    }

    /// Labels the namespace (`service: None`) or one of its Services
    /// `ambit.dev/use-waypoint: <waypoint>`; `none` opts a Service out of its namespace's
    /// waypoint. Call `write_config` to apply.
    pub fn use_waypoint(&mut self, namespace: &str, service: Option<&str>, waypoint: &str) {
        let labels = match service {
            None => self
                .state
                .namespaces
                .iter_mut()
                .find(|n| n.name == namespace)
                .map(|n| &mut n.labels),
            Some(service) => self
                .state
                .services
                .iter_mut()
                .find(|s| s.namespace == namespace && s.name == service)
                .map(|s| &mut s.labels),
        };
        let labels = labels.unwrap_or_else(|| panic!("no {namespace} {service:?} to label"));
        labels.insert(USE_WAYPOINT.to_string(), waypoint.to_string());
    }

    /// Adds an HTTPRoute, written as YAML exactly as a user would apply it.
    pub fn add_http_route(&mut self, yaml: &str) -> Result<()> {
        let route = serde_yaml::from_str(yaml).context("the test's HTTPRoute YAML")?;
        self.state.http_routes.push(route);
        Ok(())
    }

    /// Adds a GRPCRoute, written as YAML exactly as a user would apply it.
    pub fn add_grpc_route(&mut self, yaml: &str) -> Result<()> {
        let route = serde_yaml::from_str(yaml).context("the test's GRPCRoute YAML")?;
        self.state.grpc_routes.push(route);
        Ok(())
    }

    /// Replaces the HTTPRoute of the same namespace and name (YAML as a user applies it).
    pub fn replace_http_route(&mut self, yaml: &str) -> Result<()> {
        let route: gateway_api::experimental::httproutes::HttpRoute =
            serde_yaml::from_str(yaml).context("the test's HTTPRoute YAML")?;
        let key = (
            route.metadata.namespace.clone(),
            route.metadata.name.clone(),
        );
        self.state
            .http_routes
            .retain(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()) != key);
        self.state.http_routes.push(route);
        Ok(())
    }

    /// Writes the config and starts `ambit-waypoint run` in the waypoint's pod, with its SVID
    /// from the CA and, optionally, a route file (traffic policies, TCPRoutes). Waits until
    /// its readiness endpoint answers 200. Needs the CA, so start the agents first.
    pub fn start_waypoint(
        &mut self,
        namespace: &str,
        name: &str,
        routes: Option<&Path>,
    ) -> Result<()> {
        self.write_config()?;
        let pod = self.waypoint_pod(namespace, name)?;
        let ca = self
            .ca
            .as_ref()
            .map(|_| self.ca_addr())
            .transpose()?
            .context("a waypoint needs the mesh CA: start the agents (with mtls) first")?;
        let mut cmd = Command::new(crate::binary("ambit-waypoint")?);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .args(["--name", name, "--namespace", namespace])
            .args(["--hbone", &format!("{}:{WAYPOINT_HBONE_PORT}", pod.ip)])
            .args(["--metrics", &format!("{}:{WAYPOINT_METRICS_PORT}", pod.ip)])
            .args([
                "--readiness",
                &format!("{}:{WAYPOINT_READINESS_PORT}", pod.ip),
            ])
            .arg("--identity-dir")
            .arg(self.identity_dir(&pod.node))
            .args(["--ca-addr", &ca.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_WAYPOINT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null());
        if let Some(routes) = routes {
            cmd.arg("--routes").arg(routes);
        }
        let log = self
            .sb
            .capture_to_log(&mut cmd, &format!("waypoint-{namespace}-{name}"))?;
        let process = self.sb.spawn_in_pod(&pod, cmd)?;
        let deadline = Instant::now() + AGENT_START;
        loop {
            let ready = self
                .waypoint_http(namespace, name, WAYPOINT_READINESS_PORT, "/healthz/ready")
                .is_ok_and(|answer| answer.starts_with("HTTP/1.1 200"));
            if ready {
                break;
            }
            if let Some(status) = process.try_wait()? {
                bail!(
                    "waypoint {namespace}/{name} exited ({status}):\n{}",
                    tail(&log)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "waypoint {namespace}/{name} not ready after {AGENT_START:?}:\n{}",
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.waypoints
            .insert(format!("{namespace}/{name}"), process);
        Ok(())
    }

    /// The pod that runs waypoint `name`.
    pub fn waypoint_pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        self.sb
            .pod(namespace, &format!("{name}-0"))
            .cloned()
            .with_context(|| format!("no waypoint {namespace}/{name}; add_waypoint first"))
    }

    /// GET `path` from a waypoint on `port` (15020 metrics, 15021 readiness), from inside its
    /// pod's network namespace.
    pub fn waypoint_http(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        path: &str,
    ) -> Result<String> {
        let pod = self.waypoint_pod(namespace, name)?;
        super::http_get_in(&pod.netns_path, SocketAddr::from((pod.ip, port)), path)
    }

    /// The waypoint's Prometheus metrics text.
    pub fn waypoint_metrics(&self, namespace: &str, name: &str) -> Result<String> {
        self.waypoint_http(namespace, name, WAYPOINT_METRICS_PORT, "/metrics")
    }

    pub fn waypoint_log(&self, namespace: &str, name: &str) -> String {
        std::fs::read_to_string(
            self.sb
                .dir()
                .join(format!("waypoint-{namespace}-{name}.log")),
        )
        .unwrap_or_default()
    }
}
