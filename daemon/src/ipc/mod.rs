//! The local socket: binding it safely ([`listener`]), one session per attached client
//! (`session`), and what each request gets back (`dispatch`).

mod dispatch;
pub mod listener;
mod session;

pub use listener::{BindError, BoundSocket, Cookie, adopt, bind};
pub use session::serve;
