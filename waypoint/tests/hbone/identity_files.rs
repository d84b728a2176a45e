//! The waypoint's SVID from files: loaded, renewed on change, and never another identity's.

use std::time::Duration;

use ambit_waypoint::hbone::{watch_files, IdentityError, WaypointIdentity};

use crate::support::*;

/// Polls `done` for up to five seconds.
async fn wait_for(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "SVID not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let task = watch_files(identity.clone(), dir.clone(), Duration::from_millis(20));
    wait_for(|| {
        identity
            .certified_key()
            .is_some_and(|k| k.cert[0] == first.chain[0])
    })
    .await;

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
    assert!(matches!(
        identity.install(&other),
        Err(IdentityError::WrongIdentity { .. })
    ));
    write_svid(&dir, &pem, &other);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        identity.certified_key().expect("ready").cert[0],
        renewed.chain[0],
        "another identity's SVID must not replace the waypoint's"
    );
    task.abort();
}
