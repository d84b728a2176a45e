//! The waypoint end to end, in-process: real hyper backends and clients on 127.0.0.1.

mod config_swap;
mod grpc;
mod mirror;
mod resilience;
mod retries;
mod routing;
mod support;
mod tcp;
mod timeouts;
mod upgrade;
