//! HTTPRoute filters the waypoint applies: header modifiers, redirects, URL rewrites.
//!
//! Mirrors are compiled here too but sent by [`crate::mirror`], off the request's path.

use http::header::{HeaderName, HeaderValue, HOST, LOCATION};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};

use super::BackendRef;
use crate::body::{self, Body};

/// A compiled RequestHeaderModifier or ResponseHeaderModifier: set, then add, then remove.
#[derive(Debug, Clone, Default)]
pub struct HeaderModifier {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn compile<'a>(
        set: impl IntoIterator<Item = (&'a str, &'a str)>,
        add: impl IntoIterator<Item = (&'a str, &'a str)>,
        remove: &[String],
    ) -> Result<Self, String> {
        fn pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is invalid"))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| format!("value of header {name:?} is invalid"))?;
            Ok((n, v))
        }
        Ok(HeaderModifier {
            set: set
                .into_iter()
                .map(|(n, v)| pair(n, v))
                .collect::<Result<_, _>>()?,
            add: add
                .into_iter()
                .map(|(n, v)| pair(n, v))
                .collect::<Result<_, _>>()?,
            remove: remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| format!("header name {n:?} is invalid"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

/// The path part of a RequestRedirect or URLRewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the matched `PathPrefix`; only valid on rules whose matches are all prefixes.
    ReplacePrefixMatch(String),
}

impl PathModifier {
    /// The new path for `path`, which matched `prefix` (if the match was a prefix).
    pub fn apply(&self, path: &str, prefix: Option<&str>) -> String {
        match self {
            PathModifier::ReplaceFullPath(p) => p.clone(),
            PathModifier::ReplacePrefixMatch(replacement) => {
                let prefix = prefix.unwrap_or("/");
                let rest = if prefix == "/" {
                    path
                } else {
                    path.get(prefix.len()..).unwrap_or("")
                };
                let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => format!("{replacement}{}", &rest[1..]),
                    (false, false) if !rest.is_empty() => format!("{replacement}/{rest}"),
                    _ => format!("{replacement}{rest}"),
                };
                if joined.is_empty() {
                    "/".to_owned()
                } else {
                    joined
                }
            }
        }
    }
}

/// A compiled RequestRedirect: the waypoint answers it without a backend.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: StatusCode,
}

impl Redirect {
    pub fn response<B>(&self, request: &Request<B>, prefix: Option<&str>) -> Response<Body> {
        let uri = request.uri();
        let scheme = self
            .scheme
            .clone()
            .or_else(|| uri.scheme_str().map(str::to_owned))
            .unwrap_or_else(|| "http".to_owned());
        let host = self
            .hostname
            .clone()
            .unwrap_or_else(|| request_host(request).unwrap_or_default());
        let port = self
            .port
            .filter(|p| !((scheme == "http" && *p == 80) || (scheme == "https" && *p == 443)));
        let path = self
            .path
            .as_ref()
            .map(|p| p.apply(uri.path(), prefix))
            .unwrap_or_else(|| uri.path().to_owned());
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let location = match port {
            Some(port) => format!("{scheme}://{host}:{port}{path}{query}"),
            None => format!("{scheme}://{host}{path}{query}"),
        };
        let mut response = Response::new(body::empty());
        *response.status_mut() = self.status;
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(LOCATION, value);
        }
        response
    }
}

/// A compiled URLRewrite.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

impl Rewrite {
    pub fn apply<B>(&self, request: &mut Request<B>, prefix: Option<&str>) {
        if let Some(host) = &self.hostname {
            request.headers_mut().insert(HOST, host.clone());
            if let Ok(authority) = host.to_str().unwrap_or("").parse::<Authority>() {
                set_uri(request, |parts| parts.authority = Some(authority));
            }
        }
        if let Some(path) = &self.path {
            let new_path = path.apply(request.uri().path(), prefix);
            let query = request
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            if let Ok(pq) = format!("{new_path}{query}").parse::<PathAndQuery>() {
                set_uri(request, |parts| parts.path_and_query = Some(pq));
            }
        }
    }
}

/// A compiled RequestMirror: a copy of a share of the requests goes to `backend`.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub backend: BackendRef,
    /// Mirrored share as numerator / denominator.
    pub numerator: u32,
    pub denominator: u32,
}

impl Mirror {
    pub fn sampled(&self) -> bool {
        self.numerator >= self.denominator || fastrand::u32(0..self.denominator) < self.numerator
    }
}

fn set_uri<B>(request: &mut Request<B>, edit: impl FnOnce(&mut http::uri::Parts)) {
    let mut parts = request.uri().clone().into_parts();
    edit(&mut parts);
    if parts.authority.is_some() && parts.scheme.is_none() {
        parts.scheme = Some(Scheme::HTTP);
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// The host the client addressed: `:authority` or the `Host` header, without a port.
pub fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = request
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(HOST)?
                .to_str()
                .ok()
                .map(str::to_owned)
        })?;
    if let Some(end) = raw.strip_prefix('[').and_then(|r| r.find(']')) {
        return Some(raw[..end + 2].to_owned());
    }
    Some(match raw.split_once(':') {
        Some((host, _port)) => host.to_owned(),
        None => raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: &str) -> Request<()> {
        Request::get(uri)
            .header(HOST, host)
            .body(())
            .expect("request")
    }

    #[test]
    fn redirect_swaps_scheme_host_and_path_and_keeps_the_query() {
        let redirect = Redirect {
            scheme: Some("https".into()),
            hostname: None,
            port: Some(443),
            path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
            status: StatusCode::MOVED_PERMANENTLY,
        };
        let response = redirect.response(&request("/old/a?b=1", "shop.example:8080"), Some("/old"));
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            response.headers()[LOCATION],
            "https://shop.example/new/a?b=1"
        );
        let other_port = Redirect {
            port: Some(8443),
            ..redirect
        };
        let response = other_port.response(&request("/old", "shop.example"), Some("/old"));
        assert_eq!(
            response.headers()[LOCATION],
            "https://shop.example:8443/new"
        );
    }

    #[test]
    fn request_host_drops_the_port_and_keeps_ipv6_brackets() {
        assert_eq!(
            request_host(&request("/", "shop:80")).as_deref(),
            Some("shop")
        );
        assert_eq!(
            request_host(&request("/", "[::1]:80")).as_deref(),
            Some("[::1]")
        );
        assert_eq!(request_host(&request("/", "shop")).as_deref(), Some("shop"));
    }

    #[test]
    fn header_modifier_sets_then_adds_then_removes() {
        let modifier = HeaderModifier::compile(
            [("x-a", "set")],
            [("x-a", "added"), ("x-b", "b")],
            &["x-c".to_owned()],
        )
        .expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("old"));
        headers.insert("x-c", HeaderValue::from_static("gone"));
        modifier.apply(&mut headers);
        let a: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["set", "added"]);
        assert_eq!(headers["x-b"], "b");
        assert!(!headers.contains_key("x-c"));
        assert!(HeaderModifier::compile([("bad name", "v")], [], &[]).is_err());
    }
}
