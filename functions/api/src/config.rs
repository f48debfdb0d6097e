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
}

impl FromEnv for Config {
    type Error = EnvError;

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, EnvError> {
        Ok(Config {
            findings_table: env::required(&get, "FINDINGS_TABLE")?,
            detector_id: env::required(&get, "DETECTOR_ID")?,
        })
    }
}
