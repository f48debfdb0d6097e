//! Peregrine's node agent. Each module is one stage of the data path (see docs/architecture.md):
//! probe loading → ring-buffer reader → enrichment (processes, containers, new binaries) → sink.

pub mod agent;
pub mod blinding;
pub mod bounded;
pub mod container;
pub mod decode;
pub mod endpoint;
pub mod enrich;
pub mod eventq;
pub mod exehash;
pub mod findings;
pub mod health;
pub mod loss;
pub mod metrics;
pub mod newbin;
pub mod offsets;
pub mod probes;
pub mod proctable;
pub mod ringbuf;
pub mod ship;
pub mod sink;
pub mod spool;
pub mod standalone;
pub mod starts;
// Escaping for the terminal lives in a crate the CLI shares; the path stays `crate::termsafe`.
pub use peregrine_termsafe as termsafe;
pub mod tick;
