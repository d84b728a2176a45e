//! What Ambit's proxies share: the workload model and its config sources.

pub mod config;
pub mod model;
