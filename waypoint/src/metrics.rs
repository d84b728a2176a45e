//! Waypoint metrics, rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Series are labelled by route rule (`namespace/name/index`, or `passthrough` for Services
//! without routes, `none` for requests no rule matched).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default, Clone)]
struct RouteStats {
    /// Responses by class: index 0 is 1xx, 4 is 5xx.
    classes: [u64; 5],
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
    retries: u64,
    budget_exhausted: u64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
    rejected: Mutex<BTreeMap<(&'static str, String), u64>>,
    tcp: Mutex<BTreeMap<String, u64>>,
    mirrors_dropped: AtomicU64,
}

impl Metrics {
    fn route(&self, label: &str, f: impl FnOnce(&mut RouteStats)) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        f(routes.entry(label.to_owned()).or_default());
    }

    /// One answered request: its status and the time to response headers.
    pub fn observe(&self, label: &str, status: StatusCode, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.route(label, |s| {
            let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
            s.classes[class] += 1;
            for (bucket, bound) in s.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            s.count += 1;
            s.sum_seconds += seconds;
        });
    }

    pub fn retried(&self, label: &str) {
        self.route(label, |s| s.retries += 1);
    }

    pub fn retry_budget_exhausted(&self, label: &str) {
        self.route(label, |s| s.budget_exhausted += 1);
    }

    pub fn route_rejected(&self, kind: &'static str, route: String) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *rejected.entry((kind, route)).or_default() += 1;
    }

    pub fn tcp_connection(&self, label: &str) {
        let mut tcp = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        *tcp.entry(label.to_owned()).or_default() += 1;
    }

    pub fn mirror_dropped(&self) {
        self.mirrors_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered for `label` with status class `class` (1–5); for tests and logs.
    pub fn requests(&self, label: &str, class: usize) -> u64 {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.get(label).map_or(0, |s| s.classes[class - 1])
    }

    pub fn render(&self) -> String {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        header(
            &mut out,
            "ambit_waypoint_requests_total",
            "counter",
            "HTTP requests answered, by route rule and status class.",
        );
        for (label, s) in &routes {
            for (i, n) in s.classes.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    out,
                    "ambit_waypoint_requests_total{{route=\"{}\",class=\"{}xx\"}} {n}",
                    escape(label),
                    i + 1
                );
            }
        }
        header(
            &mut out,
            "ambit_waypoint_request_duration_seconds",
            "histogram",
            "Time from request to response headers, by route rule.",
        );
        for (label, s) in &routes {
            let route = escape(label);
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "ambit_waypoint_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "ambit_waypoint_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(
                out,
                "ambit_waypoint_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "ambit_waypoint_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.count
            );
        }
        header(
            &mut out,
            "ambit_waypoint_retries_total",
            "counter",
            "Retries sent, by route rule.",
        );
        for (label, s) in &routes {
            let _ = writeln!(
                out,
                "ambit_waypoint_retries_total{{route=\"{}\"}} {}",
                escape(label),
                s.retries
            );
        }
        header(
            &mut out,
            "ambit_waypoint_retry_budget_exhausted_total",
            "counter",
            "Retries not sent because the retry budget was spent, by route rule.",
        );
        for (label, s) in &routes {
            let _ = writeln!(
                out,
                "ambit_waypoint_retry_budget_exhausted_total{{route=\"{}\"}} {}",
                escape(label),
                s.budget_exhausted
            );
        }
        header(
            &mut out,
            "ambit_waypoint_routes_rejected_total",
            "counter",
            "Route objects rejected when building the route table.",
        );
        for ((kind, route), n) in self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ambit_waypoint_routes_rejected_total{{kind=\"{kind}\",route=\"{}\"}} {n}",
                escape(route)
            );
        }
        header(
            &mut out,
            "ambit_waypoint_tcp_connections_total",
            "counter",
            "Opaque TCP connections relayed, by TCPRoute.",
        );
        for (label, n) in self.tcp.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "ambit_waypoint_tcp_connections_total{{route=\"{}\"}} {n}",
                escape(label)
            );
        }
        header(
            &mut out,
            "ambit_waypoint_mirrors_dropped_total",
            "counter",
            "Mirrored requests skipped because too many mirrors were in flight.",
        );
        let _ = writeln!(
            out,
            "ambit_waypoint_mirrors_dropped_total {}",
            self.mirrors_dropped.load(Ordering::Relaxed)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_follows_the_exposition_format() {
        let metrics = Metrics::default();
        metrics.observe("shop/reviews/0", StatusCode::OK, Duration::from_millis(3));
        metrics.observe(
            "shop/reviews/0",
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(700),
        );
        metrics.route_rejected("HTTPRoute", "shop/\"bad\"".to_owned());
        let text = metrics.render();
        assert!(text.contains("# TYPE ambit_waypoint_requests_total counter\n"));
        assert!(text
            .contains("ambit_waypoint_requests_total{route=\"shop/reviews/0\",class=\"2xx\"} 1\n"));
        assert!(text
            .contains("ambit_waypoint_requests_total{route=\"shop/reviews/0\",class=\"5xx\"} 1\n"));
        assert!(text.contains("ambit_waypoint_request_duration_seconds_bucket{route=\"shop/reviews/0\",le=\"0.005\"} 1\n"));
        assert!(text.contains(
            "ambit_waypoint_request_duration_seconds_bucket{route=\"shop/reviews/0\",le=\"1\"} 2\n"
        ));
        assert!(text.contains("ambit_waypoint_request_duration_seconds_bucket{route=\"shop/reviews/0\",le=\"+Inf\"} 2\n"));
        assert!(text.contains(
            "ambit_waypoint_request_duration_seconds_count{route=\"shop/reviews/0\"} 2\n"
        ));
        assert!(text.contains("ambit_waypoint_routes_rejected_total{kind=\"HTTPRoute\",route=\"shop/\\\"bad\\\"\"} 1\n"));
        // Every sample line is `name{labels} value` or `name value`; every family has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().expect("a value");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
        assert_eq!(
            text.matches("# HELP").count(),
            text.matches("# TYPE").count()
        );
    }
}
