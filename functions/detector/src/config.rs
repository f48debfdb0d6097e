//! The functions' configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus each function's own `Environment`).

use std::time::Duration;

/// Why the configuration is unusable. Reported once at cold start, never per message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set (template.yaml sets it for the function)")]
    Missing(&'static str),
    #[error(
        "FINDING_PUBLISHING_FREQUENCY is {0:?}; expected FIFTEEN_MINUTES, ONE_HOUR or SIX_HOURS"
    )]
    Frequency(String),
    #[error("{name} is {value:?}; expected a whole number of seconds")]
    Number { name: &'static str, value: String },
}

/// How often updates to an existing finding are published (GuardDuty's
/// `FindingPublishingFrequency`). New findings are always published at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishingFrequency {
    FifteenMinutes,
    OneHour,
    SixHours,
}

impl PublishingFrequency {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "FIFTEEN_MINUTES" => Ok(Self::FifteenMinutes),
            "ONE_HOUR" => Ok(Self::OneHour),
            "SIX_HOURS" => Ok(Self::SixHours),
            other => Err(ConfigError::Frequency(other.to_owned())),
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

/// The detector's and publisher's settings. The publisher needs only the findings table, the
/// bus and the frequency; the detector needs all of it.
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
}

/// Heartbeat rows expire a week after the agent last reported.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The template's `DedupeTtlSeconds` default (14 days, the queue's retention).
pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(1_209_600);

impl Config {
    /// The detector's configuration from the process environment.
    pub fn detector_from_env() -> Result<Config, ConfigError> {
        Self::detector_from(|k| std::env::var(k).ok())
    }

    /// The publisher's configuration from the process environment.
    pub fn publisher_from_env() -> Result<Config, ConfigError> {
        Self::publisher_from(|k| std::env::var(k).ok())
    }

    /// The detector's configuration from any lookup (the local runner passes the environment
    /// it resolved from the template).
    pub fn detector_from(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Self::publisher_from(&get)?;
        c.dedupe_table = required(&get, "DEDUPE_TABLE")?;
        c.heartbeats_table = required(&get, "HEARTBEATS_TABLE")?;
        c.detector_id = required(&get, "DETECTOR_ID")?;
        c.dedupe_ttl = match get("DEDUPE_TTL_SECONDS").filter(|v| !v.is_empty()) {
            None => DEFAULT_DEDUPE_TTL,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| ConfigError::Number {
                    name: "DEDUPE_TTL_SECONDS",
                    value: v,
                })?,
        };
        Ok(c)
    }

    /// The publisher's configuration: the findings table, the bus and the frequency.
    pub fn publisher_from(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let frequency = match get("FINDING_PUBLISHING_FREQUENCY").filter(|v| !v.is_empty()) {
            Some(v) => PublishingFrequency::parse(v.trim())?,
            None => PublishingFrequency::FifteenMinutes,
        };
        Ok(Config {
            findings_table: required(&get, "FINDINGS_TABLE")?,
            dedupe_table: String::new(),
            heartbeats_table: String::new(),
            event_bus_name: required(&get, "EVENT_BUS_NAME")?,
            publishing_frequency: frequency,
            dedupe_ttl: DEFAULT_DEDUPE_TTL,
            detector_id: get("DETECTOR_ID").unwrap_or_default(),
            region: get("AWS_REGION").filter(|r| !r.is_empty()),
        })
    }
}

fn required(
    get: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    get(name)
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
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
        let c = Config::detector_from(env(&[
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
    }

    #[test]
    fn missing_and_invalid_values_are_named() {
        let err = Config::detector_from(env(&[("FINDINGS_TABLE", "f"), ("EVENT_BUS_NAME", "b")]))
            .unwrap_err();
        assert!(err.to_string().contains("DEDUPE_TABLE"), "{err}");
        let err = Config::publisher_from(env(&[
            ("FINDINGS_TABLE", "f"),
            ("EVENT_BUS_NAME", "b"),
            ("FINDING_PUBLISHING_FREQUENCY", "DAILY"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::Frequency(_)), "{err}");
        assert_eq!(
            PublishingFrequency::SixHours.duration(),
            Duration::from_secs(21_600)
        );
    }
}
