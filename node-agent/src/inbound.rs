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
