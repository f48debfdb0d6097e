//! The built-in rules, embedded from `rules/*.yaml` at build time.

use crate::error::RuleError;
use crate::rule::{Maturity, RuleSet};

/// Peregrine's built-in detections.
pub struct Catalog;

/// A finding type raised from the agent's own state rather than by a rule over events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateFindingType {
    pub finding_type: &'static str,
    pub severity: f64,
    pub title: &'static str,
    /// Whether GuardDuty defines the type (false: Peregrine's own).
    pub guardduty: bool,
}

impl Catalog {
    /// The embedded rule files: (name, YAML).
    pub const SOURCES: &'static [(&'static str, &'static str)] = &[
        (
            "builtin/container-escape.yaml",
            include_str!("../rules/container-escape.yaml"),
        ),
        (
            "builtin/defense-evasion.yaml",
            include_str!("../rules/defense-evasion.yaml"),
        ),
        (
            "builtin/execution.yaml",
            include_str!("../rules/execution.yaml"),
        ),
        (
            "builtin/privilege-escalation.yaml",
            include_str!("../rules/privilege-escalation.yaml"),
        ),
        (
            "builtin/sensitive-files.yaml",
            include_str!("../rules/sensitive-files.yaml"),
        ),
        (
            "builtin/suspicious-commands.yaml",
            include_str!("../rules/suspicious-commands.yaml"),
        ),
    ];

    /// Finding types raised from the agent's state (its heartbeats, or its status tick in
    /// standalone mode), not from the rule files: they cannot be disabled or overridden by
    /// rules. Documented in docs/rules.md.
    pub const STATE_FINDING_TYPES: &'static [StateFindingType] = &[StateFindingType {
        finding_type: crate::blinding::AGENT_BLINDED,
        severity: crate::blinding::AGENT_BLINDED_SEVERITY,
        title: "The Peregrine agent is blinded (sustained drops, probes not attached, restart loop)",
        guardduty: false,
    }];

    /// The maturities [`Catalog::builtin`] loads: `stable` only, as Falco does. Every rule
    /// that ships enabled in production is `stable`; `incubating` and `sandbox` rules are
    /// opt-in through [`Catalog::with_maturities`].
    pub const DEFAULT_MATURITIES: &'static [Maturity] = &[Maturity::Stable];

    /// The built-in rules of the [default maturities](Catalog::DEFAULT_MATURITIES), as one
    /// set named `builtin`.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        Self::with_maturities(Self::DEFAULT_MATURITIES)
    }

    /// The built-in rules of the given maturities, as one set named `builtin`:
    /// `&[Maturity::Stable, Maturity::Incubating]` adds the rules still being tuned, and
    /// [`Maturity::ALL`] loads every rule. The files are tested to load, so an error here means
    /// a broken build, reported rather than panicked on.
    pub fn with_maturities(maturities: &[Maturity]) -> Result<RuleSet, RuleError> {
        let mut all: Option<RuleSet> = None;
        for (name, yaml) in Self::SOURCES {
            let set = RuleSet::from_yaml(name, yaml)?;
            match all.as_mut() {
                Some(a) => a.extend(set)?,
                None => all = Some(set),
            }
        }
        let mut all = all.unwrap_or_else(|| RuleSet {
            name: String::new(),
            rules: Vec::new(),
            overrides: Vec::new(),
        });
        all.name = "builtin".to_owned();
        all.retain_maturities(maturities);
        Ok(all)
    }
}
