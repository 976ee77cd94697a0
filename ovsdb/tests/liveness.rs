//! Liveness: the server's `echo` is answered, our own inactivity probe drops a server that
//! stopped answering, and garbage on the wire ends the connection instead of panicking.

mod support;

use std::time::Duration;

use ovsdb::{Client, Error, Remote, Timeouts};
use serde_json::{json, Value};
use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

fn fast_probe() -> Timeouts {
    Timeouts {
        probe_interval: Duration::from_millis(200),
        ..Timeouts::default()
    }
}

#[tokio::test]
async fn stopped_server_is_detected_by_the_inactivity_probe() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = Client::connect(&s.remote(), None, &fast_probe())
        .await
        .unwrap();
    c.echo().await.unwrap();
    let server_pid = support_pid(&s);
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &server_pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let closed = tokio::time::timeout(Duration::from_secs(5), c.connection().closed()).await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &server_pid])
        .status();
    assert!(
        closed.is_ok(),
        "a silent server was not dropped by the probe"
    );
    assert!(matches!(c.echo().await, Err(Error::Disconnected { .. })));
}

fn support_pid(s: &Server) -> String {
    // ovsdb-server writes no pidfile here; find it by its unique socket path.
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("punix:{}", s.sock().display())])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .lines()
        .next()
        .unwrap()
        .to_string()
}

/// A scripted peer on a unix socket: sends `lines`, returns what the client wrote back.
async fn peer(
    dir: &tempfile::TempDir,
    send: &'static [u8],
) -> (Remote, tokio::task::JoinHandle<Vec<u8>>) {
    let path = dir.path().join("peer.sock");
    let l = UnixListener::bind(&path).unwrap();
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(send).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the client answers (or closes).
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if serde_json::from_slice::<Value>(&got).is_ok() {
                break;
            }
        }
        got
    });
    (Remote::Unix(path), h)
}

#[tokio::test]
async fn server_echo_is_answered_with_its_params_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, h) = peer(&dir, br#"{"method":"echo","params":["ping",1],"id":"e-7"}"#).await;
    let (_c, _) = Client::connect(&remote, None, &Timeouts::default())
        .await
        .unwrap();
    let got: Value = serde_json::from_slice(&h.await.unwrap()).unwrap();
    assert_eq!(
        got,
        json!({"result": ["ping", 1], "error": null, "id": "e-7"})
    );
    assert!(got.get("jsonrpc").is_none());
}

#[tokio::test]
async fn garbage_from_the_server_closes_the_connection_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, _h) = peer(&dir, b"{\"id\":1,\"result\":[]} \x00\xffnot json").await;
    let (c, _) = Client::connect(&remote, None, &Timeouts::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.connection().closed())
        .await
        .expect("connection closed on garbage");
    assert!(matches!(
        c.list_dbs().await,
        Err(Error::Disconnected { .. })
    ));
}
