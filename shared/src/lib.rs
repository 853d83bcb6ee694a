//! Types both ends of the `vtuberd` local socket agree on.
//!
//! Kept free of runtime and I/O policy so the daemon, the terminal client and test
//! harnesses can all depend on it without pulling each other's choices in.

#[cfg(feature = "client")]
pub mod client;
pub mod cookie;
pub mod framing;
pub mod paths;
pub mod protocol;
pub mod units;

pub use protocol::*;
