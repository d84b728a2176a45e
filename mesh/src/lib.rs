//! What Ambit's proxies share: the workload model and its config sources, identities, mTLS,
//! and HBONE.

pub mod api;
pub mod config;
pub mod hbone;
pub mod identity;
pub mod model;
pub mod runtime;
pub mod tls;
