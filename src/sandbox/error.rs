//! Errors of the sandbox hub: start-up failures and D1 error answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;

use crate::link::wire::ErrorBody;
use crate::order::D1ErrorCode;

/// Why the sandbox could not start or a sandbox helper failed.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// A state file could not be read or written.
    #[error("sandbox state {path}: {reason}")]
    State {
        /// File or directory concerned.
        path: String,
        /// What failed.
        reason: String,
    },
    /// `sandbox.toml` is not valid.
    #[error("sandbox configuration invalid: {0}; fix sandbox.toml in the state directory")]
    Config(String),
    /// The hub database failed.
    #[error("sandbox database: {0}")]
    Database(String),
    /// Key generation or key parsing failed.
    #[error("sandbox key material: {0}")]
    Keys(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}; pick another --listen address")]
    Listen {
        /// Address asked for.
        addr: String,
        /// OS error.
        reason: String,
    },
    /// A call to the hub (sample client) failed.
    #[error("sandbox hub call failed: {0}")]
    Upstream(String),
}

impl SandboxError {
    /// Stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::State { .. } => "SANDBOX_STATE",
            SandboxError::Config(_) => "SANDBOX_CONFIG",
            SandboxError::Database(_) => "SANDBOX_DATABASE",
            SandboxError::Keys(_) => "SANDBOX_KEYS",
            SandboxError::Listen { .. } => "SANDBOX_LISTEN",
            SandboxError::Upstream(_) => "SANDBOX_UPSTREAM",
        }
    }

    pub(crate) fn state(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        SandboxError::State {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<rusqlite::Error> for SandboxError {
    fn from(e: rusqlite::Error) -> Self {
        SandboxError::Database(e.to_string())
    }
}

/// A D1 error answer: HTTP status and `{errorCode, error}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct HubError {
    /// HTTP status.
    pub status: StatusCode,
    /// D1 error code, when the spec defines one for the case.
    pub error_code: Option<D1ErrorCode>,
    /// Field or detail in error (troubleshooting only).
    pub error: Option<String>,
}

impl HubError {
    fn new(status: StatusCode, code: Option<D1ErrorCode>, error: impl Into<String>) -> Self {
        HubError {
            status,
            error_code: code,
            error: Some(error.into()),
        }
    }

    /// 400 FIELD_INVALID_FORMAT on `field`.
    pub fn invalid_format(field: &str) -> Self {
        Self::d1(D1ErrorCode::FieldInvalidFormat, field)
    }

    /// 400 FIELD_INVALID_VALUE on `field`.
    pub fn invalid_value(field: &str) -> Self {
        Self::d1(D1ErrorCode::FieldInvalidValue, field)
    }

    /// 401 AUTHORIZER_UNAUTHORIZED.
    pub fn unauthorized(detail: &str) -> Self {
        Self::d1(D1ErrorCode::AuthorizerUnauthorized, detail)
    }

    /// 403 AUTHORIZER_FORBIDDEN: the token's principal may not touch this resource.
    pub fn forbidden(detail: &str) -> Self {
        Self::d1(D1ErrorCode::AuthorizerForbidden, detail)
    }

    /// 403 OPERATION_NOT_ALLOWED on `field`.
    pub fn not_allowed(field: &str) -> Self {
        Self::d1(D1ErrorCode::OperationNotAllowed, field)
    }

    /// 404 with what was not found.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, what)
    }

    /// 500 INTERNAL_ERROR; the detail goes to the log, not to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(code = "SANDBOX_INTERNAL", "{detail}");
        Self::d1(D1ErrorCode::InternalError, "")
    }

    /// A D1 answer with `code`, at the HTTP status the contract gives it.
    pub fn d1(code: D1ErrorCode, error: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, Some(code), error)
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error_code: self.error_code,
            error: self.error.filter(|e| !e.is_empty()),
        };
        (self.status, Json(body)).into_response()
    }
}
