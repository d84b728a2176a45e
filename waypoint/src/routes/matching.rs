//! One HTTPRoute match (path, method, headers, query) and how specific it is.
//!
//! # Invariants
//! - regular expressions match the whole value (they are anchored at compile time).
//! - a `PathPrefix` matches whole path segments: `/foo` matches `/foo` and `/foo/bar`,
//!   never `/foobar`; a trailing `/` in the prefix is ignored.

use gateway_api::experimental::httproutes as gw;
use http::{HeaderMap, HeaderName, Method, Uri};
use regex::Regex;

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Stored without its trailing `/` (except the root prefix `/`).
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(re) => re.is_match(value),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// One entry of a rule's `matches`: every condition must hold.
#[derive(Debug, Clone)]
pub struct RequestMatch {
    pub path: PathMatch,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

/// How specific a match is; a greater value wins (Gateway API rule precedence, in order:
/// Exact path, longest prefix, method, most headers, most query params).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    /// 3 Exact, 2 PathPrefix, 1 RegularExpression.
    path_kind: u8,
    path_len: usize,
    method: bool,
    headers: usize,
    query: usize,
}

impl Default for RequestMatch {
    /// A rule without `matches` matches every request (`PathPrefix /`).
    fn default() -> Self {
        RequestMatch {
            path: PathMatch::Prefix("/".to_owned()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }
}

impl RequestMatch {
    pub fn compile(m: &gw::HttpRouteRulesMatches) -> Result<Self, String> {
        let path = match &m.path {
            None => PathMatch::Prefix("/".to_owned()),
            Some(p) => {
                let value = p.value.clone().unwrap_or_else(|| "/".to_owned());
                match p
                    .r#type
                    .clone()
                    .unwrap_or(gw::HttpRouteRulesMatchesPathType::PathPrefix)
                {
                    gw::HttpRouteRulesMatchesPathType::Exact => {
                        check_path(&value)?;
                        PathMatch::Exact(value)
                    }
                    gw::HttpRouteRulesMatchesPathType::PathPrefix => {
                        check_path(&value)?;
                        let trimmed = value.trim_end_matches('/');
                        PathMatch::Prefix(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
                    }
                    gw::HttpRouteRulesMatchesPathType::RegularExpression => {
                        PathMatch::Regex(anchored(&value, "path")?)
                    }
                }
            }
        };
        let method = m.method.as_ref().map(method_of);
        let mut headers = Vec::new();
        for h in m.headers.iter().flatten() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                format!("header match name {:?} is not a valid header name", h.name)
            })?;
            let value = match h.r#type {
                Some(gw::HttpRouteRulesMatchesHeadersType::RegularExpression) => {
                    ValueMatch::Regex(anchored(&h.value, "header")?)
                }
                _ => ValueMatch::Exact(h.value.clone()),
            };
            headers.push(HeaderMatch { name, value });
        }
        let mut query = Vec::new();
        for q in m.query_params.iter().flatten() {
            let value = match q.r#type {
                Some(gw::HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                    ValueMatch::Regex(anchored(&q.value, "query param")?)
                }
                _ => ValueMatch::Exact(q.value.clone()),
            };
            query.push(QueryMatch {
                name: q.name.clone(),
                value,
            });
        }
        Ok(RequestMatch {
            path,
            method,
            headers,
            query,
        })
    }

    pub fn matches(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        let path = uri.path();
        let path_ok = match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex(re) => re.is_match(path),
        };
        path_ok
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.headers.iter().all(|h| {
                headers
                    .get_all(&h.name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| h.value.matches(v)))
            })
            && self
                .query
                .iter()
                .all(|q| query_value(uri, &q.name).is_some_and(|v| q.value.matches(v)))
    }

    pub fn specificity(&self) -> Specificity {
        let (path_kind, path_len) = match &self.path {
            PathMatch::Exact(p) => (3, p.len()),
            PathMatch::Prefix(p) => (2, p.len()),
            PathMatch::Regex(_) => (1, 0),
        };
        Specificity {
            path_kind,
            path_len,
            method: self.method.is_some(),
            headers: self.headers.len(),
            query: self.query.len(),
        }
    }

    /// The prefix this match consumed, for `ReplacePrefixMatch` rewrites.
    pub fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) => Some(p),
            _ => None,
        }
    }
}

pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// The first value of query parameter `name`, undecoded.
fn query_value<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn check_path(value: &str) -> Result<(), String> {
    if value.starts_with('/') {
        Ok(())
    } else {
        Err(format!("path {value:?} must start with '/'"))
    }
}

fn anchored(pattern: &str, what: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("{what} regular expression {pattern:?} is invalid: {e}"))
}

fn method_of(m: &gw::HttpRouteRulesMatchesMethod) -> Method {
    use gw::HttpRouteRulesMatchesMethod as M;
    match m {
        M::Get => Method::GET,
        M::Head => Method::HEAD,
        M::Post => Method::POST,
        M::Put => Method::PUT,
        M::Delete => Method::DELETE,
        M::Connect => Method::CONNECT,
        M::Options => Method::OPTIONS,
        M::Trace => Method::TRACE,
        M::Patch => Method::PATCH,
    }
}
