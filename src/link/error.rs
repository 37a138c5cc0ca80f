//! Errors of the station link, each with a stable code for logs and the staff console.

use crate::order::D1ErrorCode;
use thiserror::Error;

/// What went wrong talking to the upstream hub.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The link settings cannot be used (URL, certificate, key).
    #[error("station link settings are invalid: {0}; fix the station configuration")]
    Config(String),
    /// The station's signing credential could not produce a client assertion.
    #[error("station credential unusable: {0}; re-provision the station key")]
    Credential(String),
    /// The hub refused the station's credentials even after a fresh token.
    #[error("upstream refused the station credentials (HTTP {status}); check the station registration at the hub")]
    Unauthorized {
        /// HTTP status returned by the hub.
        status: u16,
    },
    /// The hub rejected the request itself; retrying the same request will not help.
    #[error("upstream rejected the request (HTTP {status}, {}); the event is parked for a supervisor", .code.map_or("-", D1ErrorCode::as_str))]
    Rejected {
        /// HTTP status returned by the hub.
        status: u16,
        /// D1 `errorCode` from the body, when it had one.
        code: Option<D1ErrorCode>,
    },
    /// The hub answered but is not able to serve now (5xx).
    #[error("upstream unavailable (HTTP {status}); will retry")]
    Unavailable {
        /// HTTP status returned by the hub.
        status: u16,
    },
    /// The hub could not be reached (DNS, TCP, TLS, timeout).
    #[error("upstream unreachable: {0}; will retry")]
    Transport(String),
    /// The hub answered with a body this agent cannot read.
    #[error("upstream answer unreadable: {0}")]
    Protocol(String),
}

impl LinkError {
    /// Stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::Config(_) => "LINK_CONFIG",
            LinkError::Credential(_) => "LINK_CREDENTIAL",
            LinkError::Unauthorized { .. } => "LINK_UNAUTHORIZED",
            LinkError::Rejected { .. } => "LINK_REJECTED",
            LinkError::Unavailable { .. } => "LINK_UNAVAILABLE",
            LinkError::Transport(_) => "LINK_TRANSPORT",
            LinkError::Protocol(_) => "LINK_PROTOCOL",
        }
    }

    /// Whether sending the same request later may succeed. A refused credential
    /// counts as retryable: it concerns the whole station (fixed by re-registration),
    /// not the request, so requests wait rather than being parked.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LinkError::Unavailable { .. }
                | LinkError::Transport(_)
                | LinkError::Protocol(_)
                | LinkError::Unauthorized { .. }
                | LinkError::Credential(_)
        )
    }

    pub(crate) fn transport(err: reqwest::Error) -> Self {
        // reqwest errors name the URL, never a body, so they are safe to keep.
        LinkError::Transport(err.without_url().to_string())
    }
}
