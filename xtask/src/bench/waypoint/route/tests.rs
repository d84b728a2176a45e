//! Both renderings of the route say the same thing.

use super::*;

fn backends() -> Backends {
    Backends {
        v1: "127.0.0.1:18081".parse().unwrap(),
        v2: "127.0.0.1:18082".parse().unwrap(),
    }
}

fn envoy() -> Value {
    envoy_config(
        "127.0.0.1:15081".parse().unwrap(),
        "127.0.0.1:15082".parse().unwrap(),
        &backends(),
    )
}

fn envoy_routes(config: &Value) -> &Vec<Value> {
    config
        .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes")
        .and_then(Value::as_array)
        .expect("Envoy's routes")
}

#[test]
fn both_proxies_send_the_tester_to_v2_and_everyone_else_to_v1() {
    let waypoint = waypoint_config(&backends());
    let rules = waypoint["httpRoutes"][0]["spec"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["matches"][0]["headers"][0],
        json!({"name": "x-user", "value": "tester"})
    );
    assert_eq!(rules[0]["backendRefs"][0]["name"], "web-v2");
    assert!(rules[1].get("matches").is_none());
    assert_eq!(rules[1]["backendRefs"][0]["name"], "web-v1");

    let envoy = envoy();
    let routes = envoy_routes(&envoy);
    assert_eq!(routes.len(), 2);
    assert_eq!(
        routes[0]["match"]["headers"][0],
        json!({"name": "x-user", "string_match": {"exact": "tester"}})
    );
    assert_eq!(routes[0]["route"]["cluster"], "web-v2");
    assert!(routes[1]["match"].get("headers").is_none());
    assert_eq!(routes[1]["route"]["cluster"], "web-v1");
}

#[test]
fn both_proxies_retry_and_time_out_alike_on_every_rule() {
    let waypoint = waypoint_config(&backends());
    let envoy = envoy();
    let rules = waypoint["httpRoutes"][0]["spec"]["rules"]
        .as_array()
        .unwrap();
    for (rule, route) in rules.iter().zip(envoy_routes(&envoy)) {
        let (retry, policy) = (&rule["retry"], &route["route"]["retry_policy"]);
        assert_eq!(retry["attempts"], 2);
        assert_eq!(policy["num_retries"], retry["attempts"]);
        assert_eq!(retry["codes"], json!([500, 502, 503, 504]));
        assert_eq!(policy["retriable_status_codes"], retry["codes"]);
        assert_eq!(retry["backoff"], "25ms");
        assert_eq!(policy["retry_back_off"]["base_interval"], "0.025s");
        assert_eq!(policy["retry_back_off"]["max_interval"], "0.25s");
        assert_eq!(rule["timeouts"]["request"], "2s");
        assert_eq!(route["route"]["timeout"], "2s");
    }
}

#[test]
fn both_proxies_reach_the_same_backends() {
    let waypoint = waypoint_config(&backends());
    let services = waypoint["services"].as_array().unwrap();
    let endpoints: Vec<_> = services
        .iter()
        .map(|s| (s["name"].clone(), s["ports"][0]["endpoints"].clone()))
        .collect();
    assert_eq!(
        endpoints,
        [
            (json!("web"), Value::Null),
            (json!("web-v1"), json!(["127.0.0.1:18081"])),
            (json!("web-v2"), json!(["127.0.0.1:18082"])),
        ]
    );
    let envoy = envoy();
    let clusters = envoy["static_resources"]["clusters"].as_array().unwrap();
    let ports: Vec<_> = clusters
        .iter()
        .map(|c| {
            let address = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            (c["name"].clone(), address["port_value"].clone())
        })
        .collect();
    assert_eq!(
        ports,
        [
            (json!("web-v1"), json!(18081)),
            (json!("web-v2"), json!(18082))
        ]
    );
}

#[test]
fn durations_are_spelled_for_each_reader() {
    assert_eq!(go_duration(Duration::from_secs(2)), "2s");
    assert_eq!(go_duration(Duration::from_millis(25)), "25ms");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(proto_duration(Duration::from_millis(25)), "0.025s");
    assert_eq!(proto_duration(Duration::from_secs(2)), "2s");
}
