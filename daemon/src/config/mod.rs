//! Loading and validating `conf.yaml`.

pub mod load;
pub mod schema;

pub use load::{ConfigError, ConfigProblem, LoadedConfig, load, parse};
pub use schema::*;
