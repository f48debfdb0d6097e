//! Runs Peregrine's functions against any AWS endpoint (moto here, a real account there):
//!
//! - [`template`]: `template.yaml` parsed with its CloudFormation short-form tags, intrinsic
//!   functions resolved for a local stack;
//! - [`spec`] and [`provision`]: the template's queues, tables, buses and rules created (or
//!   checked) idempotently, and each function's resolved environment with local names;
//! - [`runner`]: the SQS event-source mapping and the publisher's schedule, calling the
//!   functions' library handlers in-process.
//!
//! The sample activity `send-sample` sends is `peregrine_testkit::samples`.
//!
//! See `docs/pipeline.md` ("Running it locally").

pub mod provision;
pub mod runner;
pub mod spec;
pub mod template;

pub use crate::provision::{LocalStack, Mode, ProvisionError, ProvisionOptions, Queue, provision};
pub use crate::runner::{PollReport, Runner, RunnerError, RunnerOptions, function_config};
pub use crate::template::{Resolver, StackContext, Template, TemplateError};

/// Transitional, until functions/ names `peregrine_testkit::samples` itself; delete then.
#[doc(hidden)]
pub use peregrine_testkit::samples as sample;
