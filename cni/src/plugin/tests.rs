use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::thread;

use super::*;

/// A scratch directory for a socket and a namespaces file; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ambit-cni-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("cni.sock")
    }

    fn namespaces(&self, names: &[&str]) -> PathBuf {
        let path = self.0.join("enrolled-namespaces");
        std::fs::write(&path, names.join("\n")).expect("namespaces file");
        path
    }

    /// Answers one request with `reply` and hands the request to the test.
    fn agent(&self, reply: Reply) -> mpsc::Receiver<Request> {
        let listener = UnixListener::bind(self.socket()).expect("bind agent socket");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).expect("read");
            tx.send(serde_json::from_str(&line).expect("request JSON"))
                .expect("send");
            let mut out = serde_json::to_string(&reply).expect("reply JSON");
            out.push('\n');
            (&stream).write_all(out.as_bytes()).expect("write reply");
        });
        rx
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn prev_result() -> Value {
    json!({
        "cniVersion": "0.4.0",
        "interfaces": [{ "name": "eth0", "sandbox": "/var/run/netns/cni-1" }],
        "ips": [{ "address": "10.244.1.7/24", "interface": 0 }]
    })
}

fn conf(scratch: &Scratch, namespaces: Option<PathBuf>) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "ambit-cni",
        "agentSocket": scratch.socket(),
        "enrolledNamespaces": namespaces,
        "agentTimeoutMs": 2000,
        "prevResult": prev_result(),
    })
    .to_string()
}

/// The runtime's variables for an ADD of `shop/web` in our own netns (root can read its
/// cookie; the agent stand-in does not care which namespace it is).
fn env(command: &str) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<&str, String> = HashMap::from([
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", "c0ffee".to_string()),
        ("CNI_NETNS", "/proc/self/ns/net".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;K8S_POD_UID=u-1".to_string(),
        ),
    ]);
    move |name| vars.get(name).cloned()
}

fn expected_result() -> Value {
    let mut result = prev_result();
    result["cniVersion"] = json!("1.0.0");
    result
}

#[test]
fn add_asks_the_agent_and_passes_the_previous_result_through() {
    let scratch = Scratch::new("add");
    let requests = scratch.agent(Reply::Enrolled);
    let outcome = run(&env("ADD"), &conf(&scratch, None));
    assert_eq!(outcome.exit, 0, "{outcome:?}");
    let printed: Value = serde_json::from_str(&outcome.stdout).expect("result JSON");
    assert_eq!(printed, expected_result());

    let Request::Add(sandbox) = requests.recv().expect("the agent was asked") else {
        panic!("expected an Add request");
    };
    assert_eq!(sandbox.workload(), "shop/web");
    assert_eq!(sandbox.uid.as_deref(), Some("u-1"));
    assert_eq!(sandbox.container_id, "c0ffee");
    assert_eq!(
        sandbox.netns_cookie,
        netns::current_cookie().expect("own cookie"),
        "the plugin reads the cookie inside the sandbox's namespace"
    );
}

#[test]
fn a_pod_the_agent_leaves_out_starts_normally() {
    let scratch = Scratch::new("notenrolled");
    let _requests = scratch.agent(Reply::NotEnrolled {
        reason: "namespace is not labelled".into(),
    });
    let outcome = run(&env("ADD"), &conf(&scratch, None));
    assert_eq!(outcome.exit, 0, "{outcome:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&outcome.stdout).expect("JSON"),
        expected_result()
    );
}

#[test]
fn try_again_from_the_agent_is_cni_error_11_with_its_reason() {
    let scratch = Scratch::new("tryagain");
    let _requests = scratch.agent(Reply::TryAgain {
        reason: "namespace shop not seen yet".into(),
    });
    let outcome = run(&env("ADD"), &conf(&scratch, None));
    assert_eq!(outcome.exit, 1);
    let error: Value = serde_json::from_str(&outcome.stdout).expect("error JSON");
    assert_eq!(error["code"], json!(code::TRY_AGAIN_LATER));
    assert_eq!(error["cniVersion"], json!("1.0.0"));
    assert!(error["msg"]
        .as_str()
        .is_some_and(|m| m.contains("shop/web")));
    assert_eq!(error["details"], json!("namespace shop not seen yet"));
}

#[test]
fn without_an_agent_only_pods_of_enrolled_namespaces_are_held() {
    let scratch = Scratch::new("noagent");
    // No listener on the socket at all.
    let held = run(
        &env("ADD"),
        &conf(&scratch, Some(scratch.namespaces(&["payments", "shop"]))),
    );
    assert_eq!(held.exit, 1, "{held:?}");
    let error: Value = serde_json::from_str(&held.stdout).expect("error JSON");
    assert_eq!(error["code"], json!(code::TRY_AGAIN_LATER));
    assert!(
        error["details"]
            .as_str()
            .is_some_and(|d| d.contains("cni.sock")),
        "names the socket it tried: {error}"
    );

    let free = run(
        &env("ADD"),
        &conf(&scratch, Some(scratch.namespaces(&["payments"]))),
    );
    assert_eq!(free.exit, 0, "{free:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&free.stdout).expect("JSON"),
        expected_result()
    );
    assert!(free.stderr.contains("starts unenrolled"), "{}", free.stderr);
}

#[test]
fn del_tells_the_agent_and_succeeds_even_without_it() {
    let scratch = Scratch::new("del");
    let requests = scratch.agent(Reply::Forgotten);
    let outcome = run(&env("DEL"), &conf(&scratch, None));
    assert_eq!(outcome, Outcome::success(String::new()));
    assert!(matches!(requests.recv(), Ok(Request::Del(s)) if s.workload() == "shop/web"));

    let gone = Scratch::new("del-noagent");
    assert_eq!(
        run(&env("DEL"), &conf(&gone, None)),
        Outcome::success(String::new())
    );
}

#[test]
fn sandboxes_that_are_not_pods_are_not_sent_to_the_agent() {
    let scratch = Scratch::new("notpod");
    let vars = env("ADD");
    let env = move |name: &str| {
        if name == "CNI_ARGS" {
            Some("IgnoreUnknown=1".to_string())
        } else {
            vars(name)
        }
    };
    // No agent listening: had the plugin asked, it would have fallen back with a note.
    let outcome = run(&env, &conf(&scratch, None));
    assert_eq!(outcome.exit, 0);
    assert!(outcome.stderr.is_empty(), "{}", outcome.stderr);
}

#[test]
fn version_and_bad_config_answer_in_cni_terms() {
    let version = run(&env("VERSION"), "");
    let body: Value = serde_json::from_str(&version.stdout).expect("JSON");
    assert!(body["supportedVersions"]
        .as_array()
        .is_some_and(|v| v.contains(&json!("1.0.0")) && v.contains(&json!("0.4.0"))));

    let bad = run(
        &env("ADD"),
        r#"{"cniVersion": "1.0.0", "type": "ambit-cni"}"#,
    );
    assert_eq!(bad.exit, 1);
    let error: Value = serde_json::from_str(&bad.stdout).expect("JSON");
    assert_eq!(error["code"], json!(code::INVALID_CONFIG));
    assert!(
        error["details"]
            .as_str()
            .is_some_and(|d| d.contains("agentSocket")),
        "{error}"
    );
}
