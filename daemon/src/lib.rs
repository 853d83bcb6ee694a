//! `vtuberd` as a library: the binary is a thin shell over these modules, and the
//! benchmarks drive them directly.

pub mod characters;
pub mod cli;
pub mod config;
pub mod events;
pub mod ipc;
pub mod llm;
pub mod mcp;
pub mod models;
pub mod pcm;
pub mod private;
pub mod sound;
pub mod speech;
pub mod stage;
pub mod store;
pub mod tools;
pub mod voice;
pub mod web;
