//! What every Peregrine Lambda does the same way, so each function's `main.rs` stays a few lines
//! and its library holds only its own logic:
//!
//! - [`partial_batch`]: an SQS batch handled record by record, each in a `tracing` span keyed
//!   by its message id; an error or a panic fails only its own record (`batchItemFailures`);
//!   [`partial_batch_until`] also stops starting records near the invocation's deadline;
//! - [`init_logging`]: JSON logs through `tracing-subscriber`;
//! - [`diagnostic`]: an invocation error as the `Diagnostic` Lambda reports;
//! - [`env`]: the function's configuration from the environment the template sets.

mod batch;
mod diagnostic;
pub mod env;
mod telemetry;

pub use crate::batch::{partial_batch, partial_batch_until, stop_before};
pub use crate::diagnostic::{InvocationError, diagnostic};
pub use crate::env::{EnvError, FromEnv};
pub use crate::telemetry::init_logging;
pub use lambda_runtime::Diagnostic;
