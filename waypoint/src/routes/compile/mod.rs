//! Validating one HTTPRoute or TCPRoute and compiling it into rules.
//!
//! A route is compiled whole or not at all: the first problem found becomes the reason it is
//! rejected, phrased for the route's author.

mod filters;
mod grpc;

pub use grpc::as_http_route;

use std::sync::Arc;
use std::time::Duration;

use gateway_api::experimental::httproutes as gw;
use gateway_api::experimental::tcproutes as tcp;
use http::StatusCode;

use super::filters::{HeaderModifier, PathModifier, Redirect, Rewrite};
use super::matching::RequestMatch;
use super::{BackendRef, RouteId, Rule, TcpRule, Timeouts, WeightedBackend};
use crate::model::{ServiceName, Services};
use crate::policy::parse_duration;
use crate::retries::{RetryBudget, RetryBudgetConfig, RetryPolicy};

/// A parent Service and, if the parentRef named one, the port the route is limited to.
pub type Parent = (ServiceName, Option<u16>);

pub struct CompiledHttp {
    pub parents: Vec<Parent>,
    pub entries: Vec<(RequestMatch, Arc<Rule>)>,
}

pub struct CompiledTcp {
    pub parents: Vec<Parent>,
    pub rule: Arc<TcpRule>,
}

pub fn http_route(
    route: &gw::HttpRoute,
    services: &Services,
    budget: &RetryBudgetConfig,
) -> Result<CompiledHttp, String> {
    let id = RouteId::of(&route.metadata);
    let parents = service_parents(
        &id,
        route.spec.parent_refs.iter().flatten().map(|p| {
            (
                p.group.as_deref(),
                p.kind.as_deref(),
                p.namespace.as_deref(),
                &p.name,
                p.port,
            )
        }),
        services,
    )?;
    let mut entries = Vec::new();
    for (index, rule) in route.spec.rules.iter().flatten().enumerate() {
        let compiled = Arc::new(
            http_rule(&id, index, rule, services, budget)
                .map_err(|e| format!("rules[{index}]: {e}"))?,
        );
        let matches = match rule.matches.as_deref() {
            None | Some([]) => vec![RequestMatch::default()],
            Some(ms) => ms
                .iter()
                .map(RequestMatch::compile)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("rules[{index}].matches: {e}"))?,
        };
        let needs_prefix = matches!(
            (&compiled.filters.rewrite, &compiled.filters.redirect),
            (
                Some(Rewrite {
                    path: Some(PathModifier::ReplacePrefixMatch(_)),
                    ..
                }),
                _
            ) | (
                _,
                Some(Redirect {
                    path: Some(PathModifier::ReplacePrefixMatch(_)),
                    ..
                })
            )
        );
        if needs_prefix && matches.iter().any(|m| m.prefix().is_none()) {
            return Err(format!(
                "rules[{index}]: ReplacePrefixMatch needs every match to be a PathPrefix"
            ));
        }
        entries.extend(matches.into_iter().map(|m| (m, compiled.clone())));
    }
    Ok(CompiledHttp { parents, entries })
}

pub fn tcp_route(route: &tcp::TcpRoute, services: &Services) -> Result<CompiledTcp, String> {
    let id = RouteId::of(&route.metadata);
    let parents = service_parents(
        &id,
        route.spec.parent_refs.iter().flatten().map(|p| {
            (
                p.group.as_deref(),
                p.kind.as_deref(),
                p.namespace.as_deref(),
                &p.name,
                p.port,
            )
        }),
        services,
    )?;
    let [rule] = route.spec.rules.as_slice() else {
        return Err(format!(
            "a TCPRoute needs exactly one rule, found {}",
            route.spec.rules.len()
        ));
    };
    let refs = rule.backend_refs.iter().map(|b| {
        let r = (
            b.group.as_deref(),
            b.kind.as_deref(),
            b.namespace.as_deref(),
            &b.name,
            b.port,
        );
        (r, b.weight)
    });
    let backends = weighted(&id, refs, services, |_| Ok((None, None)))?;
    if backends.is_empty() {
        return Err("rules[0]: backendRefs are empty or all have weight 0".to_owned());
    }
    let label = format!("{id}");
    Ok(CompiledTcp {
        parents,
        rule: Arc::new(TcpRule {
            route: id,
            label,
            backends,
        }),
    })
}

/// (group, kind, namespace, name, port) of a parentRef or backendRef.
pub(super) type ObjectRef<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a String,
    Option<i32>,
);

fn is_service(group: Option<&str>, kind: Option<&str>) -> bool {
    matches!(group, None | Some("") | Some("core")) && matches!(kind, None | Some("Service"))
}

fn service_parents<'a>(
    id: &RouteId,
    refs: impl Iterator<Item = ObjectRef<'a>>,
    services: &Services,
) -> Result<Vec<Parent>, String> {
    let mut parents = Vec::new();
    for (group, kind, namespace, name, port) in refs {
        // A parentRef without kind means Gateway; those are not the waypoint's to serve.
        if kind.is_none() || !is_service(group, kind) {
            continue;
        }
        let service = ServiceName::new(namespace.unwrap_or(&id.namespace), name.as_str());
        if services.get(&service).is_none() {
            return Err(format!("parentRef Service {service} does not exist"));
        }
        parents.push((service, port.map(port_number).transpose()?));
    }
    if parents.is_empty() {
        return Err("no parentRef of kind Service; the waypoint serves only GAMMA routes".into());
    }
    Ok(parents)
}

pub(super) fn port_number(port: i32) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {port} is out of range"))
}

pub(super) fn backend<'a>(
    id: &RouteId,
    r: ObjectRef<'a>,
    services: &Services,
) -> Result<(ServiceName, u16), String> {
    let (group, kind, namespace, name, port) = r;
    if !is_service(group, kind) {
        return Err(format!(
            "backendRef {name} is a {}, only Services are supported",
            kind.unwrap_or("?")
        ));
    }
    let ns = namespace.unwrap_or(&id.namespace);
    if ns != id.namespace {
        return Err(format!(
            "backendRef {ns}/{name} is in another namespace; ReferenceGrant is not supported yet"
        ));
    }
    let service = ServiceName::new(ns, name.as_str());
    let svc = services
        .get(&service)
        .ok_or_else(|| format!("backendRef Service {service} does not exist"))?;
    let port = port
        .ok_or_else(|| format!("backendRef {service} needs a port"))
        .and_then(port_number)?;
    if svc.port(port).is_none() {
        return Err(format!("backendRef {service} has no port {port}"));
    }
    Ok((service, port))
}

pub(super) type BackendFilters = (Option<HeaderModifier>, Option<HeaderModifier>);

fn weighted<'a, F>(
    id: &RouteId,
    refs: impl Iterator<Item = (ObjectRef<'a>, Option<i32>)>,
    services: &Services,
    filters: F,
) -> Result<Vec<WeightedBackend>, String>
where
    F: Fn(usize) -> Result<BackendFilters, String>,
{
    let mut out = Vec::new();
    for (i, (r, weight)) in refs.enumerate() {
        let (service, port) =
            backend(id, r, services).map_err(|e| format!("backendRefs[{i}]: {e}"))?;
        let weight = u32::try_from(weight.unwrap_or(1))
            .map_err(|_| format!("backendRefs[{i}]: weight must not be negative"))?;
        let (request_headers, response_headers) = filters(i)?;
        if weight > 0 {
            out.push(WeightedBackend {
                backend: BackendRef {
                    service,
                    port,
                    request_headers,
                    response_headers,
                },
                weight,
            });
        }
    }
    Ok(out)
}

fn http_rule(
    id: &RouteId,
    index: usize,
    rule: &gw::HttpRouteRules,
    services: &Services,
    budget: &RetryBudgetConfig,
) -> Result<Rule, String> {
    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    let backends = weighted(
        id,
        refs.iter().map(|b| {
            let r = (
                b.group.as_deref(),
                b.kind.as_deref(),
                b.namespace.as_deref(),
                &b.name,
                b.port,
            );
            (r, b.weight)
        }),
        services,
        |i| {
            filters::backend_filters(refs[i].filters.as_deref().unwrap_or_default())
                .map_err(|e| format!("backendRefs[{i}].filters: {e}"))
        },
    )?;
    if !refs.is_empty() && backends.is_empty() {
        return Err("every backendRef has weight 0".to_owned());
    }
    let filters = filters::rule_filters(id, rule.filters.as_deref().unwrap_or_default(), services)?;
    let timeouts = timeouts(rule.timeouts.as_ref())?;
    let retry = rule.retry.as_ref().map(retry_policy).transpose()?;
    Ok(Rule {
        route: id.clone(),
        index,
        label: format!("{id}/{index}"),
        filters,
        backends,
        timeouts,
        retry,
        budget: Arc::new(RetryBudget::new(budget.clone())),
    })
}

fn duration(text: Option<&str>, field: &str) -> Result<Option<Duration>, String> {
    let Some(text) = text else { return Ok(None) };
    let d = parse_duration(text).map_err(|e| format!("{field} {text:?}: {e}"))?;
    // "0s" disables the timeout.
    Ok((!d.is_zero()).then_some(d))
}

fn timeouts(t: Option<&gw::HttpRouteRulesTimeouts>) -> Result<Timeouts, String> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    let request = duration(t.request.as_deref(), "timeouts.request")?;
    let backend_request = duration(t.backend_request.as_deref(), "timeouts.backendRequest")?;
    if let (Some(r), Some(b)) = (request, backend_request) {
        if b > r {
            return Err("timeouts.backendRequest must not exceed timeouts.request".to_owned());
        }
    }
    Ok(Timeouts {
        request,
        backend_request,
    })
}

fn retry_policy(r: &gw::HttpRouteRulesRetry) -> Result<RetryPolicy, String> {
    let mut policy = RetryPolicy::default();
    if let Some(attempts) = r.attempts {
        policy.attempts =
            u32::try_from(attempts).map_err(|_| "retry.attempts must not be negative")?;
    }
    if let Some(codes) = &r.codes {
        policy.codes = codes
            .iter()
            .map(|c| {
                u16::try_from(*c)
                    .ok()
                    .filter(|c| (400..=599).contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("retry.codes: {c} is not a 4xx or 5xx status"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(backoff) = duration(r.backoff.as_deref(), "retry.backoff")? {
        policy.backoff = backoff;
    }
    Ok(policy)
}
