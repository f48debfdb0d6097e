//! Peregrine's test fixtures, in one place: every crate's tests and benchmarks build their
//! events, batches, Lambda inputs and local AWS from here, and none keeps its own copy.
//!
//! - [`builders`]: processes, ancestors, containers, events, agent identities, probes, the
//!   finding environment;
//! - [`coverage`]: events covering every kind and optional field, with odd values;
//! - [`samples`]: realistic, deterministic node activity and attacks, encoded as agent
//!   messages (also what `peregrine-local send-sample` sends);
//! - [`strategies`] (feature `proptest`): proptest strategies for the event model;
//! - [`wire`]: hand-built wire messages and the way back from a body;
//! - [`lambda`]: SQS events and (feature `lambda`) Lambda contexts as Lambda builds them;
//! - [`moto`] (feature `moto`): a local AWS (moto in server mode) per test.
//!
//! Never a dependency of product code, except `peregrine-local`'s sample command.

// Test-only code: a fixture that cannot be built is a broken test, and panicking with the
// reason is the most useful thing it can do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod builders;
pub mod coverage;
#[cfg(feature = "kube")]
pub mod kube;
pub mod lambda;
#[cfg(feature = "moto")]
pub mod moto;
pub mod rng;
pub mod samples;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod wire;
