//! What the waypoint knows about services, and the context each connection arrives with.
//!
//! For now the services come from a file or a test; the HBONE front end and the Kubernetes
//! source will fill the same types.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::policy::TrafficPolicySpec;

/// A Kubernetes Service, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl ServiceName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How the waypoint serves a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    /// No `appProtocol`: HTTP/1.1 or HTTP/2, detected per connection; backends get the
    /// caller's version.
    Http,
    /// `appProtocol` `http` or `kubernetes.io/ws`: backends always get HTTP/1.1.
    Http1,
    /// HTTP/2 without TLS (`appProtocol` `http2`, `grpc` or `kubernetes.io/h2c`): backends
    /// always get HTTP/2.
    Http2,
    /// Any other `appProtocol`: opaque bytes, split by TCPRoute.
    Tcp,
}

/// One port of a Service and the endpoints that serve it (one EndpointSlice's worth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub port: u16,
    /// Kubernetes `appProtocol`; unset means HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// Where the port's traffic goes: pod address and target port.
    #[serde(default)]
    pub endpoints: Vec<SocketAddr>,
}

impl ServicePort {
    pub fn protocol(&self) -> PortProtocol {
        match self.app_protocol.as_deref().map(str::to_ascii_lowercase) {
            None => PortProtocol::Http,
            Some(p) if p == "http" || p == "https" || p == "kubernetes.io/ws" => PortProtocol::Http,
            Some(p) if p == "http2" || p == "grpc" || p == "kubernetes.io/h2c" => {
                PortProtocol::Http2
            }
            Some(_) => PortProtocol::Tcp,
        }
    }
}

/// A Service the waypoint can route to, with the traffic policy that applies to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub traffic_policy: TrafficPolicySpec,
}

impl Service {
    pub fn service_name(&self) -> ServiceName {
        ServiceName::new(&self.namespace, &self.name)
    }

    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Every Service the waypoint knows, by name.
#[derive(Debug, Clone, Default)]
pub struct Services(HashMap<ServiceName, Arc<Service>>);

impl Services {
    pub fn get(&self, name: &ServiceName) -> Option<&Arc<Service>> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.0.values()
    }
}

impl FromIterator<Service> for Services {
    fn from_iter<T: IntoIterator<Item = Service>>(iter: T) -> Self {
        Services(
            iter.into_iter()
                .map(|s| (s.service_name(), Arc::new(s)))
                .collect(),
        )
    }
}

/// The Service port a connection was addressed to. The HBONE front end resolves
/// `CONNECT <vip>:<port>` to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub service: ServiceName,
    pub port: u16,
}

/// Who opened the connection, as the tunnel proved it. Every request carries it in its
/// extensions (for L7 authorization, and so that the HBONE connector can name the caller to
/// the endpoint's node agent).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The tunnel's peer: the source node agent (HBONE) or the TCP client (local runner).
    pub peer: SocketAddr,
    /// The caller's SPIFFE ID, when the connection came through mTLS.
    pub identity: Option<String>,
    /// The original client address, from the tunnel's `forwarded` header (HBONE).
    pub client: Option<SocketAddr>,
    /// The tunnel's `baggage` header describing the source workload (HBONE).
    pub baggage: Option<String>,
}

impl Caller {
    /// A caller known only by its TCP peer (no tunnel, no identity).
    pub fn plain(peer: SocketAddr) -> Self {
        Caller {
            peer,
            identity: None,
            client: None,
            baggage: None,
        }
    }

    /// The address of the original client: `forwarded` if the tunnel sent it, else the peer.
    pub fn client_addr(&self) -> SocketAddr {
        self.client.unwrap_or(self.peer)
    }
}
