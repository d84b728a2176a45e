//! The YAML file source: read a document, check every field, and build the model.
//!
//! Errors name the field by path (`workloads[2].ips[0]`): serde_path_to_error tracks it for
//! schema errors, and the checks below spell it for values. The schema is in the crate README.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use super::document::{self, Document};
use super::{ConfigError, FieldProblem, Origin};
use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::gateways::Gateway;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::api::TrafficPolicy;
use crate::model::labels::{DataplaneMode, DATAPLANE_MODE};
use crate::model::{
    AddressSlot, Cidr, ClusterState, GatewayApiKind, Model, ModelError, Namespace, Node,
    RedirectSettings, Service, ServicePort, Trimmed, Workload, DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_TRUST_DOMAIN,
};

/// Builds a model from YAML text; messages call it `config`.
pub fn parse(text: &str) -> Result<Model, ConfigError> {
    parse_bytes(text.as_bytes(), Origin::Text)
}

/// Reads and builds the model in the YAML file at `path`; messages name the file.
pub fn load(path: impl AsRef<Path>) -> Result<Model, ConfigError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_bytes(&bytes, Origin::File(path.to_owned()))
}

pub(super) fn parse_bytes(bytes: &[u8], origin: Origin) -> Result<Model, ConfigError> {
    if is_blank(bytes) {
        return Err(ConfigError::Invalid {
            origin,
            field: DOCUMENT.to_owned(),
            problem: FieldProblem::EmptyDocument,
        });
    }
    let yaml = serde_yaml::Deserializer::from_slice(bytes);
    let document: Document = serde_path_to_error::deserialize(yaml).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            DOCUMENT.to_owned()
        } else {
            path
        };
        let message = err.into_inner().to_string();
        ConfigError::Schema {
            origin: origin.clone(),
            message: without_path(&message, &field).to_owned(),
            field,
        }
    })?;
    build(document).map_err(|Rejected { field, problem }| ConfigError::Invalid {
        origin,
        field,
        problem,
    })
}

/// How messages name the document as a whole.
const DOCUMENT: &str = "(document)";

/// Whether the text holds nothing but blank lines, comments and document markers.
fn is_blank(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes).lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// serde_yaml starts a message with its own path, that of `field` or of an ancestor; the
/// message already follows `field`, so that prefix goes.
fn without_path<'a>(message: &'a str, field: &str) -> &'a str {
    let mut prefix = field;
    loop {
        if let Some(rest) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(": "))
        {
            return rest;
        }
        match prefix.rfind(['.', '[']) {
            Some(cut) => prefix = &prefix[..cut],
            None => return message,
        }
    }
}

/// A field and what is wrong with it, before the origin is known.
struct Rejected {
    field: String,
    problem: FieldProblem,
}

fn reject(field: String, problem: impl Into<FieldProblem>) -> Rejected {
    Rejected {
        field,
        problem: problem.into(),
    }
}

fn build(document: Document) -> Result<Model, Rejected> {
    let trust_domain = match document.trust_domain {
        None => DEFAULT_TRUST_DOMAIN.to_owned(),
        Some(value) => trust_domain(value)?,
    };
    let nodes = collect(document.nodes, node)?;
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let namespaces = collect(document.namespaces, namespace)?;
    let workloads = collect(document.workloads, |i, w| workload(i, w, &node_names))?;
    let services = collect(document.services, service)?;
    let gateways = collect(document.gateways, |i, m| {
        object(m, &format!("gateways[{i}]"), |metadata, spec| Gateway {
            metadata,
            spec,
            status: None,
        })
    })?;
    let http_routes = collect(document.http_routes, |i, m| {
        object(m, &format!("httpRoutes[{i}]"), |metadata, spec| HttpRoute {
            metadata,
            spec,
            status: None,
        })
    })?;
    let grpc_routes = collect(document.grpc_routes, |i, m| {
        object(m, &format!("grpcRoutes[{i}]"), |metadata, spec| GrpcRoute {
            metadata,
            spec,
            status: None,
        })
    })?;
    let traffic_policies = collect(document.traffic_policies, |i, m| {
        object(m, &format!("trafficPolicies[{i}]"), |metadata, spec| {
            TrafficPolicy {
                metadata,
                spec,
                status: None,
            }
        })
    })?;
    let redirect = redirect(document.redirect)?;
    let state = ClusterState {
        trust_domain,
        nodes,
        namespaces,
        workloads,
        services,
        gateways,
        http_routes,
        grpc_routes,
        traffic_policies,
        redirect,
    };
    Model::new(state).map_err(|err| reject(locate(&err), err))
}

/// Converts each entry of a list with its position, stopping at the first refusal.
fn collect<D, T>(
    entries: Vec<D>,
    convert: impl Fn(usize, D) -> Result<T, Rejected>,
) -> Result<Vec<T>, Rejected> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| convert(i, entry))
        .collect()
}

/// The path of the entry a [`ModelError`] is about.
fn locate(err: &ModelError) -> String {
    match err {
        ModelError::DuplicateNode { index, .. } => format!("nodes[{index}].name"),
        ModelError::DuplicateNamespace { index, .. } => format!("namespaces[{index}].name"),
        ModelError::DuplicateWorkload { index, .. } => format!("workloads[{index}].name"),
        ModelError::DuplicateService { index, .. } => format!("services[{index}].name"),
        ModelError::DuplicateObject { kind, index, .. } => {
            format!("{}[{index}].metadata.name", list_of(*kind))
        }
        ModelError::Unnamed { kind, index, field } => {
            format!("{}[{index}].metadata.{field}", list_of(*kind))
        }
        ModelError::AddressInUse { claimant, .. } => match claimant {
            AddressSlot::WorkloadIp { index, ip_index } => {
                format!("workloads[{index}].ips[{ip_index}]")
            }
            AddressSlot::ServiceVip { index, vip_index } => {
                format!("services[{index}].vips[{vip_index}]")
            }
        },
    }
}

/// The document's key for a list of objects of `kind`.
fn list_of(kind: GatewayApiKind) -> &'static str {
    match kind {
        GatewayApiKind::Gateway => "gateways",
        GatewayApiKind::HttpRoute => "httpRoutes",
        GatewayApiKind::GrpcRoute => "grpcRoutes",
        GatewayApiKind::TrafficPolicy => "trafficPolicies",
    }
}

/// A Gateway API object from its manifest at `at`: the kind and apiVersion must be `K`'s,
/// name and namespace given; the object is then trimmed as the model keeps it.
fn object<K, S>(
    manifest: document::Manifest<S>,
    at: &str,
    build: impl FnOnce(ObjectMeta, S) -> K,
) -> Result<K, Rejected>
where
    K: Resource<DynamicType = ()> + Trimmed,
{
    let expected_kind = K::kind(&());
    if manifest.kind != expected_kind {
        let problem = FieldProblem::WrongKind {
            expected: expected_kind.into_owned(),
            got: manifest.kind,
        };
        return Err(reject(format!("{at}.kind"), problem));
    }
    let expected_version = K::api_version(&());
    if manifest.api_version != expected_version {
        let problem = FieldProblem::WrongApiVersion {
            expected: expected_version.into_owned(),
            got: manifest.api_version,
        };
        return Err(reject(format!("{at}.apiVersion"), problem));
    }
    let mut metadata = manifest.metadata;
    let name = metadata.name.take().unwrap_or_default();
    metadata.name = Some(object_name(name, format!("{at}.metadata.name"))?);
    let namespace = metadata.namespace.take().unwrap_or_default();
    metadata.namespace = Some(object_name(namespace, format!("{at}.metadata.namespace"))?);
    Ok(build(metadata, manifest.spec).trimmed())
}

fn node(i: usize, node: document::Node) -> Result<Node, Rejected> {
    Ok(Node {
        name: object_name(node.name, format!("nodes[{i}].name"))?,
        address: ip(&node.address, format!("nodes[{i}].address"))?,
    })
}

fn namespace(i: usize, ns: document::Namespace) -> Result<Namespace, Rejected> {
    let name = object_name(ns.name, format!("namespaces[{i}].name"))?;
    dataplane_mode(&ns.labels, &format!("namespaces[{i}]"))?;
    Ok(Namespace {
        name,
        labels: ns.labels,
    })
}

fn workload(i: usize, w: document::Workload, nodes: &[String]) -> Result<Workload, Rejected> {
    let at = |field: &str| format!("workloads[{i}].{field}");
    let name = object_name(w.name, at("name"))?;
    let namespace = object_name(w.namespace, at("namespace"))?;
    let service_account = w
        .service_account
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned());
    let service_account = object_name(service_account, at("serviceAccount"))?;
    if !nodes.contains(&w.node) {
        let problem = FieldProblem::UnknownNode {
            node: w.node,
            known: nodes.to_vec(),
        };
        return Err(reject(at("node"), problem));
    }
    let ips = addresses(&w.ips, &at("ips"))?;
    if w.netns.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(reject(at("netns"), FieldProblem::Empty));
    }
    dataplane_mode(&w.labels, &format!("workloads[{i}]"))?;
    if w.uid.as_ref().is_some_and(String::is_empty) {
        return Err(reject(at("uid"), FieldProblem::Empty));
    }
    Ok(Workload {
        name,
        namespace,
        uid: w.uid,
        service_account,
        node: w.node,
        ips,
        netns: w.netns,
        labels: w.labels,
        host_network: w.host_network,
    })
}

fn service(i: usize, svc: document::Service) -> Result<Service, Rejected> {
    let at = |field: &str| format!("services[{i}].{field}");
    let name = object_name(svc.name, at("name"))?;
    let namespace = object_name(svc.namespace, at("namespace"))?;
    let vips = addresses(&svc.vips, &at("vips"))?;
    let ports = collect(svc.ports, |j, p| {
        Ok(ServicePort {
            port: port(p.port, at(&format!("ports[{j}].port")))?,
            target_port: port(
                p.target_port.unwrap_or(p.port),
                at(&format!("ports[{j}].targetPort")),
            )?,
            name: p.name,
            protocol: p.protocol,
        })
    })?;
    Ok(Service {
        name,
        namespace,
        vips,
        ports,
        selector: svc.selector,
        labels: svc.labels,
    })
}

fn redirect(redirect: document::Redirect) -> Result<RedirectSettings, Rejected> {
    let exclude_ports = collect(redirect.exclude_ports, |j, p| {
        port(p, format!("redirect.excludePorts[{j}]"))
    })?;
    let exclude_cidrs = collect(redirect.exclude_cidrs, |j, text| {
        text.parse::<Cidr>()
            .map_err(|err| reject(format!("redirect.excludeCidrs[{j}]"), err))
    })?;
    Ok(RedirectSettings {
        exclude_ports,
        exclude_cidrs,
    })
}

fn addresses(texts: &[String], field: &str) -> Result<Vec<IpAddr>, Rejected> {
    texts
        .iter()
        .enumerate()
        .map(|(j, text)| ip(text, format!("{field}[{j}]")))
        .collect()
}

fn ip(text: &str, field: String) -> Result<IpAddr, Rejected> {
    text.parse().map_err(|_| {
        let value = text.to_owned();
        reject(field, FieldProblem::InvalidIp { value })
    })
}

fn port(port: u16, field: String) -> Result<u16, Rejected> {
    if port == 0 {
        return Err(reject(field, FieldProblem::ZeroPort));
    }
    Ok(port)
}

/// A Kubernetes object name (RFC 1123 subdomain): it ends up in SPIFFE IDs and in
/// `namespace/name` keys, so `/`, spaces and capitals are refused here.
fn object_name(value: String, field: String) -> Result<String, Rejected> {
    let bytes = value.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.';
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid = bytes.len() <= 253
        && bytes.iter().all(allowed)
        && alnum(bytes.first())
        && alnum(bytes.last());
    if value.is_empty() {
        Err(reject(field, FieldProblem::Empty))
    } else if !valid {
        Err(reject(field, FieldProblem::InvalidName { value }))
    } else {
        Ok(value)
    }
}

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-` and `_`.
fn trust_domain(value: String) -> Result<String, Rejected> {
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if value.is_empty() || !value.bytes().all(allowed) {
        return Err(reject(
            "trustDomain".to_owned(),
            FieldProblem::TrustDomain { value },
        ));
    }
    Ok(value)
}

/// Refuses a value of `ambit.dev/dataplane-mode` other than `ambient` and `none`.
fn dataplane_mode(labels: &BTreeMap<String, String>, object: &str) -> Result<(), Rejected> {
    match labels.get(DATAPLANE_MODE) {
        Some(value) if DataplaneMode::parse(value).is_none() => Err(reject(
            format!("{object}.labels[\"{DATAPLANE_MODE}\"]"),
            FieldProblem::DataplaneMode {
                value: value.clone(),
            },
        )),
        _ => Ok(()),
    }
}
