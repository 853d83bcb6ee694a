//! Loading and validating `conf.yaml`.

pub mod schema;

pub use schema::*;
