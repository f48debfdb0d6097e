//! Typed errors. Every decoding failure means "this message is poison": the Lambda fails it,
//! SQS redelivers it up to `maxReceiveCount` times and then moves it to the DLQ.

/// Everything that can go wrong encoding or decoding a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The body is larger than the decoder accepts (SQS itself caps bodies at 1 MiB).
    #[error("message body is {found} bytes, over the {limit}-byte limit")]
    BodyTooLarge { found: usize, limit: usize },

    /// The body is not standard, padded base64.
    #[error("message body is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),

    /// The base64 payload is not a valid zstd stream.
    #[error("zstd decompression failed: {0}")]
    Decompress(std::io::Error),

    /// The payload inflates past the cap: a corrupt message or a decompression bomb.
    #[error(
        "decompressed payload exceeds the {limit}-byte cap (corrupt message or decompression bomb)"
    )]
    DecompressedTooLarge { limit: usize },

    /// zstd refused to compress (only on allocation failure or an invalid parameter).
    #[error("zstd compression failed: {0}")]
    Compress(std::io::Error),

    /// The payload is not a valid protobuf `Envelope`.
    #[error("protobuf decode failed: {0}")]
    Protobuf(String),

    /// The message was written with a schema this decoder does not know. Do not guess: fail the
    /// message so that it lands in the DLQ, upgrade the decoder, then redrive.
    #[error(
        "schema version {found} is not supported (this decoder supports version {supported}); \
         upgrade the decoder and redrive the message from the DLQ"
    )]
    UnsupportedVersion { found: u32, supported: u32 },

    /// The envelope has no header.
    #[error("envelope has no header")]
    MissingHeader,

    /// The envelope has neither a batch nor a heartbeat.
    #[error("envelope has no body (neither an event batch nor a heartbeat)")]
    MissingBody,

    /// The protobuf is well formed but its content is not a valid batch or heartbeat.
    #[error("inconsistent message: {0}")]
    Inconsistent(#[from] Inconsistency),

    /// A count or size is over a configured [`Limits`](crate::Limits) value.
    #[error("{what} is {found}, over the limit of {limit}")]
    LimitExceeded {
        what: &'static str,
        found: u64,
        limit: u64,
    },

    /// One event does not fit in a message even on its own. It is not queued; the caller
    /// should count it as lost (it is reported, never silently dropped).
    #[error(
        "event #{index} ({kind}, pid {pid}) cannot fit in a message on its own ({reason}); it was not encoded"
    )]
    EventTooLarge {
        /// Position of the event in the pushed/flushed/encoded sequence (0 for `push`).
        index: usize,
        kind: &'static str,
        pid: u32,
        reason: String,
    },

    /// The encoder configuration is unusable.
    #[error("invalid encoder configuration: {0}")]
    InvalidConfig(String),
}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        WireError::Protobuf(e.to_string())
    }
}

/// Why a well-formed protobuf is not a valid Peregrine message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// An index points past the end of its table.
    #[error("{field}: index {index} is out of range (the {table} table has {len} entries)")]
    IndexOutOfRange {
        field: &'static str,
        table: &'static str,
        index: u64,
        len: usize,
    },

    /// A header count disagrees with the body.
    #[error("header says {header} {what}, the body has {actual}")]
    CountMismatch {
        what: &'static str,
        header: u64,
        actual: usize,
    },

    /// The event kind number is not a known `Kind`.
    #[error("unknown event kind number {0:#06x}")]
    InvalidKind(u32),

    /// An event has no kind-specific part.
    #[error("an event has no details")]
    MissingDetail,

    /// An event's details are not the ones its kind carries (the kind table's `detail`).
    #[error("a {kind} event carries {detail} details")]
    DetailMismatch {
        kind: &'static str,
        detail: &'static str,
    },

    /// An enum field holds a value this schema version does not define (or the invalid 0).
    #[error("{field}: invalid enum value {value}")]
    InvalidEnum { field: &'static str, value: i32 },

    /// A bytes field has the wrong length (UUID, SHA-256 digest, IP address).
    #[error("{field}: {len} bytes, expected {expected}")]
    InvalidLength {
        field: &'static str,
        len: usize,
        expected: &'static str,
    },

    /// The header's cluster ARN is not an EKS cluster ARN, or names another cluster than the
    /// header's `cluster_name`.
    #[error("header cluster ARN is invalid or does not name the header's cluster")]
    ClusterArn,

    /// A number is outside the range of its Rust type.
    #[error("{field}: value {value} is out of range")]
    OutOfRange { field: &'static str, value: u64 },
}
