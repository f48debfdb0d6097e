//! Runs Peregrine's functions against any AWS endpoint (moto here, a real account there):
//!
//! - [`template`]: `template.yaml` parsed with its CloudFormation short-form tags, intrinsic
//!   functions resolved for a local stack;
//! - [`spec`] and [`provision`]: the template's queues, tables, buses and rules created (or
//!   checked) idempotently, and each function's resolved environment with local names;
//! - [`functions`]: the table of functions the runner runs (binary, trigger, handler);
//! - [`runner`]: the triggers (the SQS event-source mapping, the schedule), calling the
//!   functions' library handlers in-process;
//! - [`sample`]: realistic node activity and attacks, encoded as agent messages.
//!
//! See `docs/pipeline.md` ("Running it locally").

pub mod functions;
pub mod provision;
pub mod runner;
pub mod sample;
pub mod spec;
pub mod template;

pub use crate::functions::{FUNCTIONS, Handler, LocalFunction, Trigger};
pub use crate::provision::{LocalStack, Mode, ProvisionError, ProvisionOptions, Queue, provision};
pub use crate::runner::{PollReport, Runner, RunnerError, RunnerOptions, function_config};
pub use crate::template::{Resolver, StackContext, Template, TemplateError};
