//! Error kinds shared by the library: what went wrong, never how to show it.
//!
//! Storage adapters translate driver errors into these kinds and services pass
//! them up; only `http::error` decides what status code and body a kind becomes.

use std::fmt;

/// A request-time failure, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The caller's `If-Match` version is not the stored one.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; the caller may retry after the given number of seconds.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    /// The gateway's upstream could not be reached or broke the exchange
    /// (its fault, not the caller's). The text names no upstream.
    #[error("{0}")]
    BadGateway(String),
    /// The gateway's upstream did not answer within the route's timeout.
    #[error("{0}")]
    GatewayTimeout(String),
    /// Work that ran past its deadline (a function's timeout).
    #[error("{0}")]
    Timeout(String),
    /// User code (a function) failed; the text describes its failure, not
    /// ours, so it may be shown.
    #[error("{0}")]
    Failed(String),
    /// Our bug or an unexpected driver failure. The text is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }
}
