//! Peregrine's publisher Lambda, as a library: the findings outbox, run every minute. `main.rs`
//! only builds clients and hands [`handle_schedule`] to `lambda_runtime::run`; tests and the
//! local runner (`tools/local`) call the same functions in-process.
//!
//! [`handle_schedule`] publishes the finding updates whose time has come
//! (`FINDING_PUBLISHING_FREQUENCY`) and anything an earlier publish failed on. The store and the
//! bus are `peregrine-store`'s. See `docs/pipeline.md`.

mod config;
mod publish;

/// The Lambda binary (`BuildProperties.Binary` in template.yaml).
pub const BINARY: &str = "peregrine-publisher";

pub use crate::config::{Config, ConfigError};
pub use crate::publish::{
    AwsPublisherDeps, PublishSummary, PublisherDeps, PublisherError, handle_schedule, publish_due,
};
