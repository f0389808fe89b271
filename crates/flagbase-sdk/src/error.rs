//! The SDK's error kinds.

/// What went wrong talking to Flagbase or reading a bootstrap file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body (`{"error", "code"}`).
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The body's `code` (e.g. `FLAG_NOT_FOUND`, `FORBIDDEN`).
        code: String,
        /// The body's `error`.
        message: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("transport: {0}")]
    Transport(String),
    /// A response, stream event or file was not what the protocol says.
    #[error("unexpected data: {0}")]
    Decode(String),
    /// A bad argument (base URL, token, flag type).
    #[error("invalid {0}")]
    Invalid(String),
    /// Reading or writing the bootstrap file.
    #[error("bootstrap file: {0}")]
    Io(#[from] std::io::Error),
    /// `init` gave up: no definitions from the server and no bootstrap file.
    #[error("no flag definitions: {0}")]
    Unavailable(String),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        if e.is_decode() {
            Error::Decode(e.to_string())
        } else {
            Error::Transport(e.to_string())
        }
    }
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
