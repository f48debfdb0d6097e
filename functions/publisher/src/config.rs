//! The publisher's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus the PublisherFunction's own `Environment`): the findings
//! table, the bus, the frequency, and the Security Hub product when the export is on.

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_store::{BadProductArn, PublishingFrequency, UnknownFrequency, product_arn_setting};

/// Why the configuration is unusable. Reported once at cold start, never per run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("FINDING_PUBLISHING_FREQUENCY: {0}")]
    Frequency(#[from] UnknownFrequency),
    #[error("SECURITY_HUB_PRODUCT_ARN: {0}")]
    SecurityHub(#[from] BadProductArn),
}

/// The publisher's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub findings_table: String,
    pub event_bus_name: String,
    pub publishing_frequency: PublishingFrequency,
    /// `SECURITY_HUB_PRODUCT_ARN` (the template's `SecurityHubExport`): when set, published
    /// findings are imported into Security Hub under this product (docs/securityhub.md).
    pub security_hub_product_arn: Option<String>,
}

impl FromEnv for Config {
    type Error = ConfigError;

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let frequency = get("FINDING_PUBLISHING_FREQUENCY");
        Ok(Config {
            publishing_frequency: PublishingFrequency::from_setting(frequency.as_deref())?,
            findings_table: env::required(&get, "FINDINGS_TABLE")?,
            event_bus_name: env::required(&get, "EVENT_BUS_NAME")?,
            security_hub_product_arn: product_arn_setting(
                get("SECURITY_HUB_PRODUCT_ARN").as_deref(),
            )?,
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
        let err = Config::from_lookup(|k| {
            Some(
                match k {
                    "FINDINGS_TABLE" => "f",
                    "EVENT_BUS_NAME" => "b",
                    "SECURITY_HUB_PRODUCT_ARN" => "Enabled",
                    _ => return None,
                }
                .to_owned(),
            )
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("SECURITY_HUB_PRODUCT_ARN"),
            "{err}"
        );
        assert_eq!(
            PublishingFrequency::SixHours.duration(),
            Duration::from_secs(21_600)
        );
    }
}
