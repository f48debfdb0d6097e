//! The sweeper's configuration: the environment variables `template.yaml` sets
//! (`Globals.Function.Environment` plus CoverageFunction's own `Environment`).

use std::time::Duration;

use peregrine_lambda::env::{self, EnvError, FromEnv};
use peregrine_manage::{AgentIdentity, ManageConfig};
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
    /// Automatic agent management's settings, or why there are none (the agent image is not
    /// set, a value is unknown): the sweep still runs, and AUTO clusters report the reason.
    pub manage: Result<ManageConfig, String>,
}

/// Three heartbeat periods of the agent's default 60 s.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(180);
pub const DEFAULT_ROLE_NAME: &str = "PeregrineCoverageRole";
/// The agent role each cluster gets unless `AGENT_ROLE_ARN` says otherwise: one per cluster,
/// deployed with `infra/agent-role.yaml`.
pub const DEFAULT_AGENT_ROLE_ARN: &str =
    "arn:{partition}:iam::{account}:role/peregrine-agent-{cluster}";

/// Automatic agent management's settings (the template's `AgentImage`, `AgentIdentity`,
/// `AgentRoleArnTemplate`, `MonitoringNamespace`, and the events queue).
fn manage_config(
    get: &impl Fn(&str) -> Option<String>,
    member_role_name: &str,
) -> Result<ManageConfig, String> {
    let image = env::optional(get, "AGENT_IMAGE").ok_or_else(|| {
        "AUTO agent management needs the agent image: set the template's AgentImage \
         (repository:tag@sha256:<digest>)"
            .to_owned()
    })?;
    let need = |name: &str| env::optional(get, name).ok_or_else(|| format!("{name} is not set"));
    let role_arn =
        env::optional(get, "AGENT_ROLE_ARN").unwrap_or_else(|| DEFAULT_AGENT_ROLE_ARN.to_owned());
    let identity = match env::optional(get, "AGENT_IDENTITY").as_deref() {
        None | Some("POD_IDENTITY") => AgentIdentity::PodIdentity { role_arn },
        Some("IRSA") => AgentIdentity::Irsa { role_arn },
        Some(other) => {
            return Err(format!(
                "AGENT_IDENTITY {:?}: expected POD_IDENTITY or IRSA",
                peregrine_org::text::bounded(other, 64)
            ));
        }
    };
    let mut cfg = ManageConfig::new(
        need("QUEUE_URL")?,
        need("QUEUE_ARN")?,
        image,
        env::optional(get, "MONITORING_NAMESPACE").unwrap_or_else(|| "monitoring".to_owned()),
        identity,
    );
    cfg.manager_role_name = member_role_name.to_owned();
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

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
        let member_role_name =
            env::optional(&get, "MEMBER_ROLE_NAME").unwrap_or_else(|| DEFAULT_ROLE_NAME.to_owned());
        Ok(Config {
            manage: manage_config(&get, &member_role_name),
            config_table: env::required(&get, "CONFIG_TABLE")?,
            coverage_table: env::required(&get, "COVERAGE_TABLE")?,
            heartbeats_table: env::required(&get, "HEARTBEATS_TABLE")?,
            event_bus_name: env::required(&get, "EVENT_BUS_NAME")?,
            member_role_name,
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
        assert!(
            c.manage.as_ref().unwrap_err().contains("AgentImage"),
            "{:?}",
            c.manage
        );
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
    fn agent_management_settings() {
        const IMAGE: &str = "registry.example/peregrine/agent:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let c = Config::from_lookup(lookup(&[
            ("AGENT_IMAGE", IMAGE),
            (
                "QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/111122223333/events",
            ),
            ("QUEUE_ARN", "arn:aws:sqs:eu-west-1:111122223333:events"),
            ("MEMBER_ROLE_NAME", "OrgCoverage"),
        ]))
        .unwrap();
        let m = c.manage.unwrap();
        assert_eq!(m.agent_image, IMAGE);
        assert_eq!(m.manager_role_name, "OrgCoverage");
        assert_eq!(
            m.agent_identity,
            AgentIdentity::PodIdentity {
                role_arn: DEFAULT_AGENT_ROLE_ARN.into()
            }
        );
        // An unknown identity, or an image not pinned by digest, is the reason AUTO clusters
        // show; the sweeper itself still starts.
        let c = Config::from_lookup(lookup(&[
            ("AGENT_IMAGE", IMAGE),
            (
                "QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/111122223333/events",
            ),
            ("QUEUE_ARN", "arn:aws:sqs:eu-west-1:111122223333:events"),
            ("AGENT_IDENTITY", "KEYS"),
        ]))
        .unwrap();
        assert!(c.manage.unwrap_err().contains("KEYS"));
        let c = Config::from_lookup(lookup(&[
            ("AGENT_IMAGE", "registry.example/peregrine/agent:latest"),
            (
                "QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/111122223333/events",
            ),
            ("QUEUE_ARN", "arn:aws:sqs:eu-west-1:111122223333:events"),
        ]))
        .unwrap();
        assert!(c.manage.unwrap_err().contains("digest"));
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
