//! What the functions store: a finding with its optimistic-concurrency version and its outbox
//! state, independent of DynamoDB's attribute encoding (see `dynamo.rs` for that), and how often
//! its updates are published.

use std::time::Duration;

use peregrine_criteria::ArchiveRules;
use peregrine_event::Timestamp;
use peregrine_finding::Finding;
use serde::Deserialize;

/// `publishState` while a publish is due, and `securityHubState` while an import into Security
/// Hub is; each attribute is absent otherwise (the `byPublishState` and `bySecurityHubState`
/// indexes are sparse).
pub const PUBLISH_PENDING: &str = "PENDING";

/// A finding as stored in FindingsTable.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFinding {
    pub finding: Finding,
    /// Incremented by every write; each write is conditional on the version it read.
    pub version: u64,
    pub outbox: Outbox,
    /// `expiresAt`, epoch seconds: FindingsTable's TTL attribute. The detector sets it to
    /// `FindingRetentionDays` after each create or update; `None` never expires.
    pub expires_at: Option<i64>,
}

/// The publish state of a finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outbox {
    /// `publishState = PENDING` with `publishDueAt`: a publish is due at this time.
    pub pending_due: Option<Timestamp>,
    pub last_published_at: Option<Timestamp>,
    /// The finding's `count` when it was last published.
    pub last_published_count: Option<u64>,
    /// `securityHubState = PENDING`: the finding was published since it was last imported into
    /// Security Hub (only with the export on; see `docs/securityhub.md`).
    pub security_hub: Option<HubPending>,
    /// When Security Hub last took the finding.
    pub last_imported_at: Option<Timestamp>,
}

/// A Security Hub import that is due: the second outbox, beside the EventBridge one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubPending {
    /// `securityHubDueAt`: due from this time (set back after each failed attempt).
    pub due: Timestamp,
    /// `securityHubAttempts`: failed attempts since the publish that made it due.
    pub attempts: u32,
}

/// One conditional write of a finding inside a chunk's transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingWrite {
    /// The new state; its `version` is `expected_version + 1` (1 for a new finding).
    pub item: StoredFinding,
    /// The version read before merging, or `None` when the finding must not exist yet.
    pub expected_version: Option<u64>,
}

impl FindingWrite {
    /// The write of a finding not stored yet: version 1, its publish due `now`.
    pub fn new_finding(finding: Finding, now: Timestamp) -> FindingWrite {
        FindingWrite {
            item: StoredFinding {
                finding,
                version: 1,
                outbox: Outbox {
                    pending_due: Some(now),
                    ..Outbox::default()
                },
                expires_at: None,
            },
            expected_version: None,
        }
    }

    pub fn is_new(&self) -> bool {
        self.expected_version.is_none()
    }
}

/// A chunk of a batch's findings, written in one transaction together with the chunk's
/// dedupe marker.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkWrite {
    /// `<agentId>#<sequence>#<chunk>`.
    pub dedupe_key: String,
    /// Epoch seconds after which the marker may be forgotten (the table's TTL attribute).
    pub dedupe_expires_at: i64,
    pub writes: Vec<FindingWrite>,
}

/// What became of a chunk's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Written.
    Applied,
    /// The dedupe marker already exists: an earlier delivery wrote this chunk.
    AlreadyApplied,
    /// A finding changed (or appeared) since it was read: re-read and retry.
    Conflict,
}

/// A `FINDING_PUBLISHING_FREQUENCY` that is none of GuardDuty's values.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a publishing frequency; expected FIFTEEN_MINUTES, ONE_HOUR or SIX_HOURS")]
pub struct UnknownFrequency(pub String);

/// How often updates to an existing finding are published (GuardDuty's
/// `FindingPublishingFrequency`). New findings are always published at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PublishingFrequency {
    #[default]
    FifteenMinutes,
    OneHour,
    SixHours,
}

impl PublishingFrequency {
    pub fn parse(s: &str) -> Result<Self, UnknownFrequency> {
        match s {
            "FIFTEEN_MINUTES" => Ok(Self::FifteenMinutes),
            "ONE_HOUR" => Ok(Self::OneHour),
            "SIX_HOURS" => Ok(Self::SixHours),
            other => Err(UnknownFrequency(other.to_owned())),
        }
    }

    /// A setting that may be absent: unset or empty is GuardDuty's default, FIFTEEN_MINUTES.
    pub fn from_setting(value: Option<&str>) -> Result<Self, UnknownFrequency> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Self::parse(v),
            None => Ok(Self::default()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FifteenMinutes => "FIFTEEN_MINUTES",
            Self::OneHour => "ONE_HOUR",
            Self::SixHours => "SIX_HOURS",
        }
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::FifteenMinutes => 15 * 60,
            Self::OneHour => 60 * 60,
            Self::SixHours => 6 * 60 * 60,
        })
    }
}

/// Applies the suppression filters and the retention to a planned write: the finding expires
/// `retention` after `now` (FindingsTable's TTL), and when an `ARCHIVE` filter matches it (as
/// merged), it is stored archived with nothing due: no EventBridge publish, no Security Hub
/// import, now or later. Returns the name of the filter that archived it.
pub fn settle_write<'r>(
    write: &mut FindingWrite,
    rules: &'r ArchiveRules,
    now: Timestamp,
    retention: std::time::Duration,
) -> Result<Option<&'r str>, serde_json::Error> {
    write.item.expires_at = Some(epoch_seconds(add(now, retention)));
    if rules.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_value(&write.item.finding)?;
    let Some(name) = rules.first_match(&json) else {
        return Ok(None);
    };
    write.item.finding.service.archived = true;
    write.item.outbox.pending_due = None;
    write.item.outbox.security_hub = None;
    Ok(Some(name))
}

/// A `FINDING_RETENTION_DAYS` that is not a number of days from 1 to 3650.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a number of days from 1 to 3650")]
pub struct BadRetention(pub String);

/// GuardDuty keeps findings 90 days: the template's `FindingRetentionDays` default.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;

/// The finding retention from a setting that may be absent (unset or empty: 90 days).
pub fn retention_setting(value: Option<&str>) -> Result<Duration, BadRetention> {
    let days = match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => DEFAULT_RETENTION_DAYS,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| BadRetention(v.to_owned()))?,
    };
    Ok(Duration::from_secs(days * 24 * 60 * 60))
}

/// ISO-8601 in UTC with milliseconds, the form every time attribute uses (so they sort as
/// strings).
pub fn iso(t: Timestamp) -> String {
    t.to_rfc3339_millis()
}

/// `YYYY-MM-DD` of a time, for the `byUpdatedDay` index.
pub fn day(t: Timestamp) -> String {
    let s = t.to_rfc3339_millis();
    s.get(..10).map(str::to_owned).unwrap_or(s)
}

/// Parses an RFC 3339 time as written by [`iso`].
pub fn parse_iso(s: &str) -> Option<Timestamp> {
    use serde::de::value::{Error, StrDeserializer};
    Timestamp::deserialize(StrDeserializer::<Error>::new(s)).ok()
}

/// `t + d`, saturating.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    Timestamp::from_unix_nanos(t.unix_nanos().saturating_add(ns))
}

/// Whole seconds since the epoch.
pub fn epoch_seconds(t: Timestamp) -> i64 {
    t.unix_nanos().div_euclid(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_sort_as_text() {
        let t = Timestamp::from_unix_nanos(1_764_000_000_123_456_789);
        assert_eq!(iso(t), "2025-11-24T16:00:00.123Z");
        assert_eq!(day(t), "2025-11-24");
        assert_eq!(
            parse_iso(&iso(t)),
            Some(Timestamp::from_unix_nanos(1_764_000_000_123_000_000))
        );
        assert_eq!(parse_iso("yesterday"), None);
        let later = add(t, Duration::from_secs(900));
        assert!(iso(later) > iso(t));
        assert_eq!(epoch_seconds(later) - epoch_seconds(t), 900);
    }
}
