//! What can go wrong, and the exit code each failure gives (docs/cli.md, "Exit codes").

/// Exit codes. 2 is also clap's for a command line it cannot parse.
pub mod exit {
    pub const OK: u8 = 0;
    pub const API: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const NETWORK: u8 = 4;
    pub const SERVER: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value, or a setting the command needs, is missing or wrong.
    #[error("{0}")]
    Usage(String),
    /// No credentials, or they could not be used to sign.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The function URL (IAM) refused the request.
    #[error("access denied (HTTP {status}): {message}")]
    Denied { status: u16, message: String },
    /// The API refused the request (a 4xx other than 401/403).
    #[error("HTTP {status} {error_type}: {message}")]
    Api {
        status: u16,
        error_type: String,
        message: String,
    },
    /// The endpoint could not be reached, or did not answer in time.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The API failed (5xx).
    #[error("server error (HTTP {status}) {error_type}: {message}")]
    Server {
        status: u16,
        error_type: String,
        message: String,
    },
    /// A 2xx whose body is not what the operation returns.
    #[error("unexpected reply: {0}")]
    Reply(String),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Credentials(_) | CliError::Denied { .. } => exit::AUTH,
            CliError::Api { .. } | CliError::Output(_) => exit::API,
            CliError::Unreachable { .. } => exit::NETWORK,
            CliError::Server { .. } | CliError::Reply(_) => exit::SERVER,
        }
    }
}
