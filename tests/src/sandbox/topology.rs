//! Nodes and pods: building the fabric, node and pod namespaces, their links, routes and cgroups.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::addressing::{self as plan, Ipv4Cidr, MAX_NODES, MAX_PODS_PER_NODE};
use super::cleanup::BPF_PIN_ROOT;
use super::{cgroup, netns, Sandbox};

/// The bridge in the fabric namespace that joins the nodes.
const BRIDGE: &str = "br0";

/// A node: a network namespace on the fabric, a pod CIDR, and a cgroup subtree.
#[derive(Clone, Debug)]
pub struct Node {
    /// Full name, `<sandbox>-<short>`: the netns name and the bpffs pin directory name.
    pub name: String,
    /// The name given to `add_node`, e.g. `node1`.
    pub short_name: String,
    /// 1-based position in the sandbox.
    pub index: u8,
    /// The node's address on the fabric (`eth0`); the node agent listens here.
    pub address: Ipv4Addr,
    pub netns: String,
    /// `/run/netns/<name>`.
    pub netns_path: PathBuf,
    /// The subtree root the node agent attaches its cgroup eBPF programs to.
    pub cgroup_dir: PathBuf,
    /// `<cgroup_dir>/agent`: where the node agent runs.
    pub agent_cgroup: PathBuf,
    /// `<cgroup_dir>/pods`: parent of the pods' cgroups.
    pub pods_cgroup: PathBuf,
    pub pod_cidr: Ipv4Cidr,
    /// The pods' default gateway (an address of the node on every pod veth).
    pub pod_gateway: Ipv4Addr,
    /// `/sys/fs/bpf/ambit/<name>`: where this node's agent pins maps and links.
    pub bpf_pin_dir: PathBuf,
}

/// A pod: a network namespace behind a veth into its node, and a cgroup under the node.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    /// The node's short name.
    pub node: String,
    /// The node's full name.
    pub node_name: String,
    /// The pod's /32 address from its node's pod CIDR.
    pub ip: Ipv4Addr,
    pub netns: String,
    /// `/run/netns/<netns>`: the path the node agent enrolls the pod from.
    pub netns_path: PathBuf,
    pub cgroup_dir: PathBuf,
    /// The node-side interface of the pod's veth, inside the node's namespace.
    pub node_veth: String,
}

impl Pod {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl Sandbox {
    /// Creates the fabric namespace and its bridge (called once by `Sandbox::new`).
    pub(super) fn build_fabric(&mut self) -> Result<()> {
        let fabric = plan::fabric_netns(&self.record.name);
        self.record_netns(&fabric)?;
        netns::add(&fabric)?;
        netns::ip(&format!("-n {fabric} link add {BRIDGE} type bridge"))
            .context("creating the fabric bridge (the kernel needs CONFIG_BRIDGE)")?;
        netns::ip(&format!("-n {fabric} link set {BRIDGE} up"))
    }

    /// Adds a node called `short_name` (e.g. `node1`) and routes between it and every
    /// existing node's pod CIDR.
    pub fn add_node(&mut self, short_name: &str) -> Result<Node> {
        plan::validate_dns_label("node name", short_name)?;
        if short_name == "fabric" || self.node(short_name).is_some() {
            bail!(
                "node name {short_name:?} is taken in sandbox {}",
                self.name()
            );
        }
        let index = u8::try_from(self.nodes.len() + 1)
            .ok()
            .filter(|i| *i <= MAX_NODES)
            .with_context(|| format!("a sandbox holds at most {MAX_NODES} nodes"))?;
        let subnet = self.record.subnet;
        let name = plan::node_name(&self.record.name, short_name);
        let cgroup_dir = self.record.cgroup_dir.join(short_name);
        let node = Node {
            short_name: short_name.to_string(),
            index,
            address: plan::node_address(subnet, index),
            netns: name.clone(),
            netns_path: netns::path(&name),
            agent_cgroup: cgroup_dir.join("agent"),
            pods_cgroup: cgroup_dir.join("pods"),
            cgroup_dir,
            pod_cidr: plan::pod_cidr(subnet, index),
            pod_gateway: plan::pod_gateway(subnet, index),
            bpf_pin_dir: PathBuf::from(BPF_PIN_ROOT).join(&name),
            name,
        };
        tracing::info!(node = %node.name, address = %node.address, pod_cidr = %node.pod_cidr, "adding node");
        self.record.pin_dirs.push(node.bpf_pin_dir.clone());
        self.record_netns(&node.netns)?;
        netns::add(&node.netns)?;
        netns::set_sysctls(
            &node.netns_path,
            &[
                ("ipv4/ip_forward", "1"),
                ("ipv4/conf/all/rp_filter", "0"),
                ("ipv4/conf/default/rp_filter", "0"),
            ],
        )
        .with_context(|| format!("enabling forwarding in node {}", node.name))?;

        let fabric = plan::fabric_netns(&self.record.name);
        let port = plan::fabric_port(index);
        let node_ns = &node.netns;
        netns::ip(&format!(
            "-n {fabric} link add {port} type veth peer name eth0 netns {node_ns}"
        ))
        .context("creating a veth pair (the kernel needs CONFIG_VETH)")?;
        netns::ip(&format!("-n {fabric} link set {port} master {BRIDGE} up"))?;
        let (address, prefix_len) = (node.address, plan::fabric_cidr(subnet).prefix_len);
        netns::ip(&format!(
            "-n {node_ns} addr add {address}/{prefix_len} dev eth0"
        ))?;
        netns::ip(&format!("-n {node_ns} link set eth0 up"))?;
        netns::set_sysctls(&node.netns_path, &[("ipv4/conf/eth0/rp_filter", "0")])?;

        for other in &self.nodes {
            route_pod_cidr(&node, other)?;
            route_pod_cidr(other, &node)?;
        }
        for dir in [&node.agent_cgroup, &node.pods_cgroup] {
            cgroup::create(dir)?;
        }
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Adds pod `namespace/name` on node `node` (short name), with the next free address of
    /// the node's pod CIDR and a default route via the node.
    pub fn add_pod(&mut self, node: &str, namespace: &str, name: &str) -> Result<Pod> {
        plan::validate_dns_label("namespace", namespace)?;
        plan::validate_dns_label("pod name", name)?;
        let host = self
            .node(node)
            .with_context(|| format!("sandbox {} has no node {node:?}", self.name()))?
            .clone();
        if self.pod(namespace, name).is_some() {
            bail!(
                "pod {namespace}/{name} already exists in sandbox {}",
                self.name()
            );
        }
        let ordinal = u8::try_from(self.pods.iter().filter(|p| p.node == node).count() + 1)
            .ok()
            .filter(|o| *o <= MAX_PODS_PER_NODE)
            .with_context(|| format!("a node holds at most {MAX_PODS_PER_NODE} pods"))?;
        let netns_name = plan::pod_netns(&host.name, namespace, name);
        let pod = Pod {
            name: name.to_string(),
            namespace: namespace.to_string(),
            node: node.to_string(),
            node_name: host.name.clone(),
            ip: plan::pod_address(self.record.subnet, host.index, ordinal),
            netns_path: netns::path(&netns_name),
            netns: netns_name,
            cgroup_dir: host
                .pods_cgroup
                .join(plan::pod_cgroup_leaf(namespace, name)),
            node_veth: plan::pod_veth(ordinal),
        };
        tracing::info!(pod = %pod.id(), node = %host.name, ip = %pod.ip, "adding pod");
        self.record_netns(&pod.netns)?;
        netns::add(&pod.netns)?;

        let (veth, node_ns, pod_ns) = (&pod.node_veth, &host.netns, &pod.netns);
        let (gateway, pod_ip) = (host.pod_gateway, pod.ip);
        netns::ip(&format!(
            "-n {node_ns} link add {veth} type veth peer name eth0 netns {pod_ns}"
        ))
        .context("creating a veth pair (the kernel needs CONFIG_VETH)")?;
        netns::ip(&format!("-n {node_ns} addr add {gateway}/32 dev {veth}"))?;
        netns::ip(&format!("-n {node_ns} link set {veth} up"))?;
        netns::ip(&format!("-n {node_ns} route add {pod_ip}/32 dev {veth}"))?;
        netns::set_sysctls(
            &host.netns_path,
            &[(&format!("ipv4/conf/{veth}/rp_filter"), "0")],
        )?;

        netns::ip(&format!("-n {pod_ns} addr add {pod_ip}/32 dev eth0"))?;
        netns::ip(&format!("-n {pod_ns} link set eth0 up"))?;
        netns::ip(&format!(
            "-n {pod_ns} route add default via {gateway} dev eth0 onlink"
        ))?;
        cgroup::create(&pod.cgroup_dir)?;
        self.pods.push(pod.clone());
        Ok(pod)
    }
}

/// In `from`'s namespace, routes `to`'s pod CIDR via `to`'s fabric address.
fn route_pod_cidr(from: &Node, to: &Node) -> Result<()> {
    let (from_ns, cidr, via) = (&from.netns, to.pod_cidr, to.address);
    netns::ip(&format!("-n {from_ns} route add {cidr} via {via}"))
}
