//! Ownership of a connection: it lives exactly as long as some handle to it (a `Client`, a
//! `Replica`, a pending request) does; dropping the last one closes the socket and ends its tasks,
//! even while the server keeps it busy with echo probes.

mod support;

use std::time::Duration;

use ovsdb::{Client, DatabaseSchema, Replica, ReplicaConfig, Timeouts};
use support::{wait_for, Server};

/// Probes every 100 ms: a connection kept alive by answered echoes shows within the deadline.
fn fast_probe() -> Timeouts {
    Timeouts {
        probe_interval: Duration::from_millis(100),
        ..Timeouts::default()
    }
}

#[tokio::test]
async fn dropping_the_last_client_handle_closes_the_connection() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, notes) = Client::connect(&s.remote(), None, &fast_probe())
        .await
        .unwrap();
    let other = c.clone();
    c.echo().await.unwrap();
    assert_eq!(s.sessions(), 1);
    drop(c);
    // A clone still owns it.
    other.echo().await.unwrap();
    assert_eq!(s.sessions(), 1);
    drop(other);
    drop(notes);
    wait_for(
        "the server to see the dropped client's connection close",
        Duration::from_secs(10),
        || s.sessions() == 0,
    )
    .await;
}

#[tokio::test]
async fn dropping_the_last_replica_handle_closes_the_connection() {
    let s = Server::start("ovn-nb.ovsschema");
    let mut cfg = ReplicaConfig::new(vec![s.remote()], "OVN_Northbound");
    cfg.expected_schema =
        Some(DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).unwrap());
    cfg.timeouts = fast_probe();
    let r = Replica::start(cfg, Duration::from_secs(10)).await.unwrap();
    assert_eq!(s.sessions(), 1);
    drop(r);
    wait_for(
        "the server to see the dropped replica's connection close",
        Duration::from_secs(10),
        || s.sessions() == 0,
    )
    .await;
}
