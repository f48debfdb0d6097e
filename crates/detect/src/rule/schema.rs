//! The YAML shape of a rule file, as serde reads it. Unknown keys are errors: a misspelt
//! `exceptions` would otherwise silently leave a rule without its exceptions. Everything here
//! is text; `rule/mod.rs` checks and compiles it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDef {
    /// The rule-pack version, checked first through [`VersionProbe`]; declared here so that
    /// `deny_unknown_fields` accepts it.
    #[serde(default, rename = "version")]
    pub(super) _version: Option<Yaml>,
    #[serde(default)]
    pub(super) rules: Vec<RuleDef>,
    #[serde(default)]
    pub(super) overrides: Vec<OverrideDef>,
}

/// Only a file's `version`, read before the rest: a pack written for a newer rule language may
/// use keys this build does not know, and its author should hear about the version, not about
/// the first unknown key.
#[derive(Deserialize)]
pub(super) struct VersionProbe {
    #[serde(default)]
    pub(super) version: Option<Yaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleDef {
    pub(super) id: String,
    /// Read as any value and checked when the rule compiles, so that a missing or unknown
    /// maturity is reported with the rule's id.
    #[serde(default)]
    pub(super) maturity: Option<Yaml>,
    pub(super) title: String,
    #[serde(default)]
    pub(super) description: String,
    #[serde(rename = "type")]
    pub(super) finding_type: String,
    pub(super) severity: f64,
    #[serde(default)]
    pub(super) mitre: Vec<MitreDef>,
    pub(super) kinds: Vec<String>,
    pub(super) condition: Yaml,
    #[serde(default)]
    pub(super) exceptions: Vec<ExceptionDef>,
    #[serde(default)]
    pub(super) context: BTreeMap<String, Yaml>,
    #[serde(default)]
    pub(super) aggregate_by: Vec<String>,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MitreDef {
    pub(super) tactic: String,
    pub(super) technique: String,
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExceptionDef {
    pub(super) name: String,
    pub(super) fields: Vec<String>,
    /// One operator per field; `eq` for every field when absent.
    #[serde(default)]
    pub(super) ops: Option<Vec<String>>,
    pub(super) values: Vec<Vec<Yaml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverrideDef {
    pub(super) rule: String,
    #[serde(default)]
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) exceptions: Vec<ExceptionDef>,
}

/// A YAML value in an error message.
pub(super) fn describe(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("the string {s:?}"),
        Yaml::Sequence(_) => "a list".into(),
        Yaml::Mapping(_) => "a mapping".into(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}
