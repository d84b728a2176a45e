//! The waypoint's SVID from files: loaded, renewed on change, and never another identity's.

use std::time::Duration;

use ambit_waypoint::hbone::{watch_files, WaypointIdentity, SVID_CERT, SVID_KEY};

use crate::support::*;

fn write_svid(dir: &std::path::Path, chain_pem: &str, svid: &ambit_mesh::identity::Svid) {
    let key = rcgen::KeyPair::try_from(&svid.key).expect("key");
    for (name, text) in [
        (SVID_CERT, chain_pem.to_string()),
        (SVID_KEY, key.serialize_pem()),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

#[tokio::test]
async fn svid_files_are_loaded_and_renewed_but_never_for_another_identity() {
    let ca = MeshCa::new("files");
    let dir = temp_dir("identity");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let identity = WaypointIdentity::new(id(WAYPOINT_ID), ca.roots());

    let (first, pem) = signed(&ca.ca, WAYPOINT_ID);
    write_svid(&dir, &pem, &first);
    let task = watch_files(identity.clone(), dir.clone(), Duration::from_millis(20))
        .expect("the SVID loads");
    let loaded = identity.certified_key().expect("ready");
    assert_eq!(loaded.cert[0], first.chain[0]);

    // Two files are replaced one after the other; the watcher may see a half-written pair,
    // which it refuses (key and chain disagree) and retries on the next change.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (renewed, pem) = signed(&ca.ca, WAYPOINT_ID);
    write_svid(&dir, &pem, &renewed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while identity.certified_key().expect("ready").cert[0] != renewed.chain[0] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "renewal not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (other, pem) = signed(&ca.ca, "spiffe://cluster.local/ns/shop/sa/reviews-v1");
    write_svid(&dir, &pem, &other);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        identity.certified_key().expect("ready").cert[0],
        renewed.chain[0],
        "another identity's SVID must not replace the waypoint's"
    );
    task.abort();
}
