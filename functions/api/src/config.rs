//! The API's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus the ApiFunction's own `Environment`).

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_org::UnknownValue;
use peregrine_org::config::{AutoEnable, Management};

/// Why the environment is not a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Value(#[from] UnknownValue),
}

/// The API's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `FINDINGS_TABLE`.
    pub findings_table: String,
    /// `DETECTOR_ID`: the stack name, as the detector puts it in every finding; the only
    /// `{detectorId}` the API answers for.
    pub detector_id: String,
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
