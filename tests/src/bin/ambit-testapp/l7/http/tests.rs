//! How `http` builds its requests and its report, without a server.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: HttpArgs,
}

fn plan(args: &[&str]) -> Result<Plan> {
    let cli = Cli::try_parse_from(std::iter::once("http").chain(args.iter().copied()))?;
    Plan::new(&cli.args)
}

#[test]
fn http1_requests_use_the_path_and_a_host_header() {
    let plan = plan(&["--url", "http://10.1.1.2:8090/a?b=c", "--header", "x-a: 1"]).unwrap();
    assert_eq!((plan.host.as_str(), plan.port), ("10.1.1.2", 8090));
    let request = plan.request(false).unwrap();
    assert_eq!(request.uri(), "/a?b=c");
    assert_eq!(request.headers()["host"], "10.1.1.2:8090");
    assert_eq!(request.headers()["x-a"], "1");
}

#[test]
fn a_host_header_becomes_the_http2_authority() {
    let plan = plan(&[
        "--url",
        "http://10.1.1.2/",
        "--header",
        "Host: reviews.shop",
    ])
    .unwrap();
    assert_eq!(plan.port, 80);
    let request = plan.request(true).unwrap();
    assert_eq!(request.uri(), "http://reviews.shop/");
    assert!(request.headers().get("host").is_none());
    let request = plan.request(false).unwrap();
    assert_eq!(request.headers()["host"], "reviews.shop");
}

#[test]
fn only_plain_http_urls_are_accepted() {
    assert!(plan(&["--url", "https://10.1.1.2/"]).is_err());
    assert!(plan(&["--url", "/just/a/path"]).is_err());
    assert!(plan(&["--url", "http://10.1.1.2/", "--concurrency", "0"]).is_err());
}

#[test]
fn percentiles_take_the_nearest_rank() {
    let samples: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&samples, 50), 50.0);
    assert_eq!(percentile(&samples, 99), 99.0);
    assert_eq!(percentile(&[7.0], 99), 7.0);
    assert_eq!(percentile(&[], 50), 0.0);
}

#[test]
fn long_bodies_are_cut_on_a_character_boundary() {
    let body = "é".repeat(LAST_BODY_LIMIT);
    let cut = truncated(body.as_bytes());
    assert!(cut.len() <= LAST_BODY_LIMIT && cut.len() >= LAST_BODY_LIMIT - 1);
    assert_eq!(truncated(b"short"), "short");
}

#[test]
fn a_rate_spaces_the_requests_evenly_from_the_start() {
    let schedule = plan(&["--url", "http://10.1.1.2/", "--rate", "400"])
        .unwrap()
        .schedule
        .unwrap();
    assert_eq!(schedule.due(0), schedule.start);
    assert_eq!(schedule.due(400), schedule.start + Duration::from_secs(1));
    assert_eq!(
        schedule.due(1) - schedule.start,
        Duration::from_micros(2500)
    );
    assert!(plan(&["--url", "http://10.1.1.2/"])
        .unwrap()
        .schedule
        .is_none());
    assert!(plan(&["--url", "http://10.1.1.2/", "--rate", "0"]).is_err());
}
