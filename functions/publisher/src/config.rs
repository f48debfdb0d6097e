//! The publisher's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus the PublisherFunction's own `Environment`). It needs only
//! the findings table, the bus and the frequency.

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_store::{PublishingFrequency, UnknownFrequency};

/// Why the configuration is unusable. Reported once at cold start, never per run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("FINDING_PUBLISHING_FREQUENCY: {0}")]
    Frequency(#[from] UnknownFrequency),
}

/// The publisher's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub findings_table: String,
    pub event_bus_name: String,
    pub publishing_frequency: PublishingFrequency,
}

impl FromEnv for Config {
    type Error = ConfigError;

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let frequency = get("FINDING_PUBLISHING_FREQUENCY");
        Ok(Config {
            publishing_frequency: PublishingFrequency::from_setting(frequency.as_deref())?,
            findings_table: env::required(&get, "FINDINGS_TABLE")?,
            event_bus_name: env::required(&get, "EVENT_BUS_NAME")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn missing_and_invalid_values_are_named() {
        let err = Config::from_lookup(|k| {
            Some(
                match k {
                    "FINDINGS_TABLE" => "f",
                    "EVENT_BUS_NAME" => "b",
                    "FINDING_PUBLISHING_FREQUENCY" => "DAILY",
                    _ => return None,
                }
                .to_owned(),
            )
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Frequency(_)), "{err}");
        assert_eq!(
            PublishingFrequency::SixHours.duration(),
            Duration::from_secs(21_600)
        );
    }
}
