//! GRPCRoute as the HTTPRoute it is equivalent to.
//!
//! A gRPC call is an HTTP/2 POST to `/<package.Service>/<Method>`, so every GRPCRoute rule is
//! an HTTPRoute rule whose method match became a path match. Everything else GRPCRoute has
//! (parentRefs, header matches, the RequestHeaderModifier, ResponseHeaderModifier and
//! RequestMirror filters, weighted backendRefs) is defined by the Gateway API with the same
//! fields as in HTTPRoute, so those parts are carried over by their serialized form rather
//! than copied field by field across two sets of generated types; a field the HTTPRoute side
//! does not know fails the conversion with the route's own error text. The HTTPRoute compiler
//! then validates and compiles the result like any route, so both kinds share one set of
//! rules and one precedence.
//!
//! Method matches become (with `type: Exact`, the default):
//! - service and method: an Exact path `/<service>/<method>`;
//! - service only: a PathPrefix `/<service>` (path segments, so `/a.B` never matches `/a.BC`);
//! - method only: a RegularExpression `/[^/]+/<method>`.
//!
//! With `type: RegularExpression` the two parts are expressions, each standing for one path
//! segment (`[^/]+` when absent).

use gateway_api::experimental::grpcroutes::{
    GrpcRoute, GrpcRouteRulesMatches, GrpcRouteRulesMatchesMethodType,
};
use gateway_api::experimental::httproutes::HttpRoute;
use serde_json::{json, Value};

/// The HTTPRoute that routes exactly what `route` routes, or why there is none.
pub fn as_http_route(route: &GrpcRoute) -> Result<HttpRoute, String> {
    let mut rules = Vec::new();
    for (index, rule) in route.spec.rules.iter().flatten().enumerate() {
        let matches = rule
            .matches
            .iter()
            .flatten()
            .map(http_match)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("rules[{index}]: {e}"))?;
        let mut http_rule = json!({
            "filters": rule.filters,
            "backendRefs": rule.backend_refs,
        });
        if rule.matches.is_some() {
            http_rule["matches"] = Value::Array(matches);
        }
        if let Some(name) = &rule.name {
            http_rule["name"] = json!(name);
        }
        rules.push(http_rule);
    }
    let http = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": route.metadata,
        "spec": {
            "parentRefs": route.spec.parent_refs,
            "rules": rules,
        },
    });
    serde_json::from_value(http).map_err(|e| format!("not expressible as HTTP routing: {e}"))
}

/// One GRPCRoute match as an HTTPRoute match (JSON).
fn http_match(m: &GrpcRouteRulesMatches) -> Result<Value, String> {
    let mut out = json!({});
    if let Some(headers) = &m.headers {
        out["headers"] = json!(headers);
    }
    let Some(method) = &m.method else {
        return Ok(out);
    };
    let (service, name) = (method.service.as_deref(), method.method.as_deref());
    let regex = matches!(
        method.r#type,
        Some(GrpcRouteRulesMatchesMethodType::RegularExpression)
    );
    let path = match (regex, service, name) {
        (_, None, None) => return Err("a method match needs a service, a method or both".into()),
        (false, Some(s), Some(m)) => json!({"type": "Exact", "value": format!("/{s}/{m}")}),
        (false, Some(s), None) => json!({"type": "PathPrefix", "value": format!("/{s}")}),
        (false, None, Some(m)) => json!({
            "type": "RegularExpression",
            "value": format!("/[^/]+/{}", regex::escape(m)),
        }),
        (true, s, m) => json!({
            "type": "RegularExpression",
            "value": format!("/(?:{})/(?:{})", s.unwrap_or("[^/]+"), m.unwrap_or("[^/]+")),
        }),
    };
    for part in [service, name].into_iter().flatten() {
        if !regex && part.contains('/') {
            return Err(format!("method match part {part:?} contains '/'"));
        }
    }
    out["path"] = path;
    Ok(out)
}
