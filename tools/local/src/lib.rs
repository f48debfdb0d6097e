//! Runs Peregrine's functions against any AWS endpoint (moto here, a real account there):
//!
//! - provisioning (`peregrine-provision`, re-exported here): `template.yaml`'s queues, tables,
//!   buses and rules created (or checked) idempotently, and each function's environment;
//! - [`functions`]: the table of functions the runner runs (binary, trigger, handler);
//! - [`runner`]: the triggers (the SQS event-source mapping, the schedule, HTTP listeners
//!   standing in for function URLs and HTTP APIs), calling the functions' library handlers
//!   in-process;
//! - [`http`]: the HTTP trigger's requests as Lambda events, answers as responses, routes and
//!   the local IAM check;
//! - [`coverage`]: the coverage table as a terminal shows it (`peregrine-local coverage`);
//!
//! The sample activity `send-sample` sends is `peregrine_testkit::samples`.
//!
//! See `docs/pipeline.md` ("Running it locally").

pub mod coverage;
pub mod functions;
pub mod http;
pub mod runner;
pub use peregrine_provision::{
    FunctionError, LocalStack, Mode, ProvisionError, ProvisionOptions, Queue, Resolver,
    StackContext, Template, TemplateError, function_config, provision, spec, stack, template,
};

pub use crate::functions::{FUNCTIONS, Handler, LocalFunction, Trigger};
pub use crate::http::HttpKind;
pub use crate::runner::{HttpEndpoint, PollReport, Runner, RunnerError, RunnerOptions};
