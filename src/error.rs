//! The one error type of the subcommands: what to print, and the exit code.

use std::fmt;

use wharf_engine::error::{EXIT_USAGE, WharfError};

/// Why a subcommand failed: a message for stderr (printed once, by `main`, as
/// `error: MESSAGE`) and the process exit code.
#[derive(Debug)]
pub struct CliError {
    message: Option<String>,
    code: i32,
}

impl CliError {
    /// A failure with `message` and exit `code`.
    pub fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            message: Some(message.into()),
            code,
        }
    }

    /// A malformed command line (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(EXIT_USAGE, message)
    }

    /// Exit with `code` and print nothing: the guest's own exit status under `wharf
    /// run`, which has said whatever it had to say itself.
    pub fn exit(code: i32) -> CliError {
        CliError {
            message: None,
            code,
        }
    }

    /// The message to print, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The process exit code.
    pub fn code(&self) -> i32 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl From<WharfError> for CliError {
    /// The error's message (with the cause chain of an internal error) and its exit code.
    fn from(e: WharfError) -> Self {
        let message = match &e {
            WharfError::Internal(inner) => format!("{inner:#}"),
            other => other.to_string(),
        };
        CliError::new(e.exit_code(), message)
    }
}

impl From<anyhow::Error> for CliError {
    /// The error with its cause chain; exit 1.
    fn from(e: anyhow::Error) -> Self {
        CliError::new(1, format!("{e:#}"))
    }
}
