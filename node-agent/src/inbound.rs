//! The inbound side of the tunnel (15008): accept HBONE from other agents and deliver each
//! CONNECT to a pod on this node.
//!
//! mTLS, HTTP/2 and the status codes are `ambit_mesh::hbone`'s; this module decides: only
//! workloads on this node are delivered to (400 otherwise), and a pod that refuses is a 503.
//! The caller's identity is the one it proved with its certificate and is logged per
//! connection.

use std::net::IpAddr;
use std::sync::Arc;

use ambit_mesh::hbone::{ConnectRequest, Inbound, Refusal, TunnelBytes};
use ambit_mesh::model::Model;
use tokio::net::TcpStream;
use tokio::sync::watch;

pub struct LocalPods {
    pub node: String,
    pub model: watch::Receiver<Arc<Model>>,
    /// Deliveries leave from the agent's address, as outbound relays do.
    pub source: Option<IpAddr>,
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
        let stream = crate::dial::connect_from(self.source, target)
            .await
            .map_err(Refusal::Unreachable)?;
        let _ = stream.set_nodelay(true);
        tracing::info!(
            caller = %request.caller,
            %target,
            %workload,
            client = ?request.forwarded_for,
            "inbound connection"
        );
        Ok(stream)
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
        }
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
