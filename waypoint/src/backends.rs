//! Runtime state per backend Service: its endpoints' health and its connection pool limits.
//!
//! State survives config swaps for Services whose spec did not change, so an ejected
//! endpoint stays ejected when an unrelated route changes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{ServiceName, Services};
use crate::outlier::EndpointSet;
use crate::pool::Limits;

pub struct BackendService {
    pub service: Arc<crate::model::Service>,
    pub limits: Option<Arc<Limits>>,
    ports: HashMap<u16, Arc<EndpointSet>>,
}

impl BackendService {
    fn new(service: Arc<crate::model::Service>) -> Self {
        let policy = &service.traffic_policy;
        let per_connection = policy
            .connection_pool
            .as_ref()
            .and_then(|p| p.max_requests_per_connection)
            .filter(|n| *n > 0);
        if let Some(n) = per_connection {
            tracing::warn!(
                service = %service.service_name(),
                "connectionPool.maxRequestsPerConnection: {n} is not enforced yet: connections are reused without a request count"
            );
        }
        let limits = policy
            .connection_pool
            .as_ref()
            .map(|p| Arc::new(Limits::new(p)));
        let ports = service
            .ports
            .iter()
            .map(|p| {
                let set =
                    EndpointSet::new(&p.endpoints, policy.outlier_detection.clone(), p.protocol());
                (p.port, Arc::new(set))
            })
            .collect();
        BackendService {
            service,
            limits,
            ports,
        }
    }

    pub fn endpoints(&self, port: u16) -> Option<&Arc<EndpointSet>> {
        self.ports.get(&port)
    }
}

#[derive(Default)]
pub struct Backends(HashMap<ServiceName, Arc<BackendService>>);

impl Backends {
    /// Builds state for `services`, keeping `previous` state of unchanged Services.
    pub fn build(services: &Services, previous: &Backends) -> Self {
        Backends(
            services
                .iter()
                .map(|svc| {
                    let name = svc.service_name();
                    let state = match previous.0.get(&name) {
                        Some(old) if *old.service == **svc => old.clone(),
                        _ => Arc::new(BackendService::new(svc.clone())),
                    };
                    (name, state)
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &ServiceName) -> Option<&Arc<BackendService>> {
        self.0.get(name)
    }
}
