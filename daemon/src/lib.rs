//! `vtuberd` as a library: the binary is a thin shell over these modules, and the
//! benchmarks drive them directly.

pub mod config;
pub mod llm;
