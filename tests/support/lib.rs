pub mod daemon;
pub mod mock_llm;
