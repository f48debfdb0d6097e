//! `peregrine-agent standalone`: the agent on one host with no cloud. Either every enriched
//! event as a JSON line (`--events`), or the detection catalog in-process and its findings:
//! one line each for a person on a terminal, JSON lines for everything else (`--format`).

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use peregrine_detect::{Catalog, Engine, Maturity, RuleError, RuleSet};
use peregrine_finding::FindingEnv;

use crate::{
    agent::{self, AgentConfig, AgentError, RunSummary},
    findings::{FindingsSink, Format},
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
    /// The maturities of built-in rules that load ([`Catalog::DEFAULT_MATURITIES`]: stable).
    pub maturities: Vec<Maturity>,
    /// Written into findings.
    pub cluster_name: String,
    /// A finding that repeats is printed again, with its count, at most this often.
    pub update_interval: Duration,
    /// How findings are printed.
    pub format: FormatChoice,
    /// Whether the text format colours severities.
    pub color: ColorChoice,
}

/// `--format`: how findings are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatChoice {
    /// Text when standard output is a terminal (and no --output file), else JSON.
    #[default]
    Auto,
    /// One line per finding for a person.
    Text,
    /// GuardDuty's finding JSON, one object per line.
    Json,
}

/// `--color`: whether the text format colours severities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set (https://no-color.org) or TERM is dumb or unset.
    #[default]
    Auto,
    Always,
    Never,
}

/// What the terminal and environment say, for [`resolve_format`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Findings go to standard output, and it is a terminal.
    pub is_terminal: bool,
    /// `NO_COLOR` is set and not empty.
    pub no_color: bool,
    /// `TERM` names a terminal that shows colour (set, and not `dumb`).
    pub term_color: bool,
}

impl Terminal {
    /// This process's: standard output (unless `output` is a file) and its environment.
    pub fn detect(output: Option<&Path>) -> Self {
        Terminal {
            is_terminal: output.is_none() && std::io::stdout().is_terminal(),
            no_color: anstyle_query::no_color(),
            term_color: anstyle_query::term_supports_color(),
        }
    }
}

/// The format findings are printed in. An explicit `--color` wins over NO_COLOR, as the
/// convention asks of command-line flags.
pub fn resolve_format(format: FormatChoice, color: ColorChoice, t: Terminal) -> Format {
    let text = match format {
        FormatChoice::Auto => t.is_terminal,
        FormatChoice::Text => true,
        FormatChoice::Json => false,
    };
    if !text {
        return Format::Json;
    }
    let color = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => t.is_terminal && !t.no_color && t.term_color,
    };
    Format::Text { color }
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
    let format = resolve_format(
        cfg.format,
        cfg.color,
        Terminal::detect(cfg.output.as_deref()),
    );
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
    let engine = load_rules(&cfg.maturities, &cfg.rules)?;
    let env = finding_env(cfg.cluster_name);
    let mut sink = FindingsSink::new(engine, env, out, cfg.update_interval).with_format(format);
    let agent = agent::run(agent_cfg, metrics, health, &mut sink, shutdown).await?;
    Ok(StandaloneSummary {
        agent,
        findings: Some(sink.findings),
    })
}

/// The built-in catalog's rules of the given maturities, plus the user's rule files (all of
/// their rules: a user who loads a file wants it).
pub fn load_rules(maturities: &[Maturity], files: &[PathBuf]) -> Result<Engine, RulesError> {
    let mut sets = vec![Catalog::with_maturities(maturities).map_err(RulesError::Builtin)?];
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

/// `peregrine-agent rules`: every loaded rule, one per line, for a terminal (`json: false`: id,
/// maturity, severity, finding type, kinds and title, aligned) or for tools (`json: true`: one
/// JSON object per rule). Control characters in rule text are replaced, so a rule file cannot
/// write terminal escapes.
pub fn write_rules(engine: &Engine, json: bool, mut out: impl Write) -> std::io::Result<()> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect()
    };
    let rules: Vec<_> = engine.rules().collect();
    if json {
        for r in &rules {
            let kinds: Vec<&str> = r.kinds.iter().map(|k| k.name()).collect();
            let line = serde_json::json!({
                "id": r.id,
                "type": r.finding_type,
                "severity": r.severity,
                "maturity": r.maturity.name(),
                "pack_version": r.pack_version,
                "kinds": kinds,
                "enabled": r.enabled,
                "title": r.title,
                "description": r.description,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let id_width = rules
        .iter()
        .map(|r| r.id.chars().count())
        .max()
        .unwrap_or(2);
    let type_width = rules
        .iter()
        .map(|r| r.finding_type.chars().count())
        .max()
        .unwrap_or(4);
    writeln!(
        out,
        "{:id_width$}  {:10}  {:>8}  {:type_width$}  KINDS / TITLE",
        "ID", "MATURITY", "SEVERITY", "TYPE"
    )?;
    for r in &rules {
        let kinds: Vec<&str> = r.kinds.iter().map(|k| k.name()).collect();
        writeln!(
            out,
            "{:id_width$}  {:10}  {:>8.1}  {:type_width$}  {}{}: {}",
            clean(r.id),
            r.maturity.name(),
            r.severity,
            clean(r.finding_type),
            kinds.join(","),
            if r.enabled { "" } else { " (disabled)" },
            clean(r.title),
        )?;
    }
    Ok(())
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
    fn text_on_a_terminal_json_elsewhere_and_colour_as_asked() {
        let tty = Terminal {
            is_terminal: true,
            no_color: false,
            term_color: true,
        };
        let pipe = Terminal {
            is_terminal: false,
            ..tty
        };
        let no_color = Terminal {
            no_color: true,
            ..tty
        };
        let dumb = Terminal {
            term_color: false,
            ..tty
        };
        use ColorChoice as C;
        use FormatChoice as F;
        let text = |color| Format::Text { color };
        let cases = [
            // (format, color, terminal, expected)
            (F::Auto, C::Auto, tty, text(true)),
            (F::Auto, C::Auto, pipe, Format::Json),
            (F::Auto, C::Auto, no_color, text(false)),
            (F::Auto, C::Auto, dumb, text(false)),
            (F::Auto, C::Always, no_color, text(true)),
            (F::Auto, C::Never, tty, text(false)),
            (F::Auto, C::Always, pipe, Format::Json),
            (F::Json, C::Auto, tty, Format::Json),
            (F::Json, C::Always, tty, Format::Json),
            (F::Text, C::Auto, pipe, text(false)),
            (F::Text, C::Always, pipe, text(true)),
            (F::Text, C::Auto, tty, text(true)),
        ];
        for (format, color, t, want) in cases {
            assert_eq!(
                resolve_format(format, color, t),
                want,
                "{format:?} {color:?} {t:?}"
            );
        }
    }

    #[test]
    fn a_bad_rule_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let stable = Catalog::DEFAULT_MATURITIES;
        let err = load_rules(stable, std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(err, RulesError::Read { .. }));
        assert!(err.to_string().contains("missing.yaml"));
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "rules: [{").unwrap();
        let err = load_rules(stable, &[bad]).unwrap_err();
        assert!(matches!(err, RulesError::Parse { .. }), "{err}");
        assert!(load_rules(stable, &[]).is_ok());
    }

    #[test]
    fn the_rule_list_names_every_rule_and_writes_no_control_characters() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("mine.yaml");
        std::fs::write(
            &mine,
            "version: 1.0.0\nrules:\n- id: my-rule\n  maturity: sandbox\n  title: \"two\\nlines \\u001b[31mred\"\n  type: Execution:Runtime/Mine\n  severity: 2\n  kinds: [exec]\n  condition: {field: process.name, op: eq, value: nc}\n",
        )
        .unwrap();
        let engine = load_rules(Catalog::DEFAULT_MATURITIES, &[mine]).unwrap();
        let mut text = Vec::new();
        write_rules(&engine, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), engine.rules().count() + 1, "{text}");
        let mine = text.lines().find(|l| l.starts_with("my-rule")).unwrap();
        assert!(
            mine.contains("sandbox") && mine.contains("Execution:Runtime/Mine"),
            "{mine}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
        for r in engine.rules() {
            assert!(
                text.lines().any(|l| l.starts_with(r.id)),
                "{} missing",
                r.id
            );
        }
        let mut json = Vec::new();
        write_rules(&engine, true, &mut json).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json.lines().count(), engine.rules().count());
        let rows: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let row = rows.iter().find(|v| v["id"] == "my-rule").unwrap();
        assert_eq!(row["maturity"], "sandbox");
        assert_eq!(row["kinds"], serde_json::json!(["exec"]));
    }
}
