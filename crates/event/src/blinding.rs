//! Why an agent may be blind: the reasons it reports in its heartbeats (and standalone mode
//! turns into a finding) when its own state says it cannot see what happens on its node.
//!
//! A reason is a `code` and a short human `detail` with the figures. The code is one of
//! [`BlindingKind`]'s; a newer agent may send a code this build does not know, which is kept
//! as data (reported, never interpreted). Both strings come from the node, so a compromised
//! node chooses them: they are bounded ([`MAX_BLINDING_REASONS`], [`MAX_BLINDING_CODE_BYTES`],
//! [`MAX_BLINDING_DETAIL_BYTES`]), the wire format refuses more, and they are only ever
//! escaped on output.

use serde::{Deserialize, Serialize};

/// Most reasons in one report (the agent sends at most one per [`BlindingKind`]).
pub const MAX_BLINDING_REASONS: usize = 8;
/// Longest reason code, in bytes.
pub const MAX_BLINDING_CODE_BYTES: usize = 64;
/// Longest reason detail, in bytes.
pub const MAX_BLINDING_DETAIL_BYTES: usize = 512;

/// What blinded the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlindingKind {
    /// Events were lost (kernel ring buffer or scratch area, or the agent's own queue) in
    /// each of several consecutive ticks.
    SustainedDrops,
    /// Probes failed to attach when the agent started.
    ProbesFailed,
    /// Probes that had attached were found detached later.
    ProbesDetached,
    /// The agent started again and again within a short window.
    RestartLoop,
}

impl BlindingKind {
    pub const ALL: [BlindingKind; 4] = [
        BlindingKind::SustainedDrops,
        BlindingKind::ProbesFailed,
        BlindingKind::ProbesDetached,
        BlindingKind::RestartLoop,
    ];

    /// The code on the wire, in metrics and in findings.
    pub fn code(self) -> &'static str {
        match self {
            BlindingKind::SustainedDrops => "sustained_drops",
            BlindingKind::ProbesFailed => "probes_failed",
            BlindingKind::ProbesDetached => "probes_detached",
            BlindingKind::RestartLoop => "restart_loop",
        }
    }

    pub fn from_code(code: &str) -> Option<BlindingKind> {
        BlindingKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One reason, as reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlindingReason {
    /// A [`BlindingKind::code`], or one a newer agent knows.
    pub code: String,
    /// What the agent saw, with the figures, for example `kernel 1200, queue 0 events lost in
    /// each of the last 3 ticks`.
    pub detail: String,
}

impl BlindingReason {
    /// A reason of `kind`, its detail cut to [`MAX_BLINDING_DETAIL_BYTES`] on a character
    /// boundary.
    pub fn new(kind: BlindingKind, detail: impl Into<String>) -> BlindingReason {
        let mut detail = detail.into();
        if detail.len() > MAX_BLINDING_DETAIL_BYTES {
            let mut end = MAX_BLINDING_DETAIL_BYTES - '…'.len_utf8();
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
            detail.push('…');
        }
        BlindingReason {
            code: kind.code().to_owned(),
            detail,
        }
    }

    /// The kind, when this build knows the code.
    pub fn kind(&self) -> Option<BlindingKind> {
        BlindingKind::from_code(&self.code)
    }

    /// Whether the reason is within the byte bounds.
    pub fn within_bounds(&self) -> bool {
        self.code.len() <= MAX_BLINDING_CODE_BYTES && self.detail.len() <= MAX_BLINDING_DETAIL_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_details_are_bounded() {
        for k in BlindingKind::ALL {
            assert_eq!(BlindingKind::from_code(k.code()), Some(k));
            assert!(k.code().len() <= MAX_BLINDING_CODE_BYTES);
        }
        assert_eq!(BlindingKind::from_code("unknown"), None);
        let r = BlindingReason::new(BlindingKind::ProbesFailed, "é".repeat(1000));
        assert!(r.within_bounds(), "{}", r.detail.len());
        assert!(r.detail.ends_with('…'));
        assert_eq!(r.kind(), Some(BlindingKind::ProbesFailed));
        let short = BlindingReason::new(BlindingKind::RestartLoop, "3 starts");
        assert_eq!(short.detail, "3 starts");
    }
}
