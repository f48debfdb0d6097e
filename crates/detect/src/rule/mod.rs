//! Rule files: YAML in, compiled rules out.
//!
//! - [`schema`]: the file's shape, as serde reads it;
//! - [`predicate`]: the one parser for `{field, op, value}` mappings;
//! - [`condition`]: the `all`/`any`/`not` tree;
//! - [`exception`]: structured exceptions;
//! - [`context`]: what a rule adds to a finding's `RuntimeContext`;
//! - [`pack`]: the file's pack version and each rule's maturity;
//! - this module: checking a rule's metadata and assembling the [`RuleSet`].

mod condition;
mod context;
mod exception;
mod pack;
mod predicate;
mod schema;

use std::collections::HashSet;
use std::sync::Arc;

use peregrine_event::Kind;
use peregrine_finding::{Evidence, MitreTag, RuntimeContext};

use crate::error::{At, RuleError};
use crate::field::{Field, FieldType, Subject, Val};

pub(crate) use self::condition::Node;
use self::condition::compile_node;
#[cfg(test)]
pub(crate) use self::condition::compile_node_for_tests;
use self::context::{ContextEntry, compile_context, render_str};
use self::exception::{Exception, compile_exceptions};
pub use self::pack::{Maturity, RULE_PACK_MAJOR};
use self::pack::{parse_maturity, parse_pack_version};
use self::schema::{FileDef, RuleDef, VersionProbe};

/// A compiled rule.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub(crate) set: String,
    pub(crate) id: String,
    /// The `version` of the file the rule came from.
    pub(crate) pack_version: Arc<str>,
    pub(crate) maturity: Maturity,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) finding_type: String,
    pub(crate) severity: f64,
    pub(crate) mitre: Vec<MitreTag>,
    pub(crate) kinds: Vec<Kind>,
    /// The condition as written (cost-ordered): the engine compiles a jump program from it per
    /// event kind, and explains matches with it.
    pub(crate) condition: Node,
    pub(crate) exceptions: Vec<Exception>,
    pub(crate) context: Vec<ContextEntry>,
    pub(crate) aggregate_by: Vec<Field>,
    pub(crate) enabled: bool,
}

impl Rule {
    pub(crate) fn excepted(&self, s: &Subject<'_>) -> bool {
        self.exceptions.iter().any(|e| e.matches(s))
    }

    /// Evidence and context for an event this rule fired on.
    pub(crate) fn explain(&self, s: &Subject<'_>) -> (Vec<Evidence>, RuntimeContext) {
        let mut ev = Vec::new();
        self.condition.explain(s, true, &mut ev);
        ev.sort_by_key(|(order, _, _)| *order);
        let matched: Vec<Field> = ev.iter().map(|(_, f, _)| *f).collect();
        let mut ctx = RuntimeContext::default();
        for c in &self.context {
            c.fill(s, &matched, &mut ctx);
        }
        (ev.into_iter().map(|(_, _, e)| e).collect(), ctx)
    }

    /// The aggregate_by values of an event, rendered as strings.
    pub(crate) fn aggregation_values(&self, s: &Subject<'_>) -> Vec<String> {
        self.aggregate_by
            .iter()
            .map(|f| match s.get(*f) {
                Val::List(l) => l.iter().collect::<Vec<_>>().join("\u{0}"),
                v => render_str(v).unwrap_or_default(),
            })
            .collect()
    }
}

/// A change to a rule from another set: disable it, or add exceptions to it.
#[derive(Clone, Debug)]
pub(crate) struct Override {
    pub(crate) rule: String,
    pub(crate) enabled: Option<bool>,
    pub(crate) exceptions: Vec<Exception>,
}

/// A compiled set of rules (one file), ready for [`Engine::new`](crate::Engine::new).
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub(crate) name: String,
    pub(crate) rules: Vec<Rule>,
    pub(crate) overrides: Vec<Override>,
}

/// A read-only view of a rule, for listings.
#[derive(Clone, Copy, Debug)]
pub struct RuleInfo<'a> {
    pub id: &'a str,
    /// The `version` of the rule file it came from.
    pub pack_version: &'a str,
    pub maturity: Maturity,
    pub title: &'a str,
    pub description: &'a str,
    pub finding_type: &'a str,
    pub severity: f64,
    pub kinds: &'a [Kind],
    pub mitre: &'a [MitreTag],
    pub enabled: bool,
}

impl<'a> From<&'a Rule> for RuleInfo<'a> {
    fn from(r: &'a Rule) -> Self {
        RuleInfo {
            id: &r.id,
            pack_version: &r.pack_version,
            maturity: r.maturity,
            title: &r.title,
            description: &r.description,
            finding_type: &r.finding_type,
            severity: r.severity,
            kinds: &r.kinds,
            mitre: &r.mitre,
            enabled: r.enabled,
        }
    }
}

impl RuleSet {
    /// Parses and compiles a rule file. Every rule is checked; all problems are reported
    /// together ([`RuleError::Several`] when there is more than one). A set that fails to load
    /// is rejected whole, and never touches the rules of other sets.
    ///
    /// The file's `version` is checked first: a pack for another major version is refused
    /// before its rules are read.
    pub fn from_yaml(name: &str, yaml: &str) -> Result<RuleSet, RuleError> {
        let yaml_error = |e: serde_yaml_ng::Error| RuleError::Yaml {
            set: name.to_owned(),
            message: e.to_string(),
        };
        let probe: VersionProbe = serde_yaml_ng::from_str(yaml).map_err(yaml_error)?;
        let pack_version: Arc<str> = parse_pack_version(probe.version.as_ref())
            .map_err(|reason| RuleError::BadPackVersion {
                set: name.to_owned(),
                reason,
            })?
            .into();
        let file: FileDef = serde_yaml_ng::from_str(yaml).map_err(yaml_error)?;
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        let mut seen = HashSet::new();
        for def in file.rules {
            if let Err(e) = check_id(name, &def.id) {
                errors.push(e);
                continue;
            }
            if !seen.insert(def.id.clone()) {
                errors.push(RuleError::DuplicateRuleId {
                    set: name.to_owned(),
                    id: def.id.clone(),
                });
                continue;
            }
            match compile_rule(name, &pack_version, def) {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(e),
            }
        }
        let mut overrides = Vec::new();
        for o in file.overrides {
            let at = At {
                set: name.to_owned(),
                rule: o.rule.clone(),
                part: "override".into(),
            };
            match compile_exceptions(&o.exceptions, &at) {
                Ok(exceptions) => overrides.push(Override {
                    rule: o.rule,
                    enabled: o.enabled,
                    exceptions,
                }),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(RuleSet {
                name: name.to_owned(),
                rules,
                overrides,
            }),
            1 => Err(errors.remove(0)),
            _ => Err(RuleError::Several {
                set: name.to_owned(),
                errors,
            }),
        }
    }

    /// Appends another set's rules and overrides; rule ids must stay unique.
    pub fn extend(&mut self, other: RuleSet) -> Result<(), RuleError> {
        for r in &other.rules {
            if self.rules.iter().any(|x| x.id == r.id) {
                return Err(RuleError::DuplicateRuleId {
                    set: other.name.clone(),
                    id: r.id.clone(),
                });
            }
        }
        self.rules.extend(other.rules);
        self.overrides.extend(other.overrides);
        Ok(())
    }

    /// Keeps only the rules of the given maturities. Overrides are kept: one aimed at a rule
    /// that is dropped is reported by [`Engine::warnings`](crate::Engine::warnings).
    pub fn retain_maturities(&mut self, keep: &[Maturity]) {
        self.rules.retain(|r| keep.contains(&r.maturity));
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(RuleInfo::from)
    }
}

fn check_id(set: &str, id: &str) -> Result<(), RuleError> {
    let bad = |reason| RuleError::BadId {
        set: set.to_owned(),
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() || id.len() > 128 {
        return Err(bad("must be 1 to 128 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(bad(
            "may only contain letters, digits, '-', '_', '.' and ':'",
        ));
    }
    Ok(())
}

/// `ThreatPurpose:ResourceType/ThreatFamily...`, as GuardDuty's finding types are.
fn valid_finding_type(t: &str) -> bool {
    let Some((purpose, rest)) = t.split_once(':') else {
        return false;
    };
    let Some((resource, family)) = rest.split_once('/') else {
        return false;
    };
    !t.is_empty()
        && t.len() <= 100
        && !purpose.is_empty()
        && purpose.bytes().all(|b| b.is_ascii_alphabetic())
        && !resource.is_empty()
        && resource.bytes().all(|b| b.is_ascii_alphabetic())
        && !family.is_empty()
        && family.bytes().all(|b| b.is_ascii_graphic())
}

fn compile_rule(set: &str, pack_version: &Arc<str>, def: RuleDef) -> Result<Rule, RuleError> {
    let at = |part: &str| At {
        set: set.to_owned(),
        rule: def.id.clone(),
        part: part.to_owned(),
    };
    let maturity =
        parse_maturity(def.maturity.as_ref()).map_err(|reason| RuleError::BadMaturity {
            at: Box::new(at("maturity")),
            reason,
        })?;
    if def.title.trim().is_empty() {
        return Err(RuleError::BadRule {
            at: Box::new(at("title")),
            reason: "`title` is empty".into(),
        });
    }
    if !def.severity.is_finite() || !(1.0..=10.0).contains(&def.severity) {
        return Err(RuleError::BadSeverity {
            at: Box::new(at("severity")),
            severity: def.severity,
        });
    }
    if !valid_finding_type(&def.finding_type) {
        return Err(RuleError::BadFindingType {
            at: Box::new(at("type")),
            finding_type: def.finding_type.clone(),
        });
    }
    if def.kinds.is_empty() {
        return Err(RuleError::NoKinds {
            at: Box::new(at("kinds")),
        });
    }
    let mut kinds = Vec::new();
    for k in &def.kinds {
        match Kind::ALL.iter().find(|x| x.name() == k) {
            Some(kind) if crate::engine::kind_slot(*kind).is_some() => {
                if !kinds.contains(kind) {
                    kinds.push(*kind);
                }
            }
            _ => {
                return Err(RuleError::UnknownKind {
                    at: Box::new(at("kinds")),
                    kind: k.clone(),
                    known: Kind::ALL
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }

    let condition = compile_node(&def.condition, &at("condition"), &mut 0)?;
    let mut used = Vec::new();
    condition.fields(&mut used);
    check_fields_present(&used, &kinds, &at("condition"))?;

    let exceptions = compile_exceptions(&def.exceptions, &at(""))?;
    let mut used = Vec::new();
    for e in &exceptions {
        e.fields(&mut used);
    }
    check_fields_present(&used, &kinds, &at("exceptions"))?;

    let mut context = Vec::new();
    for (name, spec) in &def.context {
        let entry = compile_context(name, spec, &at(&format!("context.{name}")))?;
        check_fields_present(entry.fields(), &kinds, &at(&format!("context.{name}")))?;
        context.push(entry);
    }

    let mut aggregate_by = Vec::new();
    for name in &def.aggregate_by {
        let a = at("aggregate_by");
        let f = Field::parse(name).ok_or_else(|| RuleError::UnknownField {
            at: Box::new(a.clone()),
            field: name.clone(),
            suggestion: Field::suggest(name),
        })?;
        if matches!(
            f.ty(),
            FieldType::Presence | FieldType::Process | FieldType::Time
        ) {
            return Err(RuleError::BadAggregateBy {
                at: Box::new(a),
                field: name.clone(),
                reason: format!(
                    "a {} has no stable text form; use a string or number field",
                    f.ty().name()
                ),
            });
        }
        check_fields_present(&[f], &kinds, &a)?;
        aggregate_by.push(f);
    }

    Ok(Rule {
        set: set.to_owned(),
        id: def.id,
        pack_version: Arc::clone(pack_version),
        maturity,
        title: def.title.trim().to_owned(),
        description: def.description.trim().to_owned(),
        finding_type: def.finding_type,
        severity: def.severity,
        mitre: def
            .mitre
            .into_iter()
            .map(|m| MitreTag {
                tactic: m.tactic,
                technique: m.technique,
                name: m.name,
            })
            .collect(),
        kinds,
        condition,
        exceptions,
        context,
        aggregate_by,
        enabled: def.enabled,
    })
}

/// A field no event of the rule's kinds carries makes its predicate dead: almost always a
/// mistake (`file.path` in an exec rule), so it is an error, not a silent never-match.
fn check_fields_present(fields: &[Field], kinds: &[Kind], at: &At) -> Result<(), RuleError> {
    for f in fields {
        if !kinds.iter().any(|k| f.available_for(*k)) {
            return Err(RuleError::FieldNeverPresent {
                at: Box::new(at.clone()),
                field: f.name().to_owned(),
                kinds: kinds
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                carried_by: Kind::ALL
                    .iter()
                    .filter(|k| f.available_for(**k))
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}
