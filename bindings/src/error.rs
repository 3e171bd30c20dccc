//! The one error type every fallible call returns, with a stable code per kind.

use hyperswarm::swarm::SwarmError;

/// What went wrong, as a stable code that host languages can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A topic was not exactly 32 bytes.
    InvalidTopic,
    /// A public key, secret key or seed had the wrong length or was not a valid key.
    InvalidKey,
    /// Some other argument was out of range or malformed (bootstrap address, option).
    InvalidArgument,
    /// The swarm (or DHT node, or testnet) has been destroyed.
    Destroyed,
    /// This discovery session has been destroyed.
    SessionDestroyed,
    /// The connection has been closed (by us, the peer or the swarm).
    ConnectionClosed,
    /// Binding a socket failed.
    Bind,
    /// The DHT or the connection underneath failed.
    Network,
    /// A join asked for neither server nor client mode.
    NoMode,
    /// Reading from or writing to a connection failed.
    Io,
    /// A bug: a task panicked or a call was made from the wrong thread.
    Internal,
}

impl ErrorCode {
    /// The code as a string (`ERR_…`), stable across releases.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidTopic => "ERR_INVALID_TOPIC",
            ErrorCode::InvalidKey => "ERR_INVALID_KEY",
            ErrorCode::InvalidArgument => "ERR_INVALID_ARGUMENT",
            ErrorCode::Destroyed => "ERR_DESTROYED",
            ErrorCode::SessionDestroyed => "ERR_SESSION_DESTROYED",
            ErrorCode::ConnectionClosed => "ERR_CONNECTION_CLOSED",
            ErrorCode::Bind => "ERR_BIND",
            ErrorCode::Network => "ERR_NETWORK",
            ErrorCode::NoMode => "ERR_NO_MODE",
            ErrorCode::Io => "ERR_IO",
            ErrorCode::Internal => "ERR_INTERNAL",
        }
    }

    /// Whether the caller passed something wrong (host languages raise these as argument
    /// errors, e.g. JS `TypeError`), as opposed to a failure at run time.
    pub fn is_argument_error(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidTopic
                | ErrorCode::InvalidKey
                | ErrorCode::InvalidArgument
                | ErrorCode::NoMode
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call: a stable [`ErrorCode`] and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Details for people, not for matching.
    pub message: String,
}

impl Error {
    /// An error of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn destroyed() -> Self {
        Error::new(ErrorCode::Destroyed, "swarm has been destroyed")
    }

    pub(crate) fn closed() -> Self {
        Error::new(ErrorCode::ConnectionClosed, "connection has been closed")
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl From<SwarmError> for Error {
    fn from(e: SwarmError) -> Self {
        let code = match &e {
            SwarmError::Destroyed => ErrorCode::Destroyed,
            SwarmError::NoMode => ErrorCode::NoMode,
            SwarmError::SessionDestroyed => ErrorCode::SessionDestroyed,
            SwarmError::Network(_) => ErrorCode::Network,
            SwarmError::Bind(_) => ErrorCode::Bind,
        };
        Error::new(code, e.to_string())
    }
}

/// Checks a topic's length.
pub fn topic(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        Error::new(
            ErrorCode::InvalidTopic,
            format!("a topic is 32 bytes, got {}", bytes.len()),
        )
    })
}

/// Checks a public key: 32 bytes.
pub fn public_key(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        Error::new(
            ErrorCode::InvalidKey,
            format!("a public key is 32 bytes, got {}", bytes.len()),
        )
    })
}
