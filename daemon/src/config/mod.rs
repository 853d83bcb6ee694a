//! Loading and validating `conf.yaml` and its overlays.

pub mod layers;
pub mod load;
pub mod mcp;
pub mod schema;

pub use layers::{LoadedConfig, load};
pub use load::{ConfigError, ConfigProblem, parse};
pub use mcp::{McpConfig, PolicyConfig, SandboxConfig, ServerConfig, Transport};
pub use schema::*;
