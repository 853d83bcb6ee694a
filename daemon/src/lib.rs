//! `vtuberd` as a library: the binary is a thin shell over these modules, and the
//! benchmarks drive them directly.
//!
//! [`daemon`] starts everything and builds the [`services::Services`] the socket
//! ([`ipc`]) and the web page ([`web`]) serve from; [`conversation`] is the character's
//! side of every exchange, driven by those clients and by [`voice_input`].

pub mod characters;
pub mod cli;
pub mod clients;
pub mod config;
pub mod conversation;
pub mod cpu_plan;
pub mod daemon;
pub mod events;
#[cfg(test)]
mod fuzz_props;
pub mod images;
pub mod ipc;
pub mod llm;
pub mod logging;
pub mod mcp;
pub mod models;
pub mod pcm;
pub mod private;
pub mod readiness;
pub mod reload;
pub mod service_manager;
pub mod services;
pub mod socket_activation;
pub mod sound;
pub mod speech;
pub mod speech_out;
pub mod store;
pub mod voice_input;
pub mod web;
