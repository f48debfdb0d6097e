//! Bounds that keep decoding attacker-reachable bytes cheap. The encoder honours the same
//! values, so it never produces a message that a decoder with the same limits rejects.

/// The largest SQS message, body and attributes included: 1 MiB.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Resource limits for one message. [`Limits::default`] is what [`crate::decode`] uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest body the decoder reads (base64 text, bytes). Default: 1 MiB, the SQS maximum.
    pub max_body_bytes: usize,
    /// Cap on the decompressed protobuf (bytes). Default 16 MiB: a zstd bomb stops there.
    pub max_decompressed_bytes: usize,
    /// Most events in one message. Default 100,000.
    pub max_events: usize,
    /// Most entries in each of the process, container and ancestor tables. Default 200,000.
    pub max_table_entries: usize,
    /// Most entries in the string table. Default 1,000,000.
    pub max_strings: usize,
    /// Most probe entries in a heartbeat. Default 4,096.
    pub max_probes: usize,
    /// Most blinding reasons in a heartbeat. Default 8
    /// ([`peregrine_event::MAX_BLINDING_REASONS`]).
    pub max_blinding_reasons: usize,
    /// Cap on the estimated memory of the decoded events (bytes): every event owns a copy of
    /// its process, lineage and container, so a small message that references one huge
    /// process from many events would otherwise inflate without bound. Default 256 MiB.
    pub max_decoded_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: SQS_MAX_MESSAGE_BYTES,
            max_decompressed_bytes: 16 << 20,
            max_events: 100_000,
            max_table_entries: 200_000,
            max_strings: 1_000_000,
            max_probes: 4_096,
            max_blinding_reasons: peregrine_event::MAX_BLINDING_REASONS,
            max_decoded_bytes: 256 << 20,
        }
    }
}

impl Limits {
    pub(crate) fn check(
        what: &'static str,
        found: usize,
        limit: usize,
    ) -> Result<(), crate::WireError> {
        if found > limit {
            Err(crate::WireError::LimitExceeded {
                what,
                found: found as u64,
                limit: limit as u64,
            })
        } else {
            Ok(())
        }
    }
}
