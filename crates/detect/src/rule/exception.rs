//! Exceptions: the one way to suppress a rule's matches, for the rule's own `exceptions` and
//! for those an override adds.

use serde_yaml_ng::Value as Yaml;

use crate::error::{At, RuleError};
use crate::field::{Field, Subject};
use crate::pred::{Leaf, LeafDef};
use crate::rule::schema::ExceptionDef;

/// One named exception: a list of value tuples over the same fields; an event matching every
/// predicate of any tuple is suppressed.
#[derive(Clone, Debug)]
pub(crate) struct Exception {
    tuples: Vec<Vec<Leaf>>,
}

impl Exception {
    pub(crate) fn matches(&self, s: &Subject<'_>) -> bool {
        self.tuples.iter().any(|t| t.iter().all(|l| l.eval(s)))
    }

    pub(super) fn fields(&self, out: &mut Vec<Field>) {
        for t in &self.tuples {
            out.extend(t.iter().map(|l| l.field));
        }
    }
}

pub(super) fn compile_exceptions(
    defs: &[ExceptionDef],
    at: &At,
) -> Result<Vec<Exception>, RuleError> {
    let mut out = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        let at = At {
            part: format!("exceptions[{i}] {:?}", def.name),
            ..at.clone()
        };
        let bad = |reason: String| RuleError::BadException {
            at: Box::new(at.clone()),
            reason,
        };
        if def.fields.is_empty() {
            return Err(bad("`fields` is empty".into()));
        }
        let ops: Vec<&str> = match &def.ops {
            None => vec!["eq"; def.fields.len()],
            Some(ops) if ops.len() == def.fields.len() => ops.iter().map(String::as_str).collect(),
            Some(ops) => {
                return Err(bad(format!(
                    "`ops` has {} entries for {} fields; give one operator per field",
                    ops.len(),
                    def.fields.len()
                )));
            }
        };
        let mut tuples = Vec::new();
        for (j, tuple) in def.values.iter().enumerate() {
            if tuple.len() != def.fields.len() {
                return Err(bad(format!(
                    "values[{j}] has {} values for {} fields [{}]",
                    tuple.len(),
                    def.fields.len(),
                    def.fields.join(", ")
                )));
            }
            let mut leaves = Vec::new();
            for ((field, op), value) in def.fields.iter().zip(&ops).zip(tuple) {
                // A list value in a tuple is an `in` list (or several patterns).
                let (value, values) = match value {
                    Yaml::Sequence(_) => (None, Some(value)),
                    v => (Some(v), None),
                };
                let def = LeafDef {
                    field,
                    op,
                    value,
                    values,
                    ignore_case: false,
                };
                leaves.push(Leaf::compile(&def, &at)?);
            }
            tuples.push(leaves);
        }
        if tuples.is_empty() {
            return Err(bad(
                "`values` is empty: the exception would never apply".into()
            ));
        }
        out.push(Exception { tuples });
    }
    Ok(out)
}
