//! Peregrine's coverage sweeper Lambda, as a library: every few minutes (the template's
//! `CoverageSweepRate`), which EKS clusters of the organization the agents cover. `main.rs`
//! only builds clients and hands [`handle_schedule`] to `lambda_runtime::run`; tests, the
//! benchmark and the local runner (`tools/local`) call the same functions in-process.
//!
//! A sweep:
//!
//! 1. reads the config table (`peregrine-org`'s configuration; the organization's row is
//!    written from the template's defaults at the first sweep) and lists the organization's
//!    accounts (Organizations `ListAccounts`, every page);
//! 2. decides per account whether it is monitored (auto-enable `NEW`/`ALL`/`NONE`, the
//!    account's row) and writes the rows auto-enable creates or changes;
//! 3. sweeps the monitored active accounts, at most `ACCOUNT_CONCURRENCY` at a time: assumes
//!    `PeregrineCoverageRole` (with the external id), and in each configured region lists the
//!    EKS clusters, their node groups and their EC2 worker nodes ([`discover`]); for each
//!    cluster the `peregrine:managed` tag and the scope decide whether it is swept and managed;
//!    a managed cluster goes to the agent manager first ([`manage`]: automatic agent
//!    management, `crates/manage`), and the endpoint shares of deleted clusters are released;
//!    each cluster is assessed against HeartbeatsTable ([`assess`]);
//! 4. writes the node rows and the cluster row, and publishes one "Peregrine Coverage Status
//!    Change" event on the findings bus when a cluster's status differs from the one last
//!    published;
//! 5. removes rows of clusters that are gone (or tagged out) and of accounts no longer
//!    monitored or no longer in the organization, writes each account's row and the
//!    statistics.
//!
//! An account that fails (the role cannot be assumed, throttling, a region not enabled) is
//! that account's issue and keeps its previous rows; it never fails the sweep. Sweeps are
//! idempotent: the same inventory gives the same rows and no new event. See
//! `docs/coverage.md`.

pub mod assess;
mod config;
pub mod discover;
pub mod manage;
mod sweep;

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use peregrine_event::Timestamp;

pub use crate::config::{Config, ConfigError, DEFAULT_ROLE_NAME, DEFAULT_STALE_AFTER};
pub use crate::manage::{AgentManager, AutoManagement, ManagementOutcome, NoAgentManagement};
pub use crate::sweep::{CoverageDeps, SweepError, SweepSummary};

/// The Lambda binary (`BuildProperties.Binary` in template.yaml).
pub const BINARY: &str = "peregrine-coverage";

/// The sweep starts no account this long before the invocation's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// The sweeper Lambda's handler: one sweep, on the schedule's event.
pub async fn handle_schedule<M: AgentManager>(
    deps: &CoverageDeps<M>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<SweepSummary, SweepError> {
    let deadline = peregrine_lambda::stop_before(event.context.deadline, DEADLINE_MARGIN);
    deps.sweep(Timestamp::now(), deadline).await
}
