//! Kubernetes objects to model objects: pure functions, one per kind, tested case by case.
//!
//! A conversion never fails the source. It gives the model object, or nothing when the object
//! does not belong in the model (yet), and the [`Problem`]s an operator should hear about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Namespace as KubeNamespace, Node as KubeNode, Pod, Service as KubeService,
    ServicePort as KubeServicePort,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::labels::{DataplaneMode, DATAPLANE_MODE};
use crate::model::{
    Namespace, Node, Protocol, Service, ServicePort, Workload, DEFAULT_SERVICE_ACCOUNT,
};

/// Something wrong with one object, which the source reports (log line and counter) while
/// keeping the rest of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
    pub object: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// What a conversion gives: the model object if the object belongs in the model now, and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted<T> {
    pub value: Option<T>,
    pub problems: Vec<Problem>,
}

impl<T> Converted<T> {
    fn of(value: Option<T>) -> Self {
        Self {
            value,
            problems: Vec::new(),
        }
    }
}

fn labels_of(labels: &Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    labels.clone().unwrap_or_default()
}

/// A Namespace: its name and labels. An unknown `ambit.dev/dataplane-mode` value is
/// reported and, as the enrollment rule says, counts as no label: its pods are not enrolled.
pub fn namespace(ns: &KubeNamespace) -> Converted<Namespace> {
    let Some(name) = ns.metadata.name.clone() else {
        return Converted::of(None);
    };
    let labels = labels_of(&ns.metadata.labels);
    let mut out = Converted::of(None);
    if let Some(problem) = bad_dataplane_mode(
        &labels,
        || format!("Namespace {name}"),
        "its pods are not enrolled",
    ) {
        out.problems.push(problem);
    }
    out.value = Some(Namespace { name, labels });
    out
}

fn bad_dataplane_mode(
    labels: &BTreeMap<String, String>,
    object: impl FnOnce() -> String,
    consequence: &str,
) -> Option<Problem> {
    let value = labels.get(DATAPLANE_MODE)?;
    if DataplaneMode::parse(value).is_some() {
        return None;
    }
    Some(Problem {
        object: object(),
        message: format!(
            "unknown value {value:?} for label {DATAPLANE_MODE} (allowed: {}); ignored, {consequence}",
            DataplaneMode::VALUES.join(", ")
        ),
    })
}

/// A Node: its name and the address other agents reach it on, the first `InternalIP` (else
/// the first `ExternalIP`). A node without one is left out and reported.
pub fn node(node: &KubeNode) -> Converted<Node> {
    let Some(name) = node.metadata.name.clone() else {
        return Converted::of(None);
    };
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    let pick = |kind: &str| {
        addresses
            .iter()
            .filter(|a| a.type_ == kind)
            .find_map(|a| a.address.parse::<IpAddr>().ok())
    };
    match pick("InternalIP").or_else(|| pick("ExternalIP")) {
        Some(address) => Converted::of(Some(Node { name, address })),
        None => Converted {
            value: None,
            problems: vec![Problem {
                object: format!("Node {name}"),
                message: "no InternalIP or ExternalIP address; workloads on this node cannot be reached through the mesh".to_owned(),
            }],
        },
    }
}

/// A Pod: a workload once it is scheduled and has an IP. Pods without an IP yet are skipped
/// until an update brings one; finished pods (`Succeeded`, `Failed`) are skipped, their IPs
/// may already belong to another pod.
pub fn workload(pod: &Pod) -> Converted<Workload> {
    let meta = &pod.metadata;
    let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
        return Converted::of(None);
    };
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Converted::of(None);
    }
    let Some(node) = spec
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
    else {
        return Converted::of(None);
    };
    let object = || format!("Pod {namespace}/{name}");
    let mut out = Converted::of(None);
    let texts: Vec<&str> = match status.and_then(|s| s.pod_ips.as_deref()) {
        Some(ips) if !ips.is_empty() => ips.iter().map(|ip| ip.ip.as_str()).collect(),
        _ => status
            .and_then(|s| s.pod_ip.as_deref())
            .into_iter()
            .collect(),
    };
    let mut ips = Vec::new();
    for text in texts {
        match text.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => out.problems.push(Problem {
                object: object(),
                message: format!("invalid pod IP {text:?}; ignored"),
            }),
        }
    }
    if ips.is_empty() {
        return out;
    }
    let labels = labels_of(&meta.labels);
    if let Some(problem) = bad_dataplane_mode(&labels, object, "the pod does not opt out") {
        out.problems.push(problem);
    }
    let service_account = spec
        .and_then(|s| s.service_account_name.clone())
        .filter(|sa| !sa.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned());
    out.value = Some(Workload {
        name,
        namespace,
        uid: meta.uid.clone(),
        service_account,
        node,
        ips,
        netns: None,
        labels,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
    });
    out
}

/// A Service, with its EndpointSlices (those labelled `kubernetes.io/service-name` with its
/// name) for what the Service alone does not say: the number a named `targetPort` resolves
/// to, which a slice's port of the same name carries.
///
/// `ExternalName` services are DNS aliases, not in the model. A port whose named target is
/// not resolved yet (no slice, e.g. no ready pod) is left out until a slice resolves it.
pub fn service(svc: &KubeService, slices: &[&EndpointSlice]) -> Converted<Service> {
    let meta = &svc.metadata;
    let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
        return Converted::of(None);
    };
    let Some(spec) = svc.spec.as_ref() else {
        return Converted::of(None);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Converted::of(None);
    }
    let object = || format!("Service {namespace}/{name}");
    let mut out = Converted::of(None);
    let vip_texts: Vec<&String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    let mut vips = Vec::new();
    for text in vip_texts
        .into_iter()
        .filter(|t| !t.is_empty() && *t != "None")
    {
        match text.parse::<IpAddr>() {
            Ok(ip) => vips.push(ip),
            Err(_) => out.problems.push(Problem {
                object: object(),
                message: format!("invalid cluster IP {text:?}; ignored"),
            }),
        }
    }
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        match service_port(port, slices) {
            Ok(Some(p)) => ports.push(p),
            Ok(None) => {}
            Err(message) => out.problems.push(Problem {
                object: object(),
                message,
            }),
        }
    }
    out.value = Some(Service {
        name,
        namespace,
        vips,
        ports,
        selector: spec.selector.clone().unwrap_or_default(),
        labels: labels_of(&meta.labels),
    });
    out
}

/// One port; `Ok(None)` while a named target port is unresolved.
fn service_port(
    port: &KubeServicePort,
    slices: &[&EndpointSlice],
) -> Result<Option<ServicePort>, String> {
    let label = port
        .name
        .as_deref()
        .map_or_else(|| port.port.to_string(), str::to_owned);
    let number = |n: i32, what: &str| {
        u16::try_from(n).ok().filter(|&n| n != 0).ok_or_else(|| {
            format!("port {label}: {what} {n} is not a port (1-65535); port ignored")
        })
    };
    let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        other => {
            return Err(format!(
                "port {label}: unknown protocol {other:?}; port ignored"
            ))
        }
    };
    let service_port = number(port.port, "port")?;
    let target_port = match &port.target_port {
        None => service_port,
        Some(IntOrString::Int(n)) => number(*n, "targetPort")?,
        Some(IntOrString::String(_)) => {
            let wanted = port.name.as_deref().unwrap_or_default();
            let resolved = slices
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .find(|p| p.name.as_deref().unwrap_or_default() == wanted)
                .and_then(|p| p.port);
            match resolved {
                Some(n) => number(n, "resolved targetPort")?,
                None => return Ok(None),
            }
        }
    };
    Ok(Some(ServicePort {
        name: port.name.clone(),
        port: service_port,
        target_port,
        protocol,
    }))
}
