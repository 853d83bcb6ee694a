//! End-to-end tests of the real `vtuberd` and `vtuber` binaries.
//!
//! They are one test binary on purpose: every test binary links the whole daemon
//! library (llama.cpp, candle, ONNX Runtime bindings), so one binary per file cost
//! gigabytes of disk and minutes of linking in CI. nextest still runs each test in
//! its own process; filter by module (`voice::`, `web::`, ...).

mod common;

mod bounds;
mod browser;
mod chat;
mod conversation;
mod daemon;
mod embedded;
mod faults;
mod mcp;
mod mcp_conformance;
mod mcp_http;
mod olv_frontend;
mod privacy;
mod proactive;
mod providers;
mod security;
mod service;
mod socket_activation;
mod speech_engines;
mod voice;
mod web;
