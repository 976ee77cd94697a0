//! Why a sandbox operation failed, with enough context (the command, the component) to act on.

use std::time::Duration;

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host tool exited non-zero or could not start.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// A component did not become ready in time.
    #[error("{what} not ready after {after:?}")]
    Timeout { what: String, after: Duration },
    /// File system trouble in the run directory.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The Kubernetes API fixture refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Talking to an OVSDB server failed.
    #[error("ovsdb: {0}")]
    Ovsdb(#[from] ovsdb::Error),
    /// A CNI plugin failed or produced an unusable result.
    #[error("CNI {command} for {pod}: {detail}")]
    Cni {
        command: String,
        pod: String,
        detail: String,
    },
    /// The request does not make sense for this sandbox (unknown pod, no sandbox running…).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
