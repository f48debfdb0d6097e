//! The API's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus the ApiFunction's own `Environment`).

use peregrine_lambda::env::{self, EnvError, FromEnv};

/// The API's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `FINDINGS_TABLE`.
    pub findings_table: String,
    /// `DETECTOR_ID`: the stack name, as the detector puts it in every finding; the only
    /// `{detectorId}` the API answers for.
    pub detector_id: String,
    /// `FILTERS_TABLE`: the suppression filters.
    pub filters_table: String,
    /// `FINDING_RETENTION_DAYS`: sample findings expire this long after they are created, as
    /// the detector's findings do.
    pub finding_retention: std::time::Duration,
    /// `AWS_REGION` (the Lambda runtime sets it): the region of sample findings.
    pub region: String,
}

/// Why the configuration is unusable (reported at cold start).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("FINDING_RETENTION_DAYS: {0}")]
    Retention(#[from] peregrine_store::BadRetention),
}

impl FromEnv for Config {
    type Error = ConfigError;

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Ok(Config {
            findings_table: env::required(&get, "FINDINGS_TABLE")?,
            detector_id: env::required(&get, "DETECTOR_ID")?,
            filters_table: env::required(&get, "FILTERS_TABLE")?,
            finding_retention: peregrine_store::retention_setting(
                get("FINDING_RETENTION_DAYS").as_deref(),
            )?,
            region: env::optional(&get, "AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
        })
    }
}
