//! The L7 clients, `http`, `grpc` and `ws`: traffic for tests of the waypoint.
//!
//! Unlike the byte-level clients, these report failures instead of failing: each prints its
//! report (see `ambit_e2e::testapp`) and exits 0, because for a waypoint test a 503, a
//! refused stream or a reset is an outcome to assert on. Only bad arguments exit nonzero.

pub mod grpc;
pub mod http;
pub mod ws;

use std::process::ExitCode;
use std::time::Duration;

use ::http::{HeaderName, HeaderValue};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

/// How long any single step (connecting, a request, a reply) may take.
#[derive(Args, Clone, Copy, Debug)]
pub struct StepTimeout {
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

impl StepTimeout {
    pub fn get(self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A `--header 'name: value'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderArg {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl HeaderArg {
    pub fn parse(arg: &str) -> Result<HeaderArg, String> {
        let (name, value) = arg
            .split_once(':')
            .ok_or_else(|| format!("{arg:?} is not `name: value`"))?;
        Ok(HeaderArg {
            name: HeaderName::try_from(name.trim())
                .map_err(|e| format!("header name {name:?}: {e}"))?,
            value: HeaderValue::try_from(value.trim())
                .map_err(|e| format!("header value {value:?}: {e}"))?,
        })
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Prints `report` as the one JSON line; a report is a success whatever it says.
pub fn print_report(report: &impl Serialize) -> Result<ExitCode> {
    println!("{}", serde_json::to_string(report)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_colon_value() {
        let header = HeaderArg::parse("X-User:  alice ").unwrap();
        assert_eq!(header.name, "x-user");
        assert_eq!(header.value, "alice");
        let header = HeaderArg::parse("x-route: a:b").unwrap();
        assert_eq!(header.value, "a:b");
        assert!(HeaderArg::parse("no colon").is_err());
        assert!(HeaderArg::parse("bad name: x").is_err());
    }
}
