//! Outlier detection, circuit breaking and fault injection from the TrafficPolicy spec.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_waypoint::{body, Config};
use http::{Response, StatusCode};
use tracing::info;

use crate::support::{client, get, Backend, Proxy};

fn with_policy(endpoints: &[std::net::SocketAddr], policy: &str) -> Config {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let yaml = format!(
        "services:\n- namespace: shop\n  name: reviews\n  ports: [{{port: 80, endpoints: [{}]}}]\n  trafficPolicy:\n{policy}",
        eps.join(", ")
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("bad config: {e}\n{yaml}"))
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint_and_readmits_it() {
    let good = Backend::named("good").await;
    let bad = Backend::start(Arc::new(|_| {
        Box::pin(async {
            Response::builder()
                .status(500)
                .body(body::empty())
                .expect("response")
        })
    }))
    .await;
    let config = with_policy(
        &[good.addr, bad.addr],
        "    outlierDetection: {consecutiveFailures: 3, interval: 10s, baseEjectionTime: 400ms, maxEjectionPercent: 50}\n",
    );
    let proxy = Proxy::start(&config).await;
    let client = client();

    info!("requests until the bad endpoint has failed three times in a row");
    for _ in 0..200 {
        if bad.hits() >= 3 {
            break;
        }
        get(&client, proxy.addr, "/", &[]).await;
    }
    assert_eq!(bad.hits(), 3);
    info!("while ejected, every request goes to the good endpoint");
    for _ in 0..30 {
        assert_eq!(get(&client, proxy.addr, "/", &[]).await.status, 200);
    }
    assert_eq!(bad.hits(), 3, "ejected endpoint got traffic");

    info!("after baseEjectionTime the bad endpoint is readmitted");
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..200 {
        if bad.hits() > 3 {
            break;
        }
        get(&client, proxy.addr, "/", &[]).await;
    }
    assert!(bad.hits() > 3, "endpoint was never readmitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_limits_answer_503_fast() {
    let slow = Backend::start(Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(body::full("slow"))
        })
    }))
    .await;
    let config = with_policy(
        &[slow.addr],
        "    connectionPool: {maxConnections: 1, maxPendingRequests: 1}\n",
    );
    let proxy = Proxy::start(&config).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let status = get(&client(), addr, "/", &[]).await.status;
            (status, started.elapsed())
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (status, elapsed) = task.await.expect("task");
        if status == 200 {
            ok += 1;
        } else {
            assert_eq!(status, 503);
            assert!(
                elapsed < Duration::from_millis(150),
                "overflow took {elapsed:?}"
            );
        }
    }
    assert_eq!(ok, 2, "one in flight and one pending succeed");
}

#[tokio::test]
async fn fault_injection_aborts_and_delays() {
    let backend = Backend::named("ok").await;
    let abort = with_policy(
        &[backend.addr],
        "    faultInjection: {abort: {percentage: 100, httpStatus: 418}}\n",
    );
    let proxy = Proxy::start(&abort).await;
    assert_eq!(
        get(&client(), proxy.addr, "/", &[]).await.status,
        StatusCode::IM_A_TEAPOT.as_u16()
    );
    assert_eq!(backend.hits(), 0);

    let delay = with_policy(
        &[backend.addr],
        "    faultInjection: {delay: {percentage: 100, fixedDelay: 150ms}}\n",
    );
    proxy.waypoint.apply(&delay);
    let started = Instant::now();
    assert_eq!(get(&client(), proxy.addr, "/", &[]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(backend.hits(), 1);
}
