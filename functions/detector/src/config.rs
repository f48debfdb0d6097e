//! The detector's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus the DetectorFunction's own `Environment`).

use std::time::Duration;

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_store::{
    BadProductArn, BadRetention, PublishingFrequency, UnknownFrequency, product_arn_setting,
    retention_setting,
};

use crate::sender::{DEFAULT_SKEW, SenderMap, SenderMapError, SkewWindow};

/// Why the configuration is unusable. Reported once at cold start, never per message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("FINDING_PUBLISHING_FREQUENCY: {0}")]
    Frequency(#[from] UnknownFrequency),
    #[error(transparent)]
    Senders(#[from] SenderMapError),
    #[error("SECURITY_HUB_PRODUCT_ARN: {0}")]
    SecurityHub(#[from] BadProductArn),
    #[error("FINDING_RETENTION_DAYS: {0}")]
    Retention(#[from] BadRetention),
}

/// The detector's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub findings_table: String,
    pub dedupe_table: String,
    pub heartbeats_table: String,
    pub event_bus_name: String,
    pub publishing_frequency: PublishingFrequency,
    /// How long a processed batch key is remembered (`DEDUPE_TTL_SECONDS`).
    pub dedupe_ttl: Duration,
    /// `DETECTOR_ID`: the stack name; part of every finding's ARN.
    pub detector_id: String,
    /// `AWS_REGION`, used when the invocation's ARN does not name one.
    pub region: Option<String>,
    /// `DEADLINE_MARGIN_SECONDS`: no SQS record is started when less than this is left before
    /// the invocation's deadline; the records not started are returned as failures and
    /// redelivered.
    pub deadline_margin: Duration,
    /// `AGENT_SENDERS` (`ROLEID=cluster,...`): the cluster each agent role may send for. `None`
    /// (unset or empty): any sender may claim any cluster, as before; warned at cold start.
    pub agent_senders: Option<SenderMap>,
    /// `CLOCK_SKEW_FUTURE_SECONDS` / `CLOCK_SKEW_PAST_SECONDS`: agent times outside this
    /// window around the receive time are clamped to it and flagged.
    pub skew: SkewWindow,
    /// `SECURITY_HUB_PRODUCT_ARN` (the template's `SecurityHubExport`): when set, each publish
    /// the detector records also makes an import into Security Hub due, which the publisher
    /// carries out. The detector itself never calls Security Hub.
    pub security_hub_product_arn: Option<String>,
    /// `FILTERS_TABLE`: the suppression filters the detector applies to each finding it
    /// creates or updates. Unset: no filters (a stack without FiltersTable).
    pub filters_table: Option<String>,
    /// `FINDING_RETENTION_DAYS` (the template's `FindingRetentionDays`): a finding expires
    /// (FindingsTable's TTL) this long after it was last created or updated.
    pub finding_retention: Duration,
}

/// GuardDuty keeps findings 90 days.
pub const DEFAULT_FINDING_RETENTION: Duration =
    Duration::from_secs(peregrine_store::DEFAULT_RETENTION_DAYS * 24 * 60 * 60);

/// Heartbeat rows expire a week after the agent last reported.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The template's `DedupeTtlSeconds` default (14 days, the queue's retention).
pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(1_209_600);
/// The default `DEADLINE_MARGIN_SECONDS`: 10 s of the template's 60 s timeout. One message's
/// worst case is a few store round trips plus up to 6 attempts with backoff of at most 2 s
/// each, then PutEvents; starting one with less left risks Lambda killing the invocation,
/// which fails the whole batch.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(10);

impl FromEnv for Config {
    type Error = ConfigError;

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let frequency = get("FINDING_PUBLISHING_FREQUENCY");
        Ok(Config {
            publishing_frequency: PublishingFrequency::from_setting(frequency.as_deref())?,
            findings_table: env::required(&get, "FINDINGS_TABLE")?,
            event_bus_name: env::required(&get, "EVENT_BUS_NAME")?,
            dedupe_table: env::required(&get, "DEDUPE_TABLE")?,
            heartbeats_table: env::required(&get, "HEARTBEATS_TABLE")?,
            detector_id: env::required(&get, "DETECTOR_ID")?,
            dedupe_ttl: env::seconds(&get, "DEDUPE_TTL_SECONDS", DEFAULT_DEDUPE_TTL)?,
            region: env::optional(&get, "AWS_REGION"),
            deadline_margin: env::seconds(
                &get,
                "DEADLINE_MARGIN_SECONDS",
                DEFAULT_DEADLINE_MARGIN,
            )?,
            agent_senders: SenderMap::parse(&get("AGENT_SENDERS").unwrap_or_default())?,
            skew: SkewWindow {
                future: env::seconds(&get, "CLOCK_SKEW_FUTURE_SECONDS", DEFAULT_SKEW.future)?,
                past: env::seconds(&get, "CLOCK_SKEW_PAST_SECONDS", DEFAULT_SKEW.past)?,
            },
            security_hub_product_arn: product_arn_setting(
                get("SECURITY_HUB_PRODUCT_ARN").as_deref(),
            )?,
            filters_table: env::optional(&get, "FILTERS_TABLE"),
            finding_retention: retention_setting(get("FINDING_RETENTION_DAYS").as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn detector_config_reads_the_template_variables() {
        let c = Config::from_lookup(env(&[
            ("FINDINGS_TABLE", "f"),
            ("DEDUPE_TABLE", "d"),
            ("HEARTBEATS_TABLE", "h"),
            ("EVENT_BUS_NAME", "b"),
            ("FINDING_PUBLISHING_FREQUENCY", "ONE_HOUR"),
            ("DEDUPE_TTL_SECONDS", "1209600"),
            ("DETECTOR_ID", "peregrine"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(c.publishing_frequency, PublishingFrequency::OneHour);
        assert_eq!(c.dedupe_ttl, Duration::from_secs(1_209_600));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.detector_id, "peregrine");
        assert_eq!(c.deadline_margin, DEFAULT_DEADLINE_MARGIN);
        assert_eq!(c.agent_senders, None);
        assert_eq!(c.skew, DEFAULT_SKEW);
        assert_eq!(c.security_hub_product_arn, None);
    }

    #[test]
    fn senders_and_skew_are_read() {
        let c = Config::from_lookup(env(&[
            ("FINDINGS_TABLE", "f"),
            ("DEDUPE_TABLE", "d"),
            ("HEARTBEATS_TABLE", "h"),
            ("EVENT_BUS_NAME", "b"),
            ("DETECTOR_ID", "peregrine"),
            ("AGENT_SENDERS", "AROAONE=prod"),
            ("CLOCK_SKEW_FUTURE_SECONDS", "60"),
        ]))
        .unwrap();
        assert_eq!(
            c.agent_senders
                .as_ref()
                .and_then(|m| m.cluster_of("AROAONE:s"))
                .map(crate::Bound::cluster_name),
            Some("prod")
        );
        assert_eq!(c.skew.future, Duration::from_secs(60));
        assert_eq!(c.skew.past, DEFAULT_SKEW.past);
        let err = Config::from_lookup(env(&[
            ("FINDINGS_TABLE", "f"),
            ("DEDUPE_TABLE", "d"),
            ("HEARTBEATS_TABLE", "h"),
            ("EVENT_BUS_NAME", "b"),
            ("DETECTOR_ID", "peregrine"),
            ("AGENT_SENDERS", "prod"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("AGENT_SENDERS"), "{err}");
    }

    #[test]
    fn missing_and_invalid_values_are_named() {
        let err = Config::from_lookup(env(&[("FINDINGS_TABLE", "f"), ("EVENT_BUS_NAME", "b")]))
            .unwrap_err();
        assert!(err.to_string().contains("DEDUPE_TABLE"), "{err}");
    }
}
