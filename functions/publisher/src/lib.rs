//! Peregrine's publisher Lambda, as a library: the findings outbox, run every minute. `main.rs`
//! only builds clients and hands [`handle_schedule`] to `lambda_runtime::run`; tests and the
//! local runner (`tools/local`) call the same functions in-process.
//!
//! [`handle_schedule`] publishes the finding updates whose time has come
//! (`FINDING_PUBLISHING_FREQUENCY`) and anything an earlier publish failed on, then, with the
//! Security Hub export on, imports what was published into Security Hub. The store, the bus and
//! the hub are `peregrine-store`'s. See `docs/pipeline.md` and `docs/securityhub.md`.

mod config;
mod export;
mod publish;

/// The Lambda binary (`BuildProperties.Binary` in template.yaml).
pub const BINARY: &str = "peregrine-publisher";

pub use crate::config::{Config, ConfigError};
pub use crate::export::{ExportSummary, export_due};
pub use crate::publish::{
    AwsPublisherDeps, PublishSummary, PublisherDeps, PublisherError, handle_schedule, publish_due,
};
