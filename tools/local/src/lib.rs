//! Runs Peregrine's functions against any AWS endpoint (moto here, a real account there):
//!
//! - provisioning (`peregrine-provision`, re-exported here): `template.yaml`'s queues, tables,
//!   buses and rules created (or checked) idempotently, and each function's environment;
//! - [`functions`]: the table of functions the runner runs (binary, trigger, handler);
//! - [`runner`]: the triggers (the SQS event-source mapping, the schedule), calling the
//!   functions' library handlers in-process;
//! - [`sample`]: realistic node activity and attacks, encoded as agent messages.
//!
//! See `docs/pipeline.md` ("Running it locally").

pub mod functions;
pub mod runner;
pub mod sample;

pub use peregrine_provision::{
    FunctionError, LocalStack, Mode, ProvisionError, ProvisionOptions, Queue, Resolver,
    StackContext, Template, TemplateError, function_config, provision, spec, stack, template,
};

pub use crate::functions::{FUNCTIONS, Handler, LocalFunction, Trigger};
pub use crate::runner::{PollReport, Runner, RunnerError, RunnerOptions};
