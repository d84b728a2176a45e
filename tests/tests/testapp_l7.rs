//! The test app's HTTP, gRPC and WebSocket servers and clients against each other on
//! 127.0.0.1: no root, no sandbox, so the waypoint's end-to-end tests can trust their tools.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ambit_e2e::testapp::{
    self, GrpcCall, GrpcReport, HitCounts, HttpOpts, HttpReport, ReadyLine, ServeOpts, TestApp,
    WsReport,
};

fn app() -> TestApp {
    TestApp::at(env!("CARGO_BIN_EXE_ambit-testapp"))
}

/// `ambit-testapp serve` on free loopback ports, killed on drop.
struct LocalServer {
    child: Child,
    ready: ReadyLine,
}

impl LocalServer {
    fn start(name: &str) -> LocalServer {
        let mut cmd = app().serve_with(name, &ServeOpts::loopback());
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning ambit-testapp serve");
        let stdout = child.stdout.take().expect("serve's stdout");
        let (lines, line) = mpsc::channel();
        thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = lines.send(first);
        });
        let line = line
            .recv_timeout(Duration::from_secs(10))
            .expect("serve printed no ready line within 10 s");
        let ready = ReadyLine::parse(&line).expect("parsing the ready line");
        eprintln!("started {line}");
        LocalServer { child, ready }
    }

    fn addr(&self, service: &str) -> SocketAddrV4 {
        match self.ready.addr(service).expect("a bound address") {
            SocketAddr::V4(addr) => addr,
            other => panic!("{service} bound {other}, not IPv4"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr("http"))
    }

    fn hits(&self) -> HitCounts {
        http(app().http(&self.url("/hits"), &HttpOpts::default()))
            .last_hits()
            .expect("reading /hits")
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client, which must exit 0 with a report whatever happened to its requests.
fn run_client<T: serde::de::DeserializeOwned>(mut cmd: Command) -> T {
    let output = cmd.output().expect("running ambit-testapp");
    testapp::parse_report(&output).expect("reading the client's report")
}

fn http(cmd: Command) -> HttpReport {
    let report: HttpReport = run_client(cmd);
    eprintln!("  {report:?}");
    report
}

fn statuses<const N: usize>(pairs: [(u16, u64); N]) -> BTreeMap<u16, u64> {
    BTreeMap::from(pairs)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> SocketAddrV4 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    match listener.local_addr().expect("its address") {
        SocketAddr::V4(addr) => addr,
        other => panic!("{other} is not IPv4"),
    }
}

#[test]
fn http1_and_http2_are_served_on_one_port_and_name_the_server() {
    let server = LocalServer::start("web");
    let url = server.url("/hello?lang=en");
    for http2 in [false, true] {
        eprintln!("three requests, http2={http2}");
        let opts = HttpOpts {
            requests: 3,
            http2,
            headers: vec![("x-test".to_string(), "a".to_string())],
            ..HttpOpts::default()
        };
        let report = http(app().http(&url, &opts));
        assert_eq!((report.requests, report.ok, report.errors), (3, 3, 0));
        assert_eq!(report.statuses, statuses([(200, 3)]));
        assert_eq!(report.servers, BTreeMap::from([("web".to_string(), 3)]));
        let echo = report.last_echo().unwrap();
        let version = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert_eq!(echo.version, version);
        assert_eq!((echo.server.as_str(), echo.method.as_str()), ("web", "GET"));
        assert_eq!(echo.path, "/hello?lang=en");
        assert_eq!(echo.headers.get("x-test").map(String::as_str), Some("a"));
        let authority = server.addr("http").to_string();
        assert_eq!(echo.authority.as_deref(), Some(authority.as_str()));
    }

    eprintln!("a POST with a body and a host header, over HTTP/2");
    let opts = HttpOpts {
        http2: true,
        headers: vec![("host".to_string(), "reviews.shop".to_string())],
        method: Some("POST".to_string()),
        body: Some("hello world".to_string()),
        ..HttpOpts::default()
    };
    let echo = http(app().http(&url, &opts)).last_echo().unwrap();
    assert_eq!((echo.method.as_str(), echo.body_bytes), ("POST", 11));
    assert_eq!(echo.authority.as_deref(), Some("reviews.shop"));
}

#[test]
fn a_fixed_rate_spreads_the_requests_over_the_run() {
    let server = LocalServer::start("web");
    for http2 in [false, true] {
        eprintln!("100 requests at 200/s, http2={http2}: about half a second");
        let opts = HttpOpts {
            requests: 100,
            concurrency: 4,
            http2,
            rate: Some(200),
            ..HttpOpts::default()
        };
        let report = http(app().http(&server.url("/"), &opts));
        assert_eq!((report.ok, report.errors), (100, 0));
        assert!(
            (0.49..5.0).contains(&report.seconds),
            "100 requests at 200/s took {:.3} s",
            report.seconds
        );
        assert!(report.answered_per_s() <= 205.0, "{report:?}");
    }
}

/// Reads one HTTP/1.1 response with a Content-Length: (head, body).
fn read_response(reader: &mut impl BufRead) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("reading the response head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("a numeric content-length"))
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("reading the body");
    (head, String::from_utf8(body).expect("a UTF-8 body"))
}

#[test]
fn a_raw_http1_client_keeps_its_connection_and_sends_a_chunked_body() {
    let server = LocalServer::start("raw");
    let mut stream = TcpStream::connect(server.addr("http")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());

    eprintln!("a GET, then a chunked POST on the same connection");
    stream
        .write_all(b"GET /one HTTP/1.1\r\nhost: raw.test\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("x-served-by: raw\r\n"), "{head}");
    assert!(body.contains(r#""path":"/one""#), "{body}");

    stream
        .write_all(
            b"POST /two HTTP/1.1\r\nhost: raw.test\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
    let (head, body) = read_response(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: testapp::HttpEcho = serde_json::from_str(&body).unwrap();
    assert_eq!((echo.method.as_str(), echo.body_bytes), ("POST", 11));
    assert_eq!(echo.headers["transfer-encoding"], "chunked");

    let hits = server.hits();
    assert_eq!((hits.total, hits.connections), (2, 1), "{hits:?}");
}

#[test]
fn flaky_answers_503_twice_then_200() {
    let server = LocalServer::start("flaky");
    let url = server.url("/flaky");
    for (call, expected) in [503, 503, 200, 503, 503, 200].into_iter().enumerate() {
        let report = http(app().http(&url, &HttpOpts::default()));
        assert_eq!(
            report.statuses,
            statuses([(expected, 1)]),
            "call {}",
            call + 1
        );
        assert_eq!(report.last_echo().unwrap().server, "flaky");
    }
    eprintln!("one run of six requests sees the same counts");
    let opts = HttpOpts {
        requests: 6,
        ..HttpOpts::default()
    };
    let report = http(app().http(&url, &opts));
    assert_eq!(report.statuses, statuses([(200, 2), (503, 4)]));
    assert_eq!((report.ok, report.errors), (2, 0));
}

#[test]
fn sleep_delays_the_answer_and_the_client_timeout_bounds_it() {
    let server = LocalServer::start("slow");
    let report = http(app().http(&server.url("/sleep/300"), &HttpOpts::default()));
    assert_eq!(report.statuses, statuses([(200, 1)]));
    assert!(report.latency_ms.p50 >= 300.0, "{:?}", report.latency_ms);
    assert_eq!(report.latency_ms.max, report.latency_ms.p50);

    eprintln!("a 3 s sleep against a 300 ms client timeout: an error, still exit 0");
    let mut cmd = app().http(&server.url("/sleep/3000"), &HttpOpts::default());
    cmd.args(["--timeout-ms", "300"]);
    let report = http(cmd);
    assert_eq!((report.ok, report.errors), (0, 1));
    assert!(report.statuses.is_empty());
    let error = report.first_error.unwrap();
    assert!(error.contains("no complete response within"), "{error}");
}

#[test]
fn status_answers_the_code_asked_for() {
    let server = LocalServer::start("codes");
    for (path, expected) in [
        ("/status/418", 418),
        ("/status/204", 204),
        ("/status/502", 502),
        ("/status/abc", 400),
        ("/ws", 426),
    ] {
        let report = http(app().http(&server.url(path), &HttpOpts::default()));
        assert_eq!(report.statuses, statuses([(expected, 1)]), "{path}");
        assert_eq!(report.servers["codes"], 1, "{path}");
    }
}

#[test]
fn hits_count_requests_paths_and_connections_but_not_themselves() {
    let server = LocalServer::start("counted");
    eprintln!("four slow requests over two HTTP/1.1 connections");
    let opts = HttpOpts {
        requests: 4,
        concurrency: 2,
        ..HttpOpts::default()
    };
    let report = http(app().http(&server.url("/sleep/200"), &opts));
    assert_eq!(report.ok, 4);
    eprintln!("three requests as concurrent streams of one HTTP/2 connection");
    let opts = HttpOpts {
        requests: 3,
        concurrency: 3,
        http2: true,
        ..HttpOpts::default()
    };
    let report = http(app().http(&server.url("/b?q=1"), &opts));
    assert_eq!(report.ok, 3);

    let hits = server.hits();
    let expected = HitCounts {
        total: 7,
        by_path: BTreeMap::from([("/sleep/200".to_string(), 4), ("/b".to_string(), 3)]),
        connections: 3,
    };
    assert_eq!(hits, expected);
    assert_eq!(server.hits(), expected, "asking /hits changed the counts");
}

#[test]
fn the_http_client_counts_errors_when_nobody_listens() {
    let url = format!("http://{}/", closed_port());
    for http2 in [false, true] {
        let opts = HttpOpts {
            requests: 3,
            concurrency: 2,
            http2,
            ..HttpOpts::default()
        };
        let report = http(app().http(&url, &opts));
        assert_eq!((report.requests, report.ok, report.errors), (3, 0, 3));
        assert!(report.statuses.is_empty() && report.servers.is_empty());
        assert!(report.last_body.is_none());
        let error = report.first_error.unwrap();
        assert!(error.contains("connecting to"), "{error}");
    }
}

#[test]
fn the_http_client_refuses_bad_arguments() {
    for url in ["https://127.0.0.1/", "127.0.0.1:80"] {
        let output = app()
            .http(url, &HttpOpts::default())
            .output()
            .expect("running ambit-testapp");
        assert!(!output.status.success(), "{url} was accepted");
        assert!(output.stdout.is_empty(), "{url} printed a report");
    }
}

#[test]
fn grpc_unary_and_stream_answer_with_the_server_name() {
    let server = LocalServer::start("grpc-a");
    let addr = server.addr("grpc");
    let headers = [
        ("x-test".to_string(), "a".to_string()),
        ("host".to_string(), "echo.shop:8091".to_string()),
    ];
    let unary = GrpcCall::Unary {
        message: "hi".to_string(),
    };
    let report: GrpcReport = run_client(app().grpc(addr, &headers, unary));
    eprintln!("  unary {report:?}");
    assert!(report.ok && report.code.is_none(), "{report:?}");
    assert_eq!(report.server.as_deref(), Some("grpc-a"));
    assert_eq!(
        (report.replies, report.indices),
        (vec!["hi".to_string()], vec![0])
    );

    let stream = GrpcCall::Stream {
        message: "tick".to_string(),
        count: 5,
    };
    let report: GrpcReport = run_client(app().grpc(addr, &[], stream));
    eprintln!("  stream {report:?}");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.server.as_deref(), Some("grpc-a"));
    assert_eq!(report.indices, [0, 1, 2, 3, 4]);
    assert_eq!(report.replies, ["tick"; 5]);
}

#[test]
fn grpc_to_a_closed_port_reports_unavailable() {
    let call = GrpcCall::Unary {
        message: "hi".to_string(),
    };
    let report: GrpcReport = run_client(app().grpc(closed_port(), &[], call));
    eprintln!("  {report:?}");
    assert!(!report.ok);
    assert_eq!(report.code.as_deref(), Some("Unavailable"));
    assert!(report.replies.is_empty() && report.server.is_none());
}

#[test]
fn websocket_messages_come_back_prefixed_with_the_server_name() {
    let server = LocalServer::start("ws-a");
    let url = format!("ws://{}/ws", server.addr("http"));
    let report: WsReport = run_client(app().ws(&url, "ping", 3));
    eprintln!("  {report:?}");
    assert!(report.ok && report.error.is_none(), "{report:?}");
    assert_eq!(report.replies, ["ws-a:ping"; 3]);

    eprintln!("a path that answers 200 instead of upgrading");
    let url = format!("ws://{}/not-ws", server.addr("http"));
    let report: WsReport = run_client(app().ws(&url, "ping", 1));
    eprintln!("  {report:?}");
    assert!(!report.ok && report.replies.is_empty());
    assert!(report.error.is_some());
}
