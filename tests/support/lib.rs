pub mod daemon;
pub mod mcp;
pub mod mock_llm;
pub mod web;
