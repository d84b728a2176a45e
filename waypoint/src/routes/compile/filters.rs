//! Validating and compiling an HTTPRoute rule's filters and its backendRefs' filters.

use gateway_api::experimental::httproutes as gw;
use http::header::HeaderValue;
use http::StatusCode;

use super::{backend, port_number, BackendFilters};
use crate::model::Services;
use crate::routes::filters::{HeaderModifier, Mirror, PathModifier, Redirect, Rewrite};
use crate::routes::{BackendRef, RouteId, RuleFilters};

/// Compiles a Request/ResponseHeaderModifier. The four places it appears (rule and backendRef,
/// request and response) are separate generated types with the same fields, hence a macro.
macro_rules! header_modifier {
    ($m:expr) => {{
        let m = $m;
        HeaderModifier::compile(
            m.set
                .iter()
                .flatten()
                .map(|h| (h.name.as_str(), h.value.as_str())),
            m.add
                .iter()
                .flatten()
                .map(|h| (h.name.as_str(), h.value.as_str())),
            m.remove.as_deref().unwrap_or_default(),
        )
    }};
}

pub(super) fn backend_filters(
    filters: &[gw::HttpRouteRulesBackendRefsFilters],
) -> Result<BackendFilters, String> {
    use gw::HttpRouteRulesBackendRefsFiltersType as T;
    let (mut request, mut response) = (None, None);
    for f in filters {
        match f.r#type {
            T::RequestHeaderModifier => {
                let m = f
                    .request_header_modifier
                    .as_ref()
                    .ok_or("requestHeaderModifier is missing")?;
                request = Some(header_modifier!(m)?);
            }
            T::ResponseHeaderModifier => {
                let m = f
                    .response_header_modifier
                    .as_ref()
                    .ok_or("responseHeaderModifier is missing")?;
                response = Some(header_modifier!(m)?);
            }
            ref other => return Err(format!("filter {other:?} is not supported on a backendRef")),
        }
    }
    Ok((request, response))
}

pub(super) fn rule_filters(
    id: &RouteId,
    filters: &[gw::HttpRouteRulesFilters],
    services: &Services,
) -> Result<RuleFilters, String> {
    use gw::HttpRouteRulesFiltersType as T;
    let mut out = RuleFilters::default();
    for (i, f) in filters.iter().enumerate() {
        let missing = |field: &str| format!("filters[{i}]: {field} is missing");
        match f.r#type {
            T::RequestHeaderModifier => {
                let m = f
                    .request_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("requestHeaderModifier"))?;
                out.request_headers = Some(header_modifier!(m)?);
            }
            T::ResponseHeaderModifier => {
                let m = f
                    .response_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("responseHeaderModifier"))?;
                out.response_headers = Some(header_modifier!(m)?);
            }
            T::RequestRedirect => {
                let r = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("requestRedirect"))?;
                let status = r.status_code.unwrap_or(302);
                if ![301, 302, 303, 307, 308].contains(&status) {
                    return Err(format!(
                        "filters[{i}]: redirect statusCode {status} is not allowed"
                    ));
                }
                out.redirect = Some(Redirect {
                    scheme: r.scheme.as_ref().map(|s| match s {
                        gw::HttpRouteRulesFiltersRequestRedirectScheme::Http => "http".to_owned(),
                        gw::HttpRouteRulesFiltersRequestRedirectScheme::Https => "https".to_owned(),
                    }),
                    hostname: r.hostname.clone(),
                    port: r.port.map(port_number).transpose()?,
                    path: r.path.as_ref().map(|p| path_modifier(
                        matches!(p.r#type, gw::HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath),
                        p.replace_full_path.as_deref(),
                        p.replace_prefix_match.as_deref(),
                    )).transpose()?,
                    status: StatusCode::from_u16(status as u16).map_err(|e| e.to_string())?,
                });
            }
            T::UrlRewrite => {
                let r = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("urlRewrite"))?;
                out.rewrite = Some(Rewrite {
                    hostname: r
                        .hostname
                        .as_deref()
                        .map(|h| {
                            HeaderValue::from_str(h)
                                .map_err(|_| format!("filters[{i}]: hostname {h:?} is invalid"))
                        })
                        .transpose()?,
                    path: r
                        .path
                        .as_ref()
                        .map(|p| {
                            path_modifier(
                                matches!(
                                    p.r#type,
                                    gw::HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath
                                ),
                                p.replace_full_path.as_deref(),
                                p.replace_prefix_match.as_deref(),
                            )
                        })
                        .transpose()?,
                });
            }
            T::RequestMirror => {
                let m = f
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing("requestMirror"))?;
                let b = &m.backend_ref;
                let r = (
                    b.group.as_deref(),
                    b.kind.as_deref(),
                    b.namespace.as_deref(),
                    &b.name,
                    b.port,
                );
                let (service, port) =
                    backend(id, r, services).map_err(|e| format!("filters[{i}]: mirror {e}"))?;
                let (numerator, denominator) = match (&m.fraction, m.percent) {
                    (Some(f), _) => (f.numerator, f.denominator.unwrap_or(100)),
                    (None, Some(p)) => (p, 100),
                    (None, None) => (100, 100),
                };
                let (Ok(numerator), Ok(denominator)) =
                    (u32::try_from(numerator), u32::try_from(denominator))
                else {
                    return Err(format!(
                        "filters[{i}]: mirror fraction must not be negative"
                    ));
                };
                if denominator == 0 {
                    return Err(format!("filters[{i}]: mirror fraction denominator is 0"));
                }
                out.mirrors.push(Mirror {
                    backend: BackendRef {
                        service,
                        port,
                        request_headers: None,
                        response_headers: None,
                    },
                    numerator,
                    denominator,
                });
            }
            ref other => return Err(format!("filters[{i}]: filter {other:?} is not supported")),
        }
    }
    if out.redirect.is_some() && out.rewrite.is_some() {
        return Err("RequestRedirect and URLRewrite cannot be used on the same rule".to_owned());
    }
    Ok(out)
}

fn path_modifier(
    full: bool,
    full_path: Option<&str>,
    prefix: Option<&str>,
) -> Result<PathModifier, String> {
    if full {
        full_path
            .map(|p| PathModifier::ReplaceFullPath(p.to_owned()))
            .ok_or_else(|| "ReplaceFullPath needs replaceFullPath".to_owned())
    } else {
        prefix
            .map(|p| PathModifier::ReplacePrefixMatch(p.to_owned()))
            .ok_or_else(|| "ReplacePrefixMatch needs replacePrefixMatch".to_owned())
    }
}
