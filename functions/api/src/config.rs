//! The API's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus the ApiFunction's own `Environment`).

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_org::UnknownValue;
use peregrine_org::config::{AutoEnable, Management};

/// Why the environment is not a configuration (reported at cold start).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Value(#[from] UnknownValue),
    #[error("FINDING_RETENTION_DAYS: {0}")]
    Retention(#[from] peregrine_store::BadRetention),
}

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
    /// `ENTITY_SETS_TABLE`: the threat and trusted entity sets.
    pub entity_sets_table: String,
    /// `CONFIG_TABLE`: the organization's configuration (read and updated).
    pub config_table: String,
    /// `COVERAGE_TABLE`: what the coverage sweeper found (read only).
    pub coverage_table: String,
    /// `DEFAULT_AUTO_ENABLE` and `DEFAULT_AGENT_MANAGEMENT`, the sweeper's: what the
    /// organization's configuration is until its row is written.
    pub default_auto_enable: AutoEnable,
    pub default_management: Management,
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
            entity_sets_table: env::required(&get, "ENTITY_SETS_TABLE")?,
            config_table: env::required(&get, "CONFIG_TABLE")?,
            coverage_table: env::required(&get, "COVERAGE_TABLE")?,
            default_auto_enable: env::optional(&get, "DEFAULT_AUTO_ENABLE")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(AutoEnable::All),
            default_management: env::optional(&get, "DEFAULT_AGENT_MANAGEMENT")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(Management::Manual),
        })
    }
}
