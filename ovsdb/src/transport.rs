//! Remotes as OVN writes them (`tcp:IP:PORT`, `ssl:IP:PORT`, `unix:PATH`, comma-separated lists)
//! and the byte streams they open, TLS included.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{Error, Result};

/// One server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Tcp { host: String, port: u16 },
    Ssl { host: String, port: u16 },
    Unix(PathBuf),
}

impl Remote {
    /// Parses one remote; IPv6 hosts are written in brackets (`tcp:[::1]:6641`).
    pub fn parse(s: &str) -> Result<Remote> {
        let s = s.trim();
        let bad = || Error::BadRemote(s.to_string());
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Remote::Unix(PathBuf::from(path)));
        }
        let (ssl, rest) = if let Some(r) = s.strip_prefix("tcp:") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("ssl:") {
            (true, r)
        } else {
            return Err(bad());
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, p) = r.split_once("]:").ok_or_else(bad)?;
            (h, p)
        } else {
            rest.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() || host.contains(':') && !rest.starts_with('[') {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.to_string();
        Ok(if ssl {
            Remote::Ssl { host, port }
        } else {
            Remote::Tcp { host, port }
        })
    }

    /// Parses OVN's comma-separated remote list.
    pub fn parse_list(s: &str) -> Result<Vec<Remote>> {
        let list: Vec<Remote> = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Remote::parse)
            .collect::<Result<_>>()?;
        if list.is_empty() {
            return Err(Error::BadRemote(s.to_string()));
        }
        Ok(list)
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |f: &mut fmt::Formatter<'_>, scheme: &str, host: &str, port: u16| {
            if host.contains(':') {
                write!(f, "{scheme}:[{host}]:{port}")
            } else {
                write!(f, "{scheme}:{host}:{port}")
            }
        };
        match self {
            Remote::Tcp { host, port } => hp(f, "tcp", host, *port),
            Remote::Ssl { host, port } => hp(f, "ssl", host, *port),
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// PEM files for `ssl:` remotes, as OVN's `--private-key`, `--certificate` and `--ca-cert` take them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// A connected byte stream of any transport.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Opens a stream to `remote` within `timeout`. TLS files are read on every connect, so renewed
/// certificates take effect at the next reconnect.
pub async fn connect(
    remote: &Remote,
    tls: Option<&TlsFiles>,
    timeout: Duration,
) -> Result<Pin<Box<dyn Stream>>> {
    let io = |source| Error::Io {
        remote: remote.to_string(),
        source,
    };
    let fut = async {
        Ok::<Pin<Box<dyn Stream>>, Error>(match remote {
            Remote::Unix(p) => Box::pin(UnixStream::connect(p).await.map_err(io)?),
            Remote::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                Box::pin(s)
            }
            Remote::Ssl { host, port } => {
                let tls = tls.ok_or_else(|| {
                    Error::Tls(format!(
                        "{remote} needs a CA certificate, certificate and key"
                    ))
                })?;
                let config = tls::client_config(tls)?;
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| Error::Tls(format!("bad server name {host}: {e}")))?;
                let c = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, s)
                    .await
                    .map_err(|e| handshake_error(remote, e))?;
                Box::pin(c)
            }
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Error::Timeout {
            what: format!("connecting to {remote}"),
            after: timeout,
        })?
}

/// A peer that presents a certificate we do not trust (or refuses ours) is a configuration
/// problem, not a network blip: report it as TLS so callers do not retry it forever quietly.
fn handshake_error(remote: &Remote, e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        Error::Tls(format!("handshake with {remote}: {e}"))
    } else {
        Error::Io {
            remote: remote.to_string(),
            source: e,
        }
    }
}

mod tls {
    //! OVS authenticates peers by their CA alone: its certificates (from `ovs-pki`) carry no
    //! subject names matching the server address. We verify the chain against the configured CA
    //! and the handshake signatures, but not the name, exactly like OVS's own clients.

    use std::fs::File;
    use std::io::BufReader;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::TlsFiles;
    use crate::error::{Error, Result};

    fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
        let f = File::open(path).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        let certs = rustls_pemfile::certs(&mut BufReader::new(f))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!("{}: no certificate", path.display())));
        }
        Ok(certs)
    }

    fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
        let f = File::open(path).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        rustls_pemfile::private_key(&mut BufReader::new(f))
            .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
            .ok_or_else(|| Error::Tls(format!("{}: no private key", path.display())))
    }

    pub fn client_config(files: &TlsFiles) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in certs(&files.ca_cert)? {
            roots
                .add(c)
                .map_err(|e| Error::Tls(format!("{}: {e}", files.ca_cert.display())))?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CaOnly(inner)))
            .with_client_auth_cert(certs(&files.certificate)?, key(&files.private_key)?)
            .map_err(|e| {
                Error::Tls(format!(
                    "{} with {}: {e}",
                    files.private_key.display(),
                    files.certificate.display()
                ))
            })
    }

    #[derive(Debug)]
    struct CaOnly(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for CaOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            match self
                .0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ovn_remote_lists() {
        let l =
            Remote::parse_list("tcp:10.0.0.1:6641,ssl:[fd00::1]:6641, unix:/run/ovn/ovnnb_db.sock")
                .unwrap();
        assert_eq!(
            l,
            vec![
                Remote::Tcp {
                    host: "10.0.0.1".into(),
                    port: 6641
                },
                Remote::Ssl {
                    host: "fd00::1".into(),
                    port: 6641
                },
                Remote::Unix("/run/ovn/ovnnb_db.sock".into()),
            ]
        );
        assert_eq!(l[1].to_string(), "ssl:[fd00::1]:6641");
        for bad in [
            "",
            "tcp:1.2.3.4",
            "udp:1.2.3.4:1",
            "tcp:1.2.3.4:99999",
            "unix:",
            "tcp:::1:6641",
        ] {
            assert!(Remote::parse_list(bad).is_err(), "{bad} accepted");
        }
    }
}
