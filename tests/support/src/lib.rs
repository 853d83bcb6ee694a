//! What the tests run vtuberd against, in a crate of its own that depends only on
//! `vtuber-shared`: a mock LLM server, MCP test helpers, an isolated daemon launcher with
//! protocol test clients, and the browser page's address.

pub mod daemon;
pub mod frame_queue;
pub mod mcp;
pub mod mock_llm;
pub mod mock_speech;
pub mod mock_vendor;
pub mod web;
