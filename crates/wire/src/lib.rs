//! Peregrine's agent → cloud wire format.
//!
//! A node agent batches [`Event`]s and sends each batch as one SQS message whose body is
//! `base64(zstd(protobuf Envelope))`; the detector Lambda decodes it with [`decode`]. The
//! schema is `proto/peregrine/wire/v1/wire.proto`; `docs/wire-format.md` explains the framing,
//! the versioning rules, the limits and the normalisation (processes, containers, ancestors
//! and strings are stored once per message and referenced by index).
//!
//! ```
//! use peregrine_wire::{AgentIdentity, BatchEncoder, EncoderConfig, Message, decode};
//! use peregrine_event::Timestamp;
//!
//! let identity = AgentIdentity {
//!     agent_id: "i-0123456789abcdef0".into(),
//!     node_name: "ip-10-0-1-23.ec2.internal".into(),
//!     cluster_name: "prod".into(),
//!     cluster_arn: Some("arn:aws:eks:eu-west-1:111122223333:cluster/prod".parse()?),
//!     agent_version: "0.1.0".into(),
//! };
//! let mut encoder = BatchEncoder::new(identity, EncoderConfig::default())?;
//! // encoder.push(event)? for every event, then, every few seconds:
//! let messages = encoder.flush(Timestamp::from_unix_nanos(1_764_000_000_000_000_000))?;
//! for m in &messages {
//!     assert!(m.body.len() <= EncoderConfig::default().max_body_bytes);
//!     let Message::Batch { header, events } = decode(&m.body)? else { unreachable!() };
//!     assert_eq!(header.sequence, m.sequence);
//!     assert_eq!(events.len(), m.event_count);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Decoding never panics and never trusts the input: the body length, the decompressed size,
//! every table's entry count and the memory the decoded events will take are capped
//! ([`Limits`]), and every index, enum value and byte length is checked. Any failure is a
//! [`WireError`] and means the message is poison (fail it; SQS moves it to the DLQ).

mod decode;
mod encode;
mod error;
mod frame;
mod heartbeat;
mod kinds;
mod limits;
mod scan;

/// The prost-generated schema types (`peregrine.wire.v1`), for tools that want the raw
/// protobuf view. Most users need only [`BatchEncoder`] and [`decode`].
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/peregrine.wire.v1.rs"));
}

pub use peregrine_event::{BlindingKind, BlindingReason, ClusterArn, Event, Timestamp};

pub use crate::decode::{decode, decode_with_limits};
pub use crate::encode::{BatchEncoder, EncodedMessage, EncoderConfig, encode_heartbeat};
pub use crate::error::{Inconsistency, WireError};
pub use crate::heartbeat::{DropCounters, Heartbeat, ProbeState, ProbeStatus, SpoolDepth};
pub use crate::limits::{Limits, SQS_MAX_MESSAGE_BYTES};

/// The schema version this crate writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Default cap on an encoded body: 1,000,000 bytes, leaving room under the 1 MiB SQS limit
/// for message attributes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_000_000;

/// Default zstd compression level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Who is sending: copied into every message header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentIdentity {
    /// Stable id of the agent instance (for example the EC2 instance id).
    pub agent_id: String,
    /// Kubernetes node name.
    pub node_name: String,
    /// EKS cluster name.
    pub cluster_name: String,
    /// The cluster's ARN, when the agent was told it; its name must be `cluster_name`.
    pub cluster_arn: Option<ClusterArn>,
    /// Agent version.
    pub agent_version: String,
}

/// How many entries a batch message holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u32,
    pub processes: u32,
    pub containers: u32,
}

/// A decoded message header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Always [`SCHEMA_VERSION`] after a successful decode.
    pub schema_version: u32,
    pub agent_id: String,
    pub node_name: String,
    pub cluster_name: String,
    /// The cluster's ARN when the agent sent one (checked: it names `cluster_name`).
    pub cluster_arn: Option<ClusterArn>,
    pub agent_version: String,
    /// Batch sequence number; for a heartbeat, the number the agent's next batch will carry.
    pub sequence: u64,
    /// When the message was built (for a heartbeat, its timestamp).
    pub created_at: Timestamp,
    /// Table sizes of a batch (all zero for a heartbeat).
    pub counts: Counts,
}

/// A decoded SQS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A batch of events, in the agent's order.
    Batch { header: Header, events: Vec<Event> },
    /// An agent health report.
    Heartbeat {
        header: Header,
        heartbeat: Box<Heartbeat>,
    },
}

impl Message {
    /// The message header.
    pub fn header(&self) -> &Header {
        match self {
            Message::Batch { header, .. } | Message::Heartbeat { header, .. } => header,
        }
    }
}
