//! `ssl:` remotes against a real ovsdb-server, with a PKI made by `ovs-pki` in the test: the
//! right CA and client certificate work, an unrelated CA is refused within the connect timeout,
//! and missing or unusable PEM files are reported as [`Error::Tls`] naming the file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovsdb::{Client, Datum, Error, Remote, Row, Timeouts, TlsFiles, Transaction};
use support::wait_until;

const NB: &str = "OVN_Northbound";

/// Runs `ovs-pki` non-interactively in `cwd` (where `req+sign` writes NAME-cert.pem and
/// NAME-privkey.pem).
fn ovs_pki(cwd: &Path, pki: &Path, args: &[&str]) {
    let out = Command::new("ovs-pki")
        .arg(format!("--dir={}", pki.display()))
        .arg(format!("--log={}", cwd.join("ovs-pki.log").display()))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("ovs-pki (install openvswitch-common)");
    assert!(
        out.status.success(),
        "ovs-pki {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two independent CAs; `server` and `client` are signed by the first, `rogue` by the second.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
}

impl Pki {
    fn create(dir: &Path) -> Pki {
        let (pki, pki2) = (dir.join("pki"), dir.join("pki2"));
        ovs_pki(dir, &pki, &["init", "--force"]);
        ovs_pki(dir, &pki2, &["init", "--force"]);
        ovs_pki(dir, &pki, &["req+sign", "server", "switch"]);
        ovs_pki(dir, &pki, &["req+sign", "client", "switch"]);
        ovs_pki(dir, &pki2, &["req+sign", "rogue", "switch"]);
        let pair = |n: &str| {
            (
                dir.join(format!("{n}-cert.pem")),
                dir.join(format!("{n}-privkey.pem")),
            )
        };
        let pki = Pki {
            ca: pki.join("switchca/cacert.pem"),
            other_ca: pki2.join("switchca/cacert.pem"),
            server: pair("server"),
            client: pair("client"),
            rogue: pair("rogue"),
        };
        for p in [
            &pki.ca,
            &pki.other_ca,
            &pki.server.0,
            &pki.client.1,
            &pki.rogue.0,
        ] {
            assert!(p.is_file(), "ovs-pki did not write {}", p.display());
        }
        pki
    }

    fn files(&self, ca: &Path, (cert, key): &(PathBuf, PathBuf)) -> TlsFiles {
        TlsFiles {
            ca_cert: ca.to_path_buf(),
            certificate: cert.clone(),
            private_key: key.clone(),
        }
    }

    /// What a legitimate client uses.
    fn good(&self) -> TlsFiles {
        self.files(&self.ca, &self.client)
    }
}

/// ovsdb-server on an NB database with `pssl:0:127.0.0.1` (port found in its log) and a
/// `punix` remote; killed on drop.
struct TlsServer {
    dir: tempfile::TempDir,
    pki: Pki,
    port: u16,
    child: Child,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pki = Pki::create(d);
        let db = d.join("nb.db");
        let schema = format!("{}/schemas/ovn-nb.ovsschema", env!("CARGO_MANIFEST_DIR"));
        let st = Command::new("ovsdb-tool")
            .args(["create", db.to_str().unwrap(), &schema])
            .status()
            .expect("ovsdb-tool (install openvswitch-switch)");
        assert!(st.success());
        let log = d.join("ovsdb.log");
        let child = Command::new("ovsdb-server")
            .arg("--remote=pssl:0:127.0.0.1")
            .arg(format!("--remote=punix:{}", d.join("db.sock").display()))
            .arg(format!("--private-key={}", pki.server.1.display()))
            .arg(format!("--certificate={}", pki.server.0.display()))
            .arg(format!("--ca-cert={}", pki.ca.display()))
            .arg(format!("--unixctl={}", d.join("ctl").display()))
            .arg(format!("--log-file={}", log.display()))
            .arg("--no-chdir")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server");
        let mut s = TlsServer {
            dir,
            pki,
            port: 0,
            child,
        };
        // "socket_util|INFO|0:127.0.0.1: listening on port 43093"
        let mut port = None;
        wait_until(
            "ovsdb-server ssl port in its log",
            Duration::from_secs(10),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                port = text.lines().find_map(|l| {
                    l.split_once("listening on port ")
                        .and_then(|(_, p)| p.trim().parse::<u16>().ok())
                });
                port.is_some()
            },
        );
        s.port = port.unwrap();
        wait_until("ovsdb-server unix socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(s.dir.path().join("db.sock")).is_ok()
        });
        s
    }

    fn remote(&self) -> Remote {
        Remote::parse(&format!("ssl:127.0.0.1:{}", self.port)).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ovsdb.log")).unwrap_or_default()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(3),
        request: Duration::from_secs(5),
        ..Timeouts::default()
    }
}

#[tokio::test]
async fn right_ca_and_client_cert_list_dbs_and_commit() {
    let s = TlsServer::start();
    let tls = s.pki.good();
    let (c, _) = Client::connect(&s.remote(), Some(&tls), &timeouts())
        .await
        .unwrap_or_else(|e| panic!("connect over {}: {e}\nserver log:\n{}", s.remote(), s.log()));
    let dbs = c.list_dbs().await.unwrap();
    assert!(dbs.contains(&NB.to_string()), "{dbs:?}");

    let mut t = Transaction::new(NB);
    let name = t.insert(
        "Logical_Switch",
        [("name", Datum::from("over-tls"))]
            .into_iter()
            .collect::<Row>(),
    );
    let out = c.transact(&t).await.unwrap();
    let uuid = out.named[&name];

    // Committed: a second TLS connection sees it.
    let (c2, _) = Client::connect(&s.remote(), Some(&tls), &timeouts())
        .await
        .unwrap();
    let mut t = Transaction::new(NB);
    t.select(
        "Logical_Switch",
        vec![ovsdb::Condition::eq("name", "over-tls")],
    );
    let rows = c2.transact(&t).await.unwrap().results[0]
        .rows
        .clone()
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["_uuid"],
        serde_json::json!(["uuid", uuid.to_string()])
    );
}

#[tokio::test]
async fn unrelated_ca_is_refused_within_the_connect_timeout() {
    let s = TlsServer::start();
    let t = timeouts();
    let tls = s.pki.files(&s.pki.other_ca, &s.pki.client);
    let start = Instant::now();
    let r = tokio::time::timeout(
        t.connect + Duration::from_secs(2),
        Client::connect(&s.remote(), Some(&tls), &t),
    )
    .await
    .expect("connect bounded by Timeouts.connect");
    let elapsed = start.elapsed();
    let err = match r {
        Ok(_) => panic!("a server certificate from another CA was accepted"),
        Err(e) => e,
    };
    // A certificate we do not trust is a configuration error, never a retryable I/O blip.
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(!err.is_transient(), "{err:?}");
    assert!(elapsed <= t.connect + Duration::from_secs(1), "{elapsed:?}");
    // The client itself rejected the chain, rather than timing out.
    assert!(!matches!(err, Error::Timeout { .. }), "{err}");
    // The client itself rejected the chain. (Both `ovs-pki` CAs may carry the same subject name,
    // made from the same second, so webpki may report a bad signature rather than an unknown
    // issuer.)
    let msg = format!("{err:?}");
    assert!(
        msg.contains("UnknownIssuer") || msg.contains("BadSignature"),
        "not a certificate-chain failure: {err}: {msg}"
    );
}

/// The reverse: our client trusts the server, but its own certificate is from another CA, which
/// ovsdb-server refuses. With TLS 1.3 the client may finish its handshake before the server has
/// judged its certificate, so the failure may surface at the first request; either way it is an
/// Error within bounded time.
#[tokio::test]
async fn client_cert_from_unrelated_ca_is_refused_by_the_server() {
    let s = TlsServer::start();
    let t = timeouts();
    let tls = s.pki.files(&s.pki.ca, &s.pki.rogue);
    let r = tokio::time::timeout(Duration::from_secs(15), async {
        let (c, _) = Client::connect(&s.remote(), Some(&tls), &t).await?;
        c.list_dbs().await
    })
    .await
    .expect("bounded by the connect and request timeouts");
    match r {
        Ok(dbs) => panic!("server answered a client with a rogue certificate: {dbs:?}"),
        Err(e) => assert!(
            matches!(
                e,
                Error::Io { .. } | Error::Disconnected { .. } | Error::Tls(_)
            ),
            "{e:?}"
        ),
    }
}

#[tokio::test]
async fn ssl_remote_without_tls_files_is_a_tls_error() {
    let s = TlsServer::start();
    let err = Client::connect(&s.remote(), None, &timeouts())
        .await
        .err()
        .expect("ssl: without TLS files connected");
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains(&s.remote().to_string()), "{err}");
    assert!(!err.is_transient(), "{err}");
}

/// Well-formed PEM in `dir` whose contents are not DER of the announced `label`.
fn bad_der(dir: &Path, label: &str) -> PathBuf {
    let p = dir.join(format!("bad-der-{}.pem", label.replace(' ', "-")));
    std::fs::write(
        &p,
        format!(
            "-----BEGIN {label}-----\nZ2FyYmFnZSBnYXJiYWdlIGdhcmJhZ2U=\n-----END {label}-----\n"
        ),
    )
    .unwrap();
    p
}

/// `Ok` when `r` is an [`Error::Tls`] whose message names `file`.
fn tls_error_naming<T>(r: ovsdb::Result<T>, file: &Path) -> Result<(), String> {
    let err = match r {
        Ok(_) => return Err("connected".into()),
        Err(e) => e,
    };
    if !matches!(err, Error::Tls(_)) {
        return Err(format!("not Error::Tls: {err:?}"));
    }
    let shown = file.display().to_string();
    if !err.to_string().contains(&shown) {
        return Err(format!("does not name {shown}: {err}"));
    }
    Ok(())
}

#[tokio::test]
async fn missing_or_garbage_pem_files_are_tls_errors_naming_the_file() {
    let s = TlsServer::start();
    let d = s.dir.path();
    let missing = d.join("does-not-exist.pem");
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM at all\n").unwrap();
    let bad_cert = bad_der(d, "CERTIFICATE");
    let good = s.pki.good();

    let mut cases: Vec<(String, TlsFiles, PathBuf)> = Vec::new();
    for (what, path) in [
        ("missing", &missing),
        ("garbage", &garbage),
        // A key file has no certificate in it, a certificate file no key.
        ("wrong kind", &good.private_key),
    ] {
        let mut f = good.clone();
        f.ca_cert = path.clone();
        cases.push((format!("{what} ca_cert"), f, path.clone()));
        let mut f = good.clone();
        f.certificate = path.clone();
        cases.push((format!("{what} certificate"), f, path.clone()));
    }
    for (what, path) in [
        ("missing", &missing),
        ("garbage", &garbage),
        ("wrong kind", &good.certificate),
    ] {
        let mut f = good.clone();
        f.private_key = path.clone();
        cases.push((format!("{what} private_key"), f, path.clone()));
    }
    let mut f = good.clone();
    f.ca_cert = bad_cert.clone();
    cases.push(("undecodable ca_cert".into(), f, bad_cert.clone()));

    let mut failures = Vec::new();
    for (case, files, path) in &cases {
        let r = Client::connect(&s.remote(), Some(files), &timeouts()).await;
        if let Err(why) = tls_error_naming(r, path) {
            failures.push(format!("{case}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

/// A private-key file that is well-formed PEM but not a usable key must be reported naming the
/// file too, like every other unusable PEM file.
#[tokio::test]
async fn undecodable_private_key_is_a_tls_error_naming_the_file() {
    let s = TlsServer::start();
    let d = s.dir.path();
    let mut failures = Vec::new();
    for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"] {
        let path = bad_der(d, label);
        let mut f = s.pki.good();
        f.private_key = path.clone();
        let r = Client::connect(&s.remote(), Some(&f), &timeouts()).await;
        if let Err(why) = tls_error_naming(r, &path) {
            failures.push(format!("undecodable {label}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}
