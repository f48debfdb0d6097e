//! Rule loading errors: each names the rule set, the rule and the exact part that is wrong, so
//! the author of a bad rule file can fix it from the message alone.

use std::fmt;

/// Where in a rule set something is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    pub set: String,
    pub rule: String,
    /// The part of the rule: `condition`, `exceptions[0] "name"`, `context.filePath`, ...
    pub part: String,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule set {:?}, rule {:?}", self.set, self.rule)?;
        if !self.part.is_empty() {
            write!(f, ", {}", self.part)?;
        }
        Ok(())
    }
}

fn hint(h: &Option<&'static str>) -> String {
    h.map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// `at` is boxed to keep `Result<_, RuleError>` small on the success path.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule set {set:?}: invalid YAML or unknown key: {message}")]
    Yaml { set: String, message: String },

    #[error("rule set {set:?}: {reason}")]
    BadPackVersion { set: String, reason: String },

    #[error("{at}: {reason}")]
    BadMaturity { at: Box<At>, reason: String },

    #[error("rule set {set:?}: rule id {id:?} is invalid: {reason}")]
    BadId {
        set: String,
        id: String,
        reason: &'static str,
    },

    #[error("rule set {set:?}: rule id {id:?} is defined more than once")]
    DuplicateRuleId { set: String, id: String },

    #[error("{at}: unknown field `{field}`{}; see docs/rules.md for the field list", hint(.suggestion))]
    UnknownField {
        at: Box<At>,
        field: String,
        suggestion: Option<&'static str>,
    },

    #[error("{at}: unknown operator `{op}` on `{field}`; operators: {known}")]
    UnknownOperator {
        at: Box<At>,
        field: String,
        op: String,
        known: &'static str,
    },

    #[error("{at}: operator `{op}` does not apply to `{field}`, a {ty}; it accepts: {allowed}")]
    OperatorNotForType {
        at: Box<At>,
        field: String,
        op: String,
        ty: &'static str,
        allowed: String,
    },

    #[error("{at}: `{field} {op}`: {reason}")]
    BadValue {
        at: Box<At>,
        field: String,
        op: String,
        reason: String,
    },

    #[error("{at}: `{field}` can only be used in `context`, not in a condition or exception")]
    ContextOnlyField { at: Box<At>, field: String },

    #[error("{at}: unknown event kind {kind:?}; kinds: {known}")]
    UnknownKind {
        at: Box<At>,
        kind: String,
        known: String,
    },

    #[error(
        "{at}: `kinds` is empty; list the event kinds the rule needs (the engine only shows a rule events of those kinds)"
    )]
    NoKinds { at: Box<At> },

    #[error(
        "{at}: `{field}` is never present on events of the rule's kinds ({kinds}); it is carried by: {carried_by}"
    )]
    FieldNeverPresent {
        at: Box<At>,
        field: String,
        kinds: String,
        carried_by: String,
    },

    #[error("{at}: {reason}")]
    BadCondition { at: Box<At>, reason: String },

    #[error(
        "{at}: severity {severity} is outside 1.0-10.0 (Low 1-3.9, Medium 4-6.9, High 7-8.9, Critical 9-10)"
    )]
    BadSeverity { at: Box<At>, severity: f64 },

    #[error(
        "{at}: finding type {finding_type:?} is not of the form `ThreatPurpose:Runtime/Name` (at most 100 characters)"
    )]
    BadFindingType { at: Box<At>, finding_type: String },

    #[error("{at}: {reason}")]
    BadRule { at: Box<At>, reason: String },

    #[error("{at}: unknown RuntimeContext member `{target}`{}", hint(.suggestion))]
    UnknownContextTarget {
        at: Box<At>,
        target: String,
        suggestion: Option<&'static str>,
    },

    #[error("{at}: {reason}")]
    BadContext { at: Box<At>, reason: String },

    #[error("{at}: {reason}")]
    BadException { at: Box<At>, reason: String },

    #[error("{at}: `{field}` cannot be aggregated on: {reason}")]
    BadAggregateBy {
        at: Box<At>,
        field: String,
        reason: String,
    },

    #[error("rule set {set:?}: {} errors:\n{}", errors.len(), list(errors))]
    Several { set: String, errors: Vec<RuleError> },
}

/// One indented `- item` line per item, for messages that report several problems.
pub(crate) fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl RuleError {
    /// One error, or all of them when a set has several.
    pub fn errors(&self) -> Vec<&RuleError> {
        match self {
            RuleError::Several { errors, .. } => errors.iter().collect(),
            e => vec![e],
        }
    }
}
