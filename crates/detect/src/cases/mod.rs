//! Declarative test cases for rules: `<file>.tests.yaml` beside `<file>.yaml`, each case an
//! event described by its meaningful fields and whether a rule must fire on it. The built-in
//! catalog is tested this way (`tests/rules.rs`), and so can a user's rule file be:
//!
//! ```
//! use peregrine_detect::{cases, Catalog, Engine, RuleSet};
//!
//! let site = RuleSet::from_yaml("site.yaml", r#"
//! version: 1.0.0
//! rules:
//!   - id: nc-in-a-container
//!     maturity: incubating
//!     title: netcat was run in a container
//!     type: Execution:Runtime/SuspiciousCommand
//!     severity: 5
//!     kinds: [exec]
//!     condition:
//!       all:
//!         - {field: container, op: exists}
//!         - {field: process.name, op: in, values: [nc, ncat, netcat]}
//! "#)?;
//! let engine = Engine::new([Catalog::builtin()?, site.clone()]);
//! let summary = cases::run(&engine, &site, "site.tests.yaml", r#"
//! tests:
//!   - rule: nc-in-a-container
//!     fires:
//!       - {name: ncat, event: {kind: exec, exe: /usr/bin/ncat}}
//!     misses:
//!       - {name: on the host, event: {kind: exec, exe: /usr/bin/ncat, host: true}}
//! "#)?;
//! assert_eq!(summary.cases, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/rules.md` ("Testing rules") for the format. This module is built with the `cases`
//! feature.

mod event;
mod schema;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map, Value as Json};

pub use self::event::{CONTAINER_ID, T0, build_event};
use self::schema::{Case, CaseFile, RuleCases};
pub use self::schema::{ContainerSpec, EventSpec, FLAG_NAMES, Flags, Mode, NewBinarySpec};
use crate::engine::{Engine, Match};
use crate::error::list;
use crate::rule::RuleSet;

/// What a passing file held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub cases: usize,
}

/// Why a case file did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("test cases {file:?}: invalid YAML or unknown key: {message}")]
    Yaml { file: String, message: String },

    #[error("test cases {file:?}: {} problems:\n{}", problems.len(), list(problems))]
    Failed {
        file: String,
        problems: Vec<CaseProblem>,
    },
}

/// One problem in a case file.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CaseProblem {
    #[error("`{0}` names no loaded rule")]
    UnknownRule(String),

    #[error("no loaded rule raises finding type `{0}`")]
    UnknownType(String),

    #[error("an entry needs exactly one of `rule` and `type`")]
    NoTarget,

    #[error("rule `{rule}` has no {missing} case")]
    Uncovered { rule: String, missing: &'static str },

    #[error("{target}, case {case:?}: {reason}")]
    BadCase {
        target: String,
        case: String,
        reason: String,
    },

    #[error("{target}, case {case:?}: {}, but it {} (rules that fired: [{}])",
        if *must_fire { "must fire" } else { "must not fire" },
        if *must_fire { "did not" } else { "did" },
        fired.join(", "))]
    Outcome {
        target: String,
        case: String,
        must_fire: bool,
        fired: Vec<String>,
    },

    #[error("{target}, case {case:?}: {what}: want {want}, got {got}")]
    Mismatch {
        target: String,
        case: String,
        what: String,
        want: Json,
        got: Json,
    },
}

/// What an entry's cases are about.
enum Target<'a> {
    Rule(&'a str),
    Type(&'a str),
}

impl Target<'_> {
    fn is(&self, m: &Match) -> bool {
        match self {
            Target::Rule(id) => m.rule_id == *id,
            Target::Type(t) => m.finding_type == *t,
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Rule(id) => write!(f, "rule `{id}`"),
            Target::Type(t) => write!(f, "type `{t}`"),
        }
    }
}

/// Runs the cases in `yaml` (called `file` in messages) on `engine`. Every rule of `covered`
/// (the rule file the cases are for) must have at least one case that fires it and one near
/// miss. All problems are reported together.
pub fn run(
    engine: &Engine,
    covered: &RuleSet,
    file: &str,
    yaml: &str,
) -> Result<Summary, CaseError> {
    let parsed: CaseFile = serde_yaml_ng::from_str(yaml).map_err(|e| CaseError::Yaml {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    let mut cases = 0;
    // Per rule id: (has a firing case, has a near miss).
    let mut coverage: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for entry in &parsed.tests {
        let Some(target) = target(engine, entry, &mut problems) else {
            continue;
        };
        if let Target::Rule(id) = target {
            let c = coverage.entry(id).or_default();
            c.0 |= !entry.fires.is_empty();
            c.1 |= !entry.misses.is_empty();
        }
        for (case, must_fire) in entry
            .fires
            .iter()
            .map(|c| (c, true))
            .chain(entry.misses.iter().map(|c| (c, false)))
        {
            cases += 1;
            check(engine, &target, case, must_fire, &mut problems);
        }
    }
    for r in covered.rules() {
        let (fires, misses) = coverage.get(r.id).copied().unwrap_or_default();
        for (present, missing) in [(fires, "firing"), (misses, "near-miss")] {
            if !present {
                problems.push(CaseProblem::Uncovered {
                    rule: r.id.to_owned(),
                    missing,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(Summary { cases })
    } else {
        Err(CaseError::Failed {
            file: file.to_owned(),
            problems,
        })
    }
}

fn target<'a>(
    engine: &Engine,
    entry: &'a RuleCases,
    problems: &mut Vec<CaseProblem>,
) -> Option<Target<'a>> {
    match (&entry.rule, &entry.finding_type) {
        (Some(id), None) => {
            if engine.rules().any(|r| r.id == id) {
                Some(Target::Rule(id))
            } else {
                problems.push(CaseProblem::UnknownRule(id.clone()));
                None
            }
        }
        (None, Some(t)) => {
            if engine.rules().any(|r| r.finding_type == t) {
                Some(Target::Type(t))
            } else {
                problems.push(CaseProblem::UnknownType(t.clone()));
                None
            }
        }
        _ => {
            problems.push(CaseProblem::NoTarget);
            None
        }
    }
}

fn check(
    engine: &Engine,
    target: &Target<'_>,
    case: &Case,
    must_fire: bool,
    problems: &mut Vec<CaseProblem>,
) {
    let bad = |reason: String| CaseProblem::BadCase {
        target: target.to_string(),
        case: case.name.clone(),
        reason,
    };
    if !must_fire && (case.context.is_some() || case.evidence.is_some()) {
        problems.push(bad(
            "`context` and `evidence` describe a match; a near miss has none".into(),
        ));
        return;
    }
    let ev = match build_event(&case.event) {
        Ok(ev) => ev,
        Err(reason) => {
            problems.push(bad(reason));
            return;
        }
    };
    let mut matches = Vec::new();
    engine.evaluate(&ev, &mut matches);
    let Some(m) = matches.iter().find(|m| target.is(m)) else {
        if must_fire {
            problems.push(outcome(target, case, true, &matches));
        }
        return;
    };
    if !must_fire {
        problems.push(outcome(target, case, false, &matches));
        return;
    }
    let mismatch = |what: String, want: &Json, got: Json| CaseProblem::Mismatch {
        target: target.to_string(),
        case: case.name.clone(),
        what,
        want: want.clone(),
        got,
    };
    if let Some(want) = &case.context {
        let got = match serde_json::to_value(&m.context) {
            Ok(Json::Object(o)) => o,
            _ => Map::new(),
        };
        for (member, w) in want {
            let g = got.get(member).cloned().unwrap_or(Json::Null);
            if !contains(&g, w) {
                problems.push(mismatch(format!("context.{member}"), w, g));
            }
        }
    }
    if let Some(want) = &case.evidence {
        let got = serde_json::to_value(&m.evidence).unwrap_or(Json::Null);
        let entries = got.as_array().map(Vec::as_slice).unwrap_or_default();
        for w in want {
            if !entries.iter().any(|g| contains(g, w)) {
                problems.push(mismatch("evidence".into(), w, got.clone()));
            }
        }
    }
}

fn outcome(target: &Target<'_>, case: &Case, must_fire: bool, matches: &[Match]) -> CaseProblem {
    let mut fired: Vec<String> = matches.iter().map(|m| m.rule_id.clone()).collect();
    let mut seen = HashSet::new();
    fired.retain(|id| seen.insert(id.clone()));
    CaseProblem::Outcome {
        target: target.to_string(),
        case: case.name.clone(),
        must_fire,
        fired,
    }
}

/// `got` has everything `want` has: objects member by member (a `null` member must be absent
/// or null), anything else equal.
fn contains(got: &Json, want: &Json) -> bool {
    match (got, want) {
        (Json::Object(g), Json::Object(w)) => w
            .iter()
            .all(|(k, wv)| contains(g.get(k).unwrap_or(&Json::Null), wv)),
        (g, w) => g == w,
    }
}
