//! Config swaps: an invalid route is rejected with a reason; what was good keeps serving.

use crate::support::{client, config, get, http_route, Backend, Proxy};

#[tokio::test]
async fn invalid_route_is_rejected_while_the_previous_one_keeps_serving() {
    let (v1, v2) = (Backend::named("v1").await, Backend::named("v2").await);
    let services = [("v1", vec![v1.addr]), ("v2", vec![v2.addr])];
    let good = http_route(
        "reviews",
        "    - matches: [{headers: [{name: x-user, value: tester}]}]\n      backendRefs: [{name: v2, port: 80}]\n\
         \x20   - backendRefs: [{name: v1, port: 80}]\n",
    );
    let proxy = Proxy::start(&config(&services, &good)).await;
    let client = client();
    assert_eq!(
        get(&client, proxy.addr, "/", &[("x-user", "tester")])
            .await
            .body,
        "v2"
    );

    let broken = http_route(
        "reviews",
        "    - matches: [{headers: [{name: x-user, type: RegularExpression, value: \"(tester\"}]}]\n      backendRefs: [{name: v1, port: 80}]\n",
    );
    let other = http_route("other", "    - matches: [{path: {type: Exact, value: /other}}]\n      backendRefs: [{name: v1, port: 80}]\n");
    let verdicts = proxy
        .waypoint
        .apply(&config(&services, &format!("{broken}{other}")));
    let rejected: Vec<_> = verdicts.iter().filter(|v| !v.accepted).collect();
    assert_eq!(rejected.len(), 1, "{verdicts:?}");
    assert_eq!(rejected[0].route.name, "reviews");
    assert!(
        rejected[0].reason.contains("regular expression"),
        "{}",
        rejected[0].reason
    );

    assert_eq!(
        get(&client, proxy.addr, "/", &[("x-user", "tester")])
            .await
            .body,
        "v2",
        "last good version serves"
    );
    assert_eq!(
        get(&client, proxy.addr, "/other", &[]).await.body,
        "v1",
        "the valid new route serves"
    );
    let metrics = proxy.waypoint.metrics().render();
    assert!(
        metrics.contains(
            "ambit_waypoint_routes_rejected_total{kind=\"HTTPRoute\",route=\"shop/reviews\"} 1"
        ),
        "{metrics}"
    );
}
