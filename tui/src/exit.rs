//! Exit statuses that carry meaning beyond "failed" (scripts test them).

use std::fmt;

/// An error that ends the program with a specific status and a plain message
/// (no `error:` prefix, since some of these, like "not running", are answers).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// `status` and `daemon status` when no daemon answers (like `systemctl status`).
pub const NOT_RUNNING_STATUS: u8 = 3;
/// `say` when the reply failed.
pub const TURN_FAILED: u8 = 1;
/// `say` when the reply was interrupted.
pub const TURN_INTERRUPTED: u8 = 2;
