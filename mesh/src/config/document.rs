//! The YAML document as written: camelCase keys, unknown keys refused, values not yet checked.
//!
//! Addresses and CIDRs stay text here, so that `file.rs` can refuse a bad one with its own
//! message and the path of the field; everything else is typed and checked by serde.
//! Gateway API objects are read as their manifests (`apiVersion`, `kind`, `metadata`,
//! `spec`) into the gateway-api crate's spec types; `file.rs` checks the kind.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gateway_api::experimental::grpcroutes::GrpcRouteSpec;
use gateway_api::experimental::httproutes::HttpRouteSpec;
use gateway_api::gateways::GatewaySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::api::TrafficPolicySpec;
use crate::model::Protocol;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Document {
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub workloads: Vec<Workload>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub gateways: Vec<Manifest<GatewaySpec>>,
    #[serde(default)]
    pub http_routes: Vec<Manifest<HttpRouteSpec>>,
    #[serde(default)]
    pub grpc_routes: Vec<Manifest<GrpcRouteSpec>>,
    #[serde(default)]
    pub traffic_policies: Vec<Manifest<TrafficPolicySpec>>,
    #[serde(default)]
    pub redirect: Redirect,
}

/// A Kubernetes object as users write it. `status` is accepted (a `kubectl get -o yaml`
/// pastes it) and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Manifest<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: S,
    #[serde(default, rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Node {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Namespace {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Workload {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
    pub service_account: Option<String>,
    pub node: String,
    #[serde(default)]
    pub ips: Vec<String>,
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub host_network: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Service {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub vips: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    /// Defaults to `port`, as in Kubernetes.
    pub target_port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Redirect {
    #[serde(default)]
    pub exclude_ports: Vec<u16>,
    #[serde(default)]
    pub exclude_cidrs: Vec<String>,
}
