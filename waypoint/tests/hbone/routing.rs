//! A meshed client reaches reviews through the waypoint, which routes by HTTPRoute and tunnels
//! to the chosen pod through its node agent.

use std::collections::HashMap;

use tracing::info;

use crate::support::*;

#[tokio::test]
async fn header_match_routes_through_hbone_to_the_right_pod() {
    let ca = MeshCa::new("routing");
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    let agent =
        NodeAgent::start(&ca, HashMap::from([(addr(V1_POD), v1), (addr(V2_POD), v2)])).await;
    let waypoint = WaypointUnderTest::start(&ca, agent.addr.port()).await;
    let client = ca.svid("spiffe://cluster.local/ns/shop/sa/productpage");
    let pool = client_pool(&ca, &client);

    info!("CONNECT reviews' VIP through the waypoint, then plain HTTP/1.1 on the stream");
    let stream = connect(&pool, &client.id, waypoint.addr, REVIEWS_VIP)
        .await
        .expect("the waypoint accepts CONNECT to reviews");
    let mut http = http1(stream).await;
    assert_eq!(get(&mut http, &[]).await, (200, "v1".into()));
    assert_eq!(
        get(&mut http, &[("x-version", "v2")]).await,
        (200, "v2".into())
    );
    assert_eq!(
        get(&mut http, &[("x-version", "v3")]).await,
        (200, "v1".into())
    );

    info!("the node agent saw the waypoint, naming the original client");
    let seen = agent.seen.lock().expect("seen").clone();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(request.caller.to_string(), WAYPOINT_ID);
        assert_eq!(request.forwarded_for, Some(addr(CLIENT_ADDR)));
        assert_eq!(request.baggage.as_deref(), Some(CLIENT_BAGGAGE));
    }
    let targets: Vec<_> = seen.iter().map(|r| r.target).collect();
    assert!(targets.contains(&addr(V1_POD)) && targets.contains(&addr(V2_POD)));
    assert_eq!(
        waypoint
            .stats
            .streams_accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn endpoint_address_is_served_as_its_service() {
    let ca = MeshCa::new("endpoint");
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    let agent =
        NodeAgent::start(&ca, HashMap::from([(addr(V1_POD), v1), (addr(V2_POD), v2)])).await;
    let waypoint = WaypointUnderTest::start(&ca, agent.addr.port()).await;
    let client = ca.svid("spiffe://cluster.local/ns/shop/sa/productpage");
    let pool = client_pool(&ca, &client);

    info!("CONNECT a reviews pod's address: still routed as reviews");
    let stream = connect(&pool, &client.id, waypoint.addr, V2_POD)
        .await
        .expect("the waypoint accepts CONNECT to a reviews endpoint");
    let mut http = http1(stream).await;
    assert_eq!(get(&mut http, &[]).await, (200, "v1".into()));
    assert_eq!(
        get(&mut http, &[("x-version", "v2")]).await,
        (200, "v2".into())
    );
}

#[tokio::test]
async fn each_caller_gets_its_own_streams_to_the_endpoint() {
    let ca = MeshCa::new("per-caller");
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    let agent =
        NodeAgent::start(&ca, HashMap::from([(addr(V1_POD), v1), (addr(V2_POD), v2)])).await;
    let waypoint = WaypointUnderTest::start(&ca, agent.addr.port()).await;
    let client = ca.svid("spiffe://cluster.local/ns/shop/sa/productpage");
    let pool = client_pool(&ca, &client);

    info!("two clients, two requests each, all to reviews-v1");
    for from in ["10.10.1.2:40000", "10.10.1.2:40001"] {
        let stream = connect_from(&pool, &client.id, waypoint.addr, REVIEWS_VIP, from)
            .await
            .expect("CONNECT accepted");
        let mut http = http1(stream).await;
        for _ in 0..2 {
            assert_eq!(get(&mut http, &[]).await, (200, "v1".into()));
        }
    }

    info!("the node agent got one stream per client, each naming its own client");
    let seen = agent.seen.lock().expect("seen").clone();
    let mut named: Vec<_> = seen.iter().filter_map(|r| r.forwarded_for).collect();
    named.sort();
    assert_eq!(
        named,
        vec![addr("10.10.1.2:40000"), addr("10.10.1.2:40001")],
        "a connection opened for one client carried another's requests"
    );
}
