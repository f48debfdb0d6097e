//! The one parser for a predicate mapping, `{field, op, value | values, ignore_case}`. A
//! condition's leaves and a context entry's filter (`{fields: [...], op, values}`) are both
//! written this way; exceptions give the same parts as columns (`fields`, `ops`, value
//! tuples). All three end in [`LeafDef`] and [`Leaf::compile`], so every predicate is checked
//! and compiled the same way.

use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::error::{At, RuleError};
use crate::pred::{Leaf, LeafDef};
use crate::rule::schema::describe;

/// A predicate mapping's parts, borrowed from the YAML.
pub(super) struct PredicateMap<'a> {
    /// The value under the subject key: a field name (`field`) or a list of them (`fields`).
    pub(super) subject: Option<&'a Yaml>,
    pub(super) op: Option<&'a str>,
    pub(super) value: Option<&'a Yaml>,
    pub(super) values: Option<&'a Yaml>,
    pub(super) ignore_case: bool,
}

impl<'a> PredicateMap<'a> {
    /// Reads `m`, whose subject is under `subject_key` (`field` or `fields`). On a key it does
    /// not know, or an `ignore_case` that is not a boolean, returns the reason.
    pub(super) fn parse(m: &'a Mapping, subject_key: &str) -> Result<Self, String> {
        let mut p = PredicateMap {
            subject: None,
            op: None,
            value: None,
            values: None,
            ignore_case: false,
        };
        for (k, v) in m {
            match k.as_str() {
                Some(s) if s == subject_key => p.subject = Some(v),
                Some("op") => p.op = v.as_str(),
                Some("value") => p.value = Some(v),
                Some("values") => p.values = Some(v),
                Some("ignore_case") => match v {
                    Yaml::Bool(b) => p.ignore_case = *b,
                    other => {
                        return Err(format!(
                            "`ignore_case` must be true or false, got {}",
                            describe(other)
                        ));
                    }
                },
                _ => {
                    return Err(format!(
                        "unknown key `{}` in a predicate; a predicate has {subject_key}, op, value or values, and ignore_case",
                        key_name(k)
                    ));
                }
            }
        }
        Ok(p)
    }

    /// Compiles the predicate for one field with the operator the caller checked is there.
    pub(super) fn compile(&self, field: &str, op: &str, at: &At) -> Result<Leaf, RuleError> {
        Leaf::compile(
            &LeafDef {
                field,
                op,
                value: self.value,
                values: self.values,
                ignore_case: self.ignore_case,
            },
            at,
        )
    }
}

/// A mapping key as the author wrote it.
pub(super) fn key_name(k: &Yaml) -> String {
    k.as_str().map(str::to_owned).unwrap_or_else(|| describe(k))
}
