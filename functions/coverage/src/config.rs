//! The sweeper's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus CoverageFunction's own `Environment`).

use std::time::Duration;

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_org::UnknownValue;
use peregrine_org::config::{AutoEnable, Management};

/// Why the configuration is unusable. Reported once at cold start, never per sweep.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Value(#[from] UnknownValue),
    #[error("MINIMUM_AGENT_VERSION {0:?} is not a version (MAJOR.MINOR.PATCH)")]
    Version(String),
    #[error("ACCOUNT_CONCURRENCY {0:?}: expected a whole number from 1 to 64")]
    Concurrency(String),
}

/// The sweeper's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub config_table: String,
    pub coverage_table: String,
    pub heartbeats_table: String,
    pub event_bus_name: String,
    /// The member-account role's name (`PeregrineCoverageRole`).
    pub member_role_name: String,
    /// The member role's `sts:ExternalId` (none when empty).
    pub external_id: Option<String>,
    /// The regions swept in every account; empty means the function's own region.
    pub regions: Vec<String>,
    /// A heartbeat received longer ago than this is not recent (3 agent heartbeat periods).
    pub stale_after: Duration,
    pub minimum_agent_version: Option<semver::Version>,
    /// When set (the template's `AllowedSourceVpce`), each cluster's VPC needs one of these SQS
    /// interface endpoints, or the queue refuses its agents.
    pub allowed_source_vpce: Vec<String>,
    /// Accounts swept at the same time.
    pub account_concurrency: usize,
    /// The organization's row written at the first sweep, when the config table has none.
    pub default_auto_enable: AutoEnable,
    pub default_management: Management,
}

/// Three heartbeat periods of the agent's default 60 s.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(180);
pub const DEFAULT_ROLE_NAME: &str = "PeregrineCoverageRole";

fn list(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl FromEnv for Config {
    type Error = ConfigError;

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let minimum_agent_version = match env::optional(&get, "MINIMUM_AGENT_VERSION") {
            None => None,
            Some(v) => Some(
                crate::assess::parse_version(&v).ok_or_else(|| ConfigError::Version(v.clone()))?,
            ),
        };
        let account_concurrency = match env::optional(&get, "ACCOUNT_CONCURRENCY") {
            None => 16,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or(ConfigError::Concurrency(v))?,
        };
        Ok(Config {
            config_table: env::required(&get, "CONFIG_TABLE")?,
            coverage_table: env::required(&get, "COVERAGE_TABLE")?,
            heartbeats_table: env::required(&get, "HEARTBEATS_TABLE")?,
            event_bus_name: env::required(&get, "EVENT_BUS_NAME")?,
            member_role_name: env::optional(&get, "MEMBER_ROLE_NAME")
                .unwrap_or_else(|| DEFAULT_ROLE_NAME.to_owned()),
            external_id: env::optional(&get, "EXTERNAL_ID"),
            regions: list(env::optional(&get, "COVERAGE_REGIONS")),
            stale_after: env::seconds(&get, "HEARTBEAT_STALE_AFTER_SECONDS", DEFAULT_STALE_AFTER)?,
            minimum_agent_version,
            allowed_source_vpce: list(env::optional(&get, "ALLOWED_SOURCE_VPCE")),
            account_concurrency,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(extra: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            let base = [
                ("CONFIG_TABLE", "c"),
                ("COVERAGE_TABLE", "v"),
                ("HEARTBEATS_TABLE", "h"),
                ("EVENT_BUS_NAME", "b"),
            ];
            extra
                .iter()
                .chain(base.iter())
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_and_lists() {
        let c = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(c.member_role_name, "PeregrineCoverageRole");
        assert_eq!(c.stale_after, DEFAULT_STALE_AFTER);
        assert_eq!(c.regions, Vec::<String>::new());
        assert_eq!(c.external_id, None);
        assert_eq!(c.account_concurrency, 16);
        assert_eq!(c.default_auto_enable, AutoEnable::All);
        let c = Config::from_lookup(lookup(&[
            ("COVERAGE_REGIONS", "eu-west-1, us-east-1,"),
            ("EXTERNAL_ID", "secret"),
            ("MINIMUM_AGENT_VERSION", "v0.2.0"),
            ("DEFAULT_AUTO_ENABLE", "NEW"),
        ]))
        .unwrap();
        assert_eq!(c.regions, vec!["eu-west-1", "us-east-1"]);
        assert_eq!(c.external_id.as_deref(), Some("secret"));
        assert_eq!(
            c.minimum_agent_version,
            semver::Version::parse("0.2.0").ok()
        );
        assert_eq!(c.default_auto_enable, AutoEnable::New);
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_lookup(lookup(&[("DEFAULT_AUTO_ENABLE", "SOME")])).unwrap_err();
        assert!(e.to_string().contains("SOME"), "{e}");
        let e = Config::from_lookup(lookup(&[("MINIMUM_AGENT_VERSION", "latest")])).unwrap_err();
        assert!(matches!(e, ConfigError::Version(_)), "{e}");
        let e = Config::from_lookup(lookup(&[("ACCOUNT_CONCURRENCY", "0")])).unwrap_err();
        assert!(matches!(e, ConfigError::Concurrency(_)), "{e}");
    }
}
