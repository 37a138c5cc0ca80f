//! Errors of the Pismo client and the counter flow, each with a stable code and
//! words branch staff can act on.

use super::model::FieldError;

/// Why a Pismo call or a counter request did not go through.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PismoError {
    /// A value was refused locally before being sent.
    #[error("{0}; correct it and ask again")]
    Field(#[from] FieldError),
    /// 400: Pismo refused the request; its message is kept.
    #[error("Pismo refused the request: {message}; correct it and ask again")]
    BadRequest {
        /// Pismo's `message`.
        message: String,
    },
    /// 409 on create: the customer already has an active plastic card.
    #[error("this customer already has an active plastic card at Pismo; no new card was made — check the customer's existing card")]
    Duplicate,
    /// 403 on create: the customer is not one this issuer may serve (unknown customer).
    #[error("Pismo does not know customer {customer} for this issuer; check the customer id")]
    UnknownCustomer {
        /// The customer id sent.
        customer: i64,
    },
    /// 401 even with a fresh token: the station's Pismo credential is refused.
    #[error(
        "Pismo refused the station's credential; call IT to check the [pismo] client id and secret"
    )]
    Unauthorized,
    /// Network error or 5xx after every retry.
    #[error("Pismo cannot be reached ({detail}); the request is kept and will be tried again")]
    Unreachable {
        /// What failed last.
        detail: String,
    },
    /// The card did not become ready for embossing before the deadline.
    #[error("Pismo has not made card {card} ready for embossing after {seconds} s; the request is kept — press Retry later or call IT")]
    IngressTimeout {
        /// Pismo card id.
        card: i64,
        /// How long the station waited.
        seconds: u64,
    },
    /// Start embossing is not allowed by the configuration (production environment).
    #[error("starting an embossing run is only allowed in a test environment; the card goes out in the next scheduled run")]
    StartNotAllowed,
    /// An answer the contract does not document.
    #[error("Pismo answered HTTP {status} to {call}; call IT")]
    Unexpected {
        /// The call.
        call: &'static str,
        /// HTTP status.
        status: u16,
    },
    /// The station's configuration or secret file is unusable.
    #[error("Pismo settings: {0}")]
    Config(String),
    /// The journal refused a write.
    #[error("journal: {0}")]
    Journal(String),
    /// No such counter request.
    #[error("no Pismo request '{0}'")]
    UnknownRequest(String),
    /// The request is not in a state where this action applies.
    #[error("{0}")]
    NotNow(String),
}

impl PismoError {
    /// Stable code for logs and the console.
    pub fn code(&self) -> &'static str {
        match self {
            PismoError::Field(_) => "PISMO_FIELD",
            PismoError::BadRequest { .. } => "PISMO_BAD_REQUEST",
            PismoError::Duplicate => "PISMO_DUPLICATE",
            PismoError::UnknownCustomer { .. } => "PISMO_UNKNOWN_CUSTOMER",
            PismoError::Unauthorized => "PISMO_UNAUTHORIZED",
            PismoError::Unreachable { .. } => "PISMO_UNREACHABLE",
            PismoError::IngressTimeout { .. } => "PISMO_INGRESS_TIMEOUT",
            PismoError::StartNotAllowed => "PISMO_START_NOT_ALLOWED",
            PismoError::Unexpected { .. } => "PISMO_UNEXPECTED",
            PismoError::Config(_) => "PISMO_CONFIG",
            PismoError::Journal(_) => "PISMO_JOURNAL",
            PismoError::UnknownRequest(_) => "PISMO_UNKNOWN_REQUEST",
            PismoError::NotNow(_) => "PISMO_NOT_NOW",
        }
    }

    /// Whether the same step may simply be tried again later (nothing to correct).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PismoError::Unreachable { .. }
                | PismoError::IngressTimeout { .. }
                | PismoError::Unauthorized
                | PismoError::Unexpected { .. }
                | PismoError::Journal(_)
        )
    }
}

impl From<crate::journal::JournalError> for PismoError {
    fn from(e: crate::journal::JournalError) -> Self {
        PismoError::Journal(e.to_string())
    }
}
