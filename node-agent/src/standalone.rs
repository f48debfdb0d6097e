//! `peregrine-agent standalone`: the agent on one host with no cloud. Either every enriched
//! event as a JSON line (`--events`), or the detection catalog in-process and its findings.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use peregrine_detect::{Catalog, Engine, RuleError, RuleSet};
use peregrine_finding::FindingEnv;

use crate::{
    agent::{self, AgentConfig, AgentError, RunSummary},
    findings::FindingsSink,
    health::Health,
    metrics::Metrics,
    proctable::procfs,
    sink::JsonLines,
};

#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    /// Print every enriched event instead of findings.
    pub events: bool,
    /// Write here instead of standard output.
    pub output: Option<PathBuf>,
    /// Rule files added to the built-in catalog.
    pub rules: Vec<PathBuf>,
    /// Written into findings.
    pub cluster_name: String,
    /// A finding that repeats is printed again, with its count, at most this often.
    pub update_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("creating {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// A rule file that cannot be used; says which file, and the rule loader says which rule.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("the built-in rule catalog")]
    Builtin(#[source] RuleError),
    #[error("reading rules from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rules in {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: RuleError,
    },
}

/// What a standalone run did.
#[derive(Clone, Debug, Default)]
pub struct StandaloneSummary {
    pub agent: RunSummary,
    /// Distinct findings printed (detection mode only).
    pub findings: Option<u64>,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    agent_cfg: AgentConfig,
    cfg: StandaloneConfig,
    metrics: Metrics,
    health: Health,
    shutdown: impl Future<Output = ()>,
) -> Result<StandaloneSummary, StandaloneError> {
    let out: Box<dyn Write + Send> = match &cfg.output {
        Some(path) => {
            Box::new(
                std::fs::File::create(path).map_err(|source| StandaloneError::Output {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => Box::new(std::io::stdout()),
    };
    if cfg.events {
        let mut sink = JsonLines::new(out);
        let agent = agent::run(agent_cfg, metrics, health, &mut sink, shutdown).await?;
        return Ok(StandaloneSummary {
            agent,
            findings: None,
        });
    }
    let engine = load_rules(&cfg.rules)?;
    let env = finding_env(cfg.cluster_name);
    let mut sink = FindingsSink::new(engine, env, out, cfg.update_interval);
    let agent = agent::run(agent_cfg, metrics, health, &mut sink, shutdown).await?;
    Ok(StandaloneSummary {
        agent,
        findings: Some(sink.findings),
    })
}

/// The built-in catalog plus the user's rule files.
pub fn load_rules(files: &[PathBuf]) -> Result<Engine, RulesError> {
    let mut sets = vec![Catalog::builtin().map_err(RulesError::Builtin)?];
    for f in files {
        sets.push(load_rule_file(f)?);
    }
    let engine = Engine::new(sets);
    for w in engine.warnings() {
        tracing::warn!(warning = %w, "rule set");
    }
    Ok(engine)
}

fn load_rule_file(f: &Path) -> Result<RuleSet, RulesError> {
    let text = std::fs::read_to_string(f).map_err(|source| RulesError::Read {
        path: f.to_path_buf(),
        source,
    })?;
    RuleSet::from_yaml(&f.display().to_string(), &text).map_err(|source| RulesError::Parse {
        path: f.to_path_buf(),
        source,
    })
}

/// Where standalone findings say they come from: this host, no AWS account.
pub fn finding_env(cluster_name: String) -> FindingEnv {
    let node = procfs::hostname();
    FindingEnv {
        account_id: "000000000000".into(),
        region: "local".into(),
        partition: "aws".into(),
        detector_id: "standalone".into(),
        cluster_name,
        cluster_arn: None,
        node_name: node.clone(),
        instance_id: None,
        agent_id: node,
        agent_version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_rule_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let err = load_rules(std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(err, RulesError::Read { .. }));
        assert!(err.to_string().contains("missing.yaml"));
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "rules: [{").unwrap();
        let err = load_rules(&[bad]).unwrap_err();
        assert!(matches!(err, RulesError::Parse { .. }), "{err}");
        assert!(load_rules(&[]).is_ok());
    }
}
