//! The route table: HTTPRoutes, GRPCRoutes and TCPRoutes attached to Services, compiled and
//! ordered. A GRPCRoute is compiled as the HTTPRoute it is equivalent to (`compile/grpc.rs`).
//!
//! [`build`] validates every route on its own: a rejected route gets a reason and, if an
//! earlier version of it was accepted, that version keeps serving; the rest of the table is
//! built regardless.
//! # Invariants
//! - a Service's matches are sorted by Gateway API precedence, so the first match wins:
//!   Exact path, longest PathPrefix, RegularExpression, then method, most headers, most query
//!   params, then the oldest route, then namespace/name, then rule and match order.
//! - `hostnames` are ignored: GAMMA routes select by parent Service, not by Host.

mod compile;
pub mod filters;
pub mod matching;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::tcproutes::TcpRoute;
use http::{HeaderMap, Method, Uri};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use self::filters::{HeaderModifier, Mirror, Redirect, Rewrite};
use self::matching::RequestMatch;
use crate::model::{Destination, ServiceName, Services};
use crate::retries::{RetryBudget, RetryBudgetConfig, RetryPolicy};

/// A route object, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    pub namespace: String,
    pub name: String,
}

impl RouteId {
    pub fn of(meta: &ObjectMeta) -> Self {
        RouteId {
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A backendRef resolved to a Service port, with its own header filters.
#[derive(Debug, Clone)]
pub struct BackendRef {
    pub service: ServiceName,
    pub port: u16,
    pub request_headers: Option<HeaderModifier>,
    pub response_headers: Option<HeaderModifier>,
}

/// A backend with a weight above 0 (weight-0 backendRefs are dropped when compiling).
#[derive(Debug, Clone)]
pub struct WeightedBackend {
    pub backend: BackendRef,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Spans every try; `None` when unset or `0s`.
    pub request: Option<Duration>,
    /// Bounds one try until response headers; `None` when unset or `0s`.
    pub backend_request: Option<Duration>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleFilters {
    pub request_headers: Option<HeaderModifier>,
    pub response_headers: Option<HeaderModifier>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
    pub mirrors: Vec<Mirror>,
}

/// One compiled HTTPRoute rule: what happens to a request that matched it.
#[derive(Debug)]
pub struct Rule {
    pub route: RouteId,
    pub index: usize,
    /// `namespace/name/index`, the metrics label.
    pub label: String,
    pub filters: RuleFilters,
    /// Empty means the parent Service itself (GAMMA: a rule without backendRefs keeps the
    /// request on the Service it was addressed to).
    pub backends: Vec<WeightedBackend>,
    pub timeouts: Timeouts,
    pub retry: Option<RetryPolicy>,
    pub budget: Arc<RetryBudget>,
}

impl Rule {
    /// The rule for Services without any HTTPRoute: straight to the Service, no retries.
    pub fn passthrough(budget: &RetryBudgetConfig) -> Self {
        Rule {
            route: RouteId {
                namespace: String::new(),
                name: String::new(),
            },
            index: 0,
            label: "passthrough".to_owned(),
            filters: RuleFilters::default(),
            backends: Vec::new(),
            timeouts: Timeouts::default(),
            retry: None,
            budget: Arc::new(RetryBudget::new(budget.clone())),
        }
    }
}

/// A TCPRoute's single rule: a weighted split of whole connections.
#[derive(Debug)]
pub struct TcpRule {
    pub route: RouteId,
    pub label: String,
    pub backends: Vec<WeightedBackend>,
}

/// The route a request matched, carried in its extensions down the stack.
#[derive(Debug, Clone)]
pub struct Routed {
    pub rule: Arc<Rule>,
    /// The PathPrefix the request matched, for `ReplacePrefixMatch`.
    pub prefix: Option<Arc<str>>,
    pub destination: Destination,
}

/// Whether and how an HTTPRoute applies to a request.
#[derive(Debug)]
pub enum Lookup {
    /// No HTTPRoute is attached to the destination: the request goes to the Service as is.
    NoRoutes,
    /// Routes are attached but none matches: 404.
    NotFound,
    Matched(Routed),
}

struct Entry {
    port: Option<u16>,
    matcher: RequestMatch,
    rule: Arc<Rule>,
}

struct TcpEntry {
    port: Option<u16>,
    rule: Arc<TcpRule>,
}

/// Every accepted route, by parent Service.
#[derive(Default)]
pub struct RouteTable {
    http: HashMap<ServiceName, Vec<Entry>>,
    tcp: HashMap<ServiceName, Vec<TcpEntry>>,
}

impl RouteTable {
    pub fn lookup(
        &self,
        dest: &Destination,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Lookup {
        let mut attached = false;
        for entry in self.http.get(&dest.service).into_iter().flatten() {
            if entry.port.is_some_and(|p| p != dest.port) {
                continue;
            }
            attached = true;
            if entry.matcher.matches(method, uri, headers) {
                return Lookup::Matched(Routed {
                    rule: entry.rule.clone(),
                    prefix: entry.matcher.prefix().map(Arc::from),
                    destination: dest.clone(),
                });
            }
        }
        if attached {
            Lookup::NotFound
        } else {
            Lookup::NoRoutes
        }
    }

    /// The TCPRoute for an opaque port: the oldest attached one (then namespace/name).
    pub fn tcp(&self, dest: &Destination) -> Option<Arc<TcpRule>> {
        self.tcp
            .get(&dest.service)?
            .iter()
            .find(|e| e.port.is_none_or(|p| p == dest.port))
            .map(|e| e.rule.clone())
    }
}

/// What became of one route object; callers log it, count it and later write a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteVerdict {
    /// `HTTPRoute`, `GRPCRoute` or `TCPRoute`.
    pub kind: &'static str,
    pub route: RouteId,
    pub accepted: bool,
    /// Why it was rejected; empty when accepted.
    pub reason: String,
}

/// The routes last accepted, by object: the fallback when a new version is rejected.
#[derive(Default, Clone)]
pub struct LastGood {
    http: HashMap<RouteId, HttpRoute>,
    grpc: HashMap<RouteId, GrpcRoute>,
    tcp: HashMap<RouteId, TcpRoute>,
}

/// Builds a table from `http`, `grpc` and `tcp` routes; see the module doc for rejections.
pub fn build(
    services: &Services,
    http: &[HttpRoute],
    grpc: &[GrpcRoute],
    tcp: &[TcpRoute],
    previous: &LastGood,
    budget: &RetryBudgetConfig,
) -> (RouteTable, Vec<RouteVerdict>, LastGood) {
    let mut verdicts = Vec::new();
    let mut last_good = LastGood::default();
    let mut http_entries: Vec<(SortKey, ServiceName, Entry)> = Vec::new();
    for route in http {
        let id = RouteId::of(&route.metadata);
        let (compiled, verdict) =
            with_fallback("HTTPRoute", &id, route, previous.http.get(&id), |r| {
                compile::http_route(r, services, budget)
            });
        verdicts.push(verdict);
        let Some((compiled, source)) = compiled else {
            continue;
        };
        last_good.http.insert(id.clone(), source.clone());
        add_entries(&mut http_entries, &id, created(&source.metadata), compiled);
    }
    for route in grpc {
        let id = RouteId::of(&route.metadata);
        let (compiled, verdict) =
            with_fallback("GRPCRoute", &id, route, previous.grpc.get(&id), |r| {
                compile::http_route(&compile::as_http_route(r)?, services, budget)
            });
        verdicts.push(verdict);
        let Some((compiled, source)) = compiled else {
            continue;
        };
        last_good.grpc.insert(id.clone(), source.clone());
        add_entries(&mut http_entries, &id, created(&source.metadata), compiled);
    }
    http_entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut table = RouteTable::default();
    for (_, service, entry) in http_entries {
        table.http.entry(service).or_default().push(entry);
    }

    let mut tcp_rules = Vec::new();
    for route in tcp {
        let id = RouteId::of(&route.metadata);
        let (compiled, verdict) =
            with_fallback("TCPRoute", &id, route, previous.tcp.get(&id), |r| {
                compile::tcp_route(r, services)
            });
        verdicts.push(verdict);
        let Some((compiled, source)) = compiled else {
            continue;
        };
        last_good.tcp.insert(id.clone(), source.clone());
        for (service, port) in compiled.parents {
            tcp_rules.push((
                (created(&source.metadata), id.clone()),
                service,
                port,
                compiled.rule.clone(),
            ));
        }
    }
    tcp_rules.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, service, port, rule) in tcp_rules {
        table
            .tcp
            .entry(service)
            .or_default()
            .push(TcpEntry { port, rule });
    }
    (table, verdicts, last_good)
}

/// Adds a compiled route's matches, one entry per parent Service, with their sort keys.
fn add_entries(
    entries: &mut Vec<(SortKey, ServiceName, Entry)>,
    id: &RouteId,
    age: (bool, Option<Time>),
    compiled: compile::CompiledHttp,
) {
    for (match_index, (matcher, rule)) in compiled.entries.into_iter().enumerate() {
        for (service, port) in &compiled.parents {
            let key = SortKey {
                specificity: Reverse(matcher.specificity()),
                age: age.clone(),
                id: id.clone(),
                rule: rule.index,
                match_index,
            };
            let entry = Entry {
                port: *port,
                matcher: matcher.clone(),
                rule: rule.clone(),
            };
            entries.push((key, service.clone(), entry));
        }
    }
}

/// Compiles `route`; if it is rejected, compiles `previous` instead (when there is one).
fn with_fallback<'r, R, C>(
    kind: &'static str,
    id: &RouteId,
    route: &'r R,
    previous: Option<&'r R>,
    compile: impl Fn(&R) -> Result<C, String>,
) -> (Option<(C, &'r R)>, RouteVerdict) {
    let verdict = |accepted, reason| RouteVerdict {
        kind,
        route: id.clone(),
        accepted,
        reason,
    };
    match compile(route) {
        Ok(c) => (Some((c, route)), verdict(true, String::new())),
        Err(reason) => match previous.map(|p| (compile(p), p)) {
            Some((Ok(c), p)) => (
                Some((c, p)),
                verdict(
                    false,
                    format!("{reason}; the previously accepted version stays in force"),
                ),
            ),
            _ => (None, verdict(false, reason)),
        },
    }
}

/// Oldest first; a route without a creationTimestamp counts as the newest.
fn created(meta: &ObjectMeta) -> (bool, Option<Time>) {
    (
        meta.creation_timestamp.is_none(),
        meta.creation_timestamp.clone(),
    )
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    specificity: Reverse<matching::Specificity>,
    age: (bool, Option<Time>),
    id: RouteId,
    rule: usize,
    match_index: usize,
}
