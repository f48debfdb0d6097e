//! `template.yaml` made real in any AWS endpoint (moto here, a real account there):
//!
//! - [`template`]: the template parsed with its CloudFormation short-form tags, intrinsic
//!   functions resolved for a local stack;
//! - [`spec`] and [`stack`]: the template's queues, tables, buses and rules created (or checked)
//!   idempotently, and each function's resolved environment with local names;
//! - [`function_config`]: a function's configuration, read from that environment as its
//!   `main.rs` reads the process environment.
//!
//! Shared by the local runner (`tools/local`) and the tests and benchmarks of every function,
//! which is why it depends on no function.

pub mod spec;
pub mod stack;
pub mod template;

use peregrine_lambda::FromEnv;

pub use crate::spec::{ApiKind, FunctionSpec, FunctionUrlSpec, HttpAuth, HttpRoute};
pub use crate::stack::{LocalStack, Mode, ProvisionError, ProvisionOptions, Queue, provision};
pub use crate::template::{Resolver, StackContext, Template, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("no function in the template runs {0} (Metadata.BuildProperties.Binary)")]
    NoFunction(String),
    #[error("function {function}: {source}")]
    Config {
        function: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The template's function that builds `binary`.
pub fn find_function<'s>(
    stack: &'s LocalStack,
    binary: &str,
) -> Result<&'s FunctionSpec, FunctionError> {
    stack
        .functions
        .values()
        .find(|f| f.binary.as_deref() == Some(binary))
        .ok_or_else(|| FunctionError::NoFunction(binary.to_owned()))
}

/// The configuration a function's handler gets from its template environment.
pub fn function_config<C: FromEnv>(stack: &LocalStack, binary: &str) -> Result<C, FunctionError> {
    let f = find_function(stack, binary)?;
    let env = stack.function_env(&f.logical_id).unwrap_or_default();
    C::from_lookup(|k| env.get(k).cloned()).map_err(|source| FunctionError::Config {
        function: f.logical_id.clone(),
        source: Box::new(source),
    })
}
