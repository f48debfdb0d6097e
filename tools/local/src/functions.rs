//! The functions the local runner runs, as one table: each row names a binary (the template's
//! `Metadata.BuildProperties.Binary`), the trigger that invokes it, and how its handler is built
//! from the environment the template gives it. Adding a function is one row in [`FUNCTIONS`].
//!
//! Handlers are invoked as Lambda invokes them: the event and the response are JSON, and an
//! invocation error is a [`Diagnostic`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_config::SdkConfig;
use lambda_runtime::{Diagnostic, LambdaEvent};
use peregrine_lambda::FromEnv;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The binary of the detector, which the events queue triggers.
pub const DETECTOR_BINARY: &str = peregrine_detector::BINARY;
/// The binary of the publisher, which runs on a schedule.
pub const PUBLISHER_BINARY: &str = peregrine_publisher::BINARY;
/// The binary of the coverage sweeper, which runs on a schedule.
pub const COVERAGE_BINARY: &str = peregrine_coverage::BINARY;
/// The binary of the findings API, behind its function URL.
pub const API_BINARY: &str = peregrine_api::BINARY;

/// What invokes a function: the runner does the trigger's job, since nothing else does locally
/// (moto neither maps event sources nor fires schedules, and serves no function URLs or APIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An SQS event-source mapping (template `Events: {Type: SQS}`): batches from its queue.
    Sqs,
    /// A schedule (template `Events: {Type: Schedule}`): the scheduled event, periodically.
    Schedule,
    /// HTTP (template `FunctionUrlConfig`, `Events: {Type: HttpApi}`): a local listener per
    /// endpoint turns each request into the event Lambda delivers (see [`crate::http`]).
    Http,
}

/// Why a function's handler could not be built (its configuration, its clients, its rules).
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The environment the template gives a function, as a lookup.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Builds a function's handler once, as its `main.rs` does at cold start.
pub type Start = fn(&SdkConfig, Env<'_>) -> Result<Handler, StartError>;

/// One row of the table.
#[derive(Clone, Copy)]
pub struct LocalFunction {
    pub binary: &'static str,
    pub trigger: Trigger,
    pub start: Start,
}

impl std::fmt::Debug for LocalFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFunction")
            .field("binary", &self.binary)
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

/// Every function the runner runs.
pub const FUNCTIONS: &[LocalFunction] = &[
    LocalFunction {
        binary: DETECTOR_BINARY,
        trigger: Trigger::Sqs,
        start: |sdk, env| {
            let config = peregrine_detector::Config::from_lookup(env)?;
            let deps = peregrine_detector::AwsDeps::from_sdk(sdk, config)?;
            Ok(Handler::new(deps, |d, event| async move {
                peregrine_detector::handle(&d, event).await
            }))
        },
    },
    LocalFunction {
        binary: PUBLISHER_BINARY,
        trigger: Trigger::Schedule,
        start: |sdk, env| {
            let config = peregrine_publisher::Config::from_lookup(env)?;
            let deps = peregrine_publisher::AwsPublisherDeps::from_sdk(sdk, config);
            Ok(Handler::new(deps, |d, event| async move {
                peregrine_publisher::handle_schedule(&d, event).await
            }))
        },
    },
    LocalFunction {
        binary: COVERAGE_BINARY,
        trigger: Trigger::Schedule,
        start: |sdk, env| {
            let config = peregrine_coverage::Config::from_lookup(env)?;
            let deps = peregrine_coverage::CoverageDeps::from_sdk(sdk, config);
            Ok(Handler::new(deps, |d, event| async move {
                peregrine_coverage::handle_schedule(&d, event).await
            }))
        },
    },
    LocalFunction {
        binary: API_BINARY,
        trigger: Trigger::Http,
        start: |sdk, env| {
            let config = peregrine_api::Config::from_lookup(env)?;
            let deps = peregrine_api::ApiDeps::from_sdk(sdk, config);
            Ok(Handler::new(deps, |d, event| async move {
                peregrine_api::handle(&d, event).await
            }))
        },
    },
];

type Invocation = Pin<Box<dyn Future<Output = Result<Value, Diagnostic>> + Send>>;

/// A function's handler with its dependencies, invoked with JSON as Lambda invokes it.
pub struct Handler(Box<dyn Fn(LambdaEvent<Value>) -> Invocation + Send + Sync>);

impl Handler {
    /// `handler` is the library's `handle(&deps, event)`; `deps` are built once and shared by
    /// every invocation.
    pub fn new<D, E, R, Err, F, Fut>(deps: D, handler: F) -> Handler
    where
        D: Send + Sync + 'static,
        E: DeserializeOwned,
        R: Serialize,
        Err: Into<Diagnostic>,
        F: Fn(Arc<D>, LambdaEvent<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Err>> + Send + 'static,
    {
        let deps = Arc::new(deps);
        Handler(Box::new(move |event: LambdaEvent<Value>| {
            let LambdaEvent { payload, context } = event;
            let call = serde_json::from_value::<E>(payload)
                .map(|payload| handler(Arc::clone(&deps), LambdaEvent::new(payload, context)));
            Box::pin(async move {
                let call = call.map_err(|e| Diagnostic {
                    error_type: "Runtime.UnmarshalError".into(),
                    error_message: format!("the event does not fit the handler: {e}"),
                })?;
                let response = call.await.map_err(Into::into)?;
                serde_json::to_value(response).map_err(|e| Diagnostic {
                    error_type: "Runtime.SerializationError".into(),
                    error_message: e.to_string(),
                })
            })
        }))
    }

    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        (self.0)(event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_has_one_row() {
        let mut binaries: Vec<&str> = FUNCTIONS.iter().map(|f| f.binary).collect();
        binaries.sort_unstable();
        binaries.dedup();
        assert_eq!(binaries.len(), FUNCTIONS.len());
    }

    #[tokio::test]
    async fn handlers_take_and_give_json() {
        #[derive(Debug, thiserror::Error)]
        #[error("odd: {0}")]
        struct Odd(u64);
        impl From<Odd> for Diagnostic {
            fn from(e: Odd) -> Diagnostic {
                Diagnostic {
                    error_type: "Odd".into(),
                    error_message: e.to_string(),
                }
            }
        }
        let h = Handler::new(2u64, |factor, event: LambdaEvent<u64>| async move {
            match event.payload % 2 {
                0 => Ok(vec![event.payload * *factor]),
                _ => Err(Odd(event.payload)),
            }
        });
        let call = |v: Value| h.invoke(LambdaEvent::new(v, Default::default()));
        assert_eq!(
            call(serde_json::json!(4)).await.unwrap(),
            serde_json::json!([8])
        );
        let err = call(serde_json::json!(3)).await.unwrap_err();
        assert_eq!(
            (err.error_type.as_str(), err.error_message.as_str()),
            ("Odd", "odd: 3")
        );
        let err = call(serde_json::json!("four")).await.unwrap_err();
        assert_eq!(err.error_type, "Runtime.UnmarshalError");
    }
}
