//! The inbound side of the tunnel (15008): accept HBONE from other agents and deliver each
//! CONNECT to a pod on this node.
//!
//! mTLS, HTTP/2 and the status codes are `ambit_mesh::hbone`'s; this module decides: only
//! workloads on this node are delivered to (400 otherwise), and a pod that refuses is a 503.
//! The caller's identity is the one it proved with its certificate and is logged per
//! connection. Where the pod's replies are steered back (see `return_path`), the connection
//! to the pod leaves from the caller's address, taken from `forwarded: for=`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ambit_mesh::hbone::{CertSource, ConnectRequest, Inbound, Refusal, TunnelBytes};
use ambit_mesh::identity::SpiffeId;
use ambit_mesh::model::Model;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::return_path::Steered;

pub struct LocalPods {
    pub node: String,
    pub model: watch::Receiver<Arc<Model>>,
    /// Deliveries leave from the agent's address, as outbound relays do…
    pub source: Option<IpAddr>,
    /// …except to the pods listed here (`--client-address preserve`), where they leave from
    /// the caller's.
    pub transparent: Option<Arc<Steered>>,
    /// Workload certificates by identity, for clients that name no server (see
    /// [`Inbound::certificate_at`]).
    pub certificates: Option<CertSource>,
}

impl LocalPods {
    /// The address a delivery to `request.target` leaves from, when it is the caller's.
    fn caller_address(&self, request: &ConnectRequest) -> Option<IpAddr> {
        let caller = request.forwarded_for?.ip();
        let steered = self.transparent.as_ref()?;
        steered.keeps(caller, request.target.ip()).then_some(caller)
    }
}

impl Inbound for LocalPods {
    type Upstream = TcpStream;

    async fn connect(&self, request: ConnectRequest) -> Result<TcpStream, Refusal> {
        let target = request.target;
        let workload = {
            let model = self.model.borrow();
            match model.workload_by_ip(target.ip()) {
                Some(w) if w.node == self.node => format!("{}/{}", w.namespace, w.name),
                Some(w) => {
                    return Err(Refusal::BadTarget(format!(
                        "{target} is {}/{} on node {}, not on this node ({})",
                        w.namespace, w.name, w.node, self.node
                    )))
                }
                None => {
                    return Err(Refusal::BadTarget(format!(
                        "{target} is not a workload of this mesh"
                    )))
                }
            }
        };
        let caller = self.caller_address(&request);
        let stream = crate::dial::connect(caller, self.source, target)
            .await
            .map_err(Refusal::Unreachable)?;
        let _ = stream.set_nodelay(true);
        let from = stream.local_addr().ok().map(|a: SocketAddr| a.ip());
        tracing::info!(
            caller = %request.caller,
            %target,
            %workload,
            client = ?request.forwarded_for,
            from = ?from,
            "inbound connection"
        );
        Ok(stream)
    }

    /// The certificate of the pod of this node at `local`: what a ztunnel, which dials the
    /// pod's own address on 15008 and sends no server name, expects.
    fn certificate_at(&self, local: IpAddr) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let certificates = self.certificates.as_ref()?;
        let id = {
            let model = self.model.borrow();
            let w = model
                .workload_by_ip(local)
                .filter(|w| w.node == self.node)?;
            SpiffeId::new(model.trust_domain(), &w.namespace, &w.service_account).ok()?
        };
        certificates(&id)
    }

    fn closed(&self, request: &ConnectRequest, bytes: TunnelBytes) {
        tracing::debug!(caller = %request.caller, target = %request.target, ?bytes, "inbound connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods_on(node: &str) -> LocalPods {
        let model = ambit_mesh::config::parse(
            r#"
nodes: [{name: n1, address: 192.168.50.1}, {name: n2, address: 192.168.50.2}]
namespaces: [{name: shop, labels: {ambit.dev/dataplane-mode: ambient}}]
workloads:
  - {name: echo-1, namespace: shop, serviceAccount: echo, node: n1, ips: [10.1.1.3]}
  - {name: echo-2, namespace: shop, serviceAccount: echo, node: n2, ips: [10.1.2.2]}
"#,
        )
        .unwrap();
        let (_tx, model) = watch::channel(Arc::new(model));
        LocalPods {
            node: node.into(),
            model,
            source: None,
            transparent: Some(Arc::new(Steered::default())),
            certificates: None,
        }
    }

    fn request_from(client: &str, target: &str) -> ConnectRequest {
        ConnectRequest {
            forwarded_for: Some(client.parse().unwrap()),
            ..request(target)
        }
    }

    #[test]
    fn only_pods_whose_replies_are_steered_see_the_caller() {
        let pods = pods_on("n2");
        let steered = pods.transparent.clone().unwrap();
        steered.replace(["10.1.2.2".parse().unwrap()].into());
        let caller = Some("10.1.1.3".parse().unwrap());
        assert_eq!(
            pods.caller_address(&request_from("10.1.1.3:40000", "10.1.2.2:8080")),
            caller
        );
        // Not steered, no forwarded address, another family, the pod itself.
        for req in [
            request_from("10.1.1.3:40000", "10.1.2.9:8080"),
            request("10.1.2.2:8080"),
            request_from("[fd00::3]:40000", "10.1.2.2:8080"),
            request_from("10.1.2.2:40000", "10.1.2.2:8080"),
            request_from("0.0.0.0:0", "10.1.2.2:8080"),
        ] {
            assert_eq!(pods.caller_address(&req), None, "{req:?}");
        }
        let agent_address = LocalPods {
            transparent: None,
            ..pods
        };
        assert_eq!(
            agent_address.caller_address(&request_from("10.1.1.3:40000", "10.1.2.2:8080")),
            None
        );
    }

    fn request(target: &str) -> ConnectRequest {
        ConnectRequest {
            caller: "spiffe://cluster.local/ns/shop/sa/client".parse().unwrap(),
            peer: "192.168.50.2:40000".parse().unwrap(),
            target: target.parse().unwrap(),
            forwarded_for: None,
            baggage: None,
        }
    }

    #[tokio::test]
    async fn a_pod_on_another_node_is_a_bad_target() {
        let err = pods_on("n1")
            .connect(request("10.1.2.2:8080"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Refusal::BadTarget(why) if why.contains("on node n2, not on this node (n1)")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_address_outside_the_mesh_is_a_bad_target() {
        let err = pods_on("n1")
            .connect(request("93.184.216.34:443"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Refusal::BadTarget(why) if why.contains("not a workload")),
            "{err}"
        );
    }
}
