//! Kubernetes `Status`-shaped API errors, so clients see the same failure
//! objects (reason, code) they would get from a real API server.

use serde_json::{json, Value};

/// An API failure that is rendered as a `v1 Status` object with its HTTP code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code, also copied into `Status.code`.
    pub code: u16,
    /// Machine-readable `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human-readable `Status.message`.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    /// The named object (or resource) does not exist.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }

    /// The URL does not name anything this server serves.
    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// Create of a name that is already taken.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
    }

    /// Optimistic-concurrency failure (stale resourceVersion or failed precondition).
    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
    }

    /// 401: the credentials are not known.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: the user may not do this (kube-apiserver's RBAC message).
    pub fn forbidden(user: &str, verb: &str, resource: &str, group: &str, scope: &str) -> Self {
        let group = if group.is_empty() {
            "\"\"".to_string()
        } else {
            format!("\"{group}\"")
        };
        Self::new(
            403,
            "Forbidden",
            format!("{resource} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group {group} {scope}"),
        )
    }

    /// The object is semantically wrong (missing name, bad CRD spec, ...).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// The request itself could not be understood (bad JSON, bad selector, ...).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// A watch or list asked for history that has been compacted away.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The verb is not supported on this path.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    /// The request body has a content type this server cannot decode.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format ({content_type})"),
        )
    }

    /// Something on the server side failed (e.g. persisting to disk).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// Renders the error as a `v1 Status` object.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Shorthand for results whose error is rendered as a `Status`.
pub type ApiResult<T> = Result<T, ApiError>;
