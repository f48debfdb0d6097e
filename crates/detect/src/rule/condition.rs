//! Conditions: a tree of `all`, `any` and `not` over predicates, compiled once.

use peregrine_finding::Evidence;
use serde_yaml_ng::Value as Yaml;

use crate::error::{At, RuleError};
use crate::field::{Field, Subject};
use crate::pred::Leaf;
use crate::rule::predicate::{PredicateMap, key_name};
use crate::rule::schema::describe;

/// A condition tree.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Leaf(Box<Leaf>),
}

impl Node {
    /// Tree evaluation: used to explain a match; events are evaluated by the
    /// [`Program`](crate::program::Program).
    pub(crate) fn eval(&self, s: &Subject<'_>) -> bool {
        match self {
            Node::Leaf(l) => l.eval(s),
            Node::All(c) => c.iter().all(|n| n.eval(s)),
            Node::Any(c) => c.iter().any(|n| n.eval(s)),
            Node::Not(n) => !n.eval(s),
        }
    }

    fn cost(&self) -> u32 {
        match self {
            Node::Leaf(l) => l.cost(),
            Node::Not(n) => n.cost(),
            Node::All(c) | Node::Any(c) => c.iter().map(Node::cost).sum(),
        }
    }

    /// Records the leaves that made this node evaluate to `want`: every true child of an
    /// `all`/`any` that held, every false child of one that failed, with `not` flipping `want`.
    pub(crate) fn explain(
        &self,
        s: &Subject<'_>,
        want: bool,
        out: &mut Vec<(u32, Field, Evidence)>,
    ) {
        match self {
            Node::Leaf(l) => out.push((l.order, l.field, l.evidence(s, want))),
            Node::Not(n) => n.explain(s, !want, out),
            Node::All(c) | Node::Any(c) => {
                for n in c.iter() {
                    if n.eval(s) == want {
                        n.explain(s, want, out);
                    }
                }
            }
        }
    }

    pub(super) fn fields(&self, out: &mut Vec<Field>) {
        match self {
            Node::Leaf(l) => out.push(l.field),
            Node::Not(n) => n.fields(out),
            Node::All(c) | Node::Any(c) => c.iter().for_each(|n| n.fields(out)),
        }
    }
}

#[cfg(test)]
pub(crate) fn compile_node_for_tests(v: &Yaml, at: &At) -> Node {
    match compile_node(v, at, &mut 0) {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

/// Compiles a condition. `next` numbers the leaves in written order. Children of `all` and
/// `any` are then reordered cheapest first (stable, so equal costs keep the author's order):
/// both are commutative, predicates have no side effects, and a cheap `kind` or flag test
/// that fails spares a glob over the path.
pub(super) fn compile_node(v: &Yaml, at: &At, next: &mut u32) -> Result<Node, RuleError> {
    let bad = |reason: String| RuleError::BadCondition {
        at: Box::new(at.clone()),
        reason,
    };
    let Yaml::Mapping(m) = v else {
        return Err(bad(format!(
            "a condition is a mapping: `all: [...]`, `any: [...]`, `not: ...` or `{{field, op, value}}`; got {}",
            describe(v)
        )));
    };
    if m.contains_key("field") || m.contains_key("op") {
        let p = PredicateMap::parse(m, "field").map_err(bad)?;
        let (Some(field), Some(op)) = (p.subject.and_then(Yaml::as_str), p.op) else {
            return Err(bad(
                "a predicate needs both `field` and `op` (as strings)".into()
            ));
        };
        let mut leaf = p.compile(field, op, at)?;
        leaf.order = *next;
        *next += 1;
        return Ok(Node::Leaf(Box::new(leaf)));
    }
    if m.len() != 1 {
        let keys: Vec<String> = m.keys().map(key_name).collect();
        return Err(bad(format!(
            "a condition node has exactly one of `all`, `any`, `not`; got keys [{}]",
            keys.join(", ")
        )));
    }
    let Some((k, inner)) = m.iter().next() else {
        return Err(bad("empty condition".into()));
    };
    match k.as_str() {
        Some(kw @ ("all" | "any")) => {
            let Yaml::Sequence(items) = inner else {
                return Err(bad(format!(
                    "`{kw}` takes a list of conditions, got {}",
                    describe(inner)
                )));
            };
            if items.is_empty() {
                return Err(bad(format!("`{kw}` has an empty list")));
            }
            let mut nodes = items
                .iter()
                .map(|i| compile_node(i, at, next))
                .collect::<Result<Vec<_>, _>>()?;
            nodes.sort_by_key(Node::cost);
            Ok(if kw == "all" {
                Node::All(nodes.into())
            } else {
                Node::Any(nodes.into())
            })
        }
        Some("not") => Ok(Node::Not(Box::new(compile_node(inner, at, next)?))),
        _ => Err(bad(format!(
            "unknown condition key `{}`; use all, any, not or a predicate",
            key_name(k)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use peregrine_event::{Event, Kind};

    use super::*;
    use crate::cases::{EventSpec, Flags, build_event};
    use crate::program::Program;

    fn ev(kind: Kind, uid: u32, path: &str, flags: u32) -> Event {
        let mut spec = EventSpec::new(kind);
        spec.uid = Some(uid);
        if kind != Kind::Exec {
            spec.path = Some(path.into());
            spec.flags = Some(Flags(flags));
        }
        build_event(&spec).unwrap()
    }

    /// The jump program answers exactly like the tree, for nested all/any/not.
    #[test]
    fn program_agrees_with_tree() {
        let a = "{field: process.uid, op: eq, value: 0}";
        let b = "{field: kind, op: eq, value: open}";
        let c = "{field: file.path, op: prefix, value: /etc/}";
        let d = "{field: file.flags, op: bits_any, value: 1}";
        let conditions = [
            a.to_owned(),
            format!("{{not: {a}}}"),
            format!("{{all: [{a}, {b}]}}"),
            format!("{{any: [{a}, {b}, {c}]}}"),
            format!("{{all: [{a}, {{any: [{b}, {c}]}}, {{not: {d}}}]}}"),
            format!("{{any: [{{all: [{a}, {b}]}}, {{all: [{c}, {{not: {d}}}]}}]}}"),
            format!("{{not: {{any: [{{not: {a}}}, {{all: [{b}, {{not: {c}}}]}}]}}}}"),
            format!(
                "{{all: [{{any: [{a}, {{not: {b}}}]}}, {{any: [{{not: {c}}}, {d}]}}, {{not: {{all: [{a}, {d}]}}}}]}}"
            ),
        ];
        let mut events = Vec::new();
        for kind in [Kind::Open, Kind::Unlink, Kind::Exec] {
            for uid in [0, 1000] {
                for path in ["/etc/passwd", "/tmp/x"] {
                    for flags in [0, 1] {
                        events.push(ev(kind, uid, path, flags));
                    }
                }
            }
        }
        let at = At {
            set: "t".into(),
            rule: "r".into(),
            part: String::new(),
        };
        for cond in &conditions {
            let yaml: Yaml = serde_yaml_ng::from_str(cond).unwrap();
            let node = compile_node(&yaml, &at, &mut 0).unwrap();
            let program = Program::new(&node);
            let mut leaves = Vec::new();
            node.fields(&mut leaves);
            assert_eq!(
                program.len(),
                leaves.len(),
                "one instruction per leaf: {cond}"
            );
            let mut outcomes = HashSet::new();
            for e in &events {
                let s = Subject::new(e);
                let want = node.eval(&s);
                assert_eq!(
                    program.eval(&s),
                    want,
                    "{cond} on {:?} uid={} {:?}",
                    e.kind,
                    e.process.uid,
                    e.detail
                );
                outcomes.insert(want);
            }
            assert_eq!(
                outcomes.len(),
                2,
                "the events exercise both outcomes of {cond}"
            );
        }
    }

    #[test]
    fn cheap_predicates_are_tested_first_but_evidence_keeps_written_order() {
        let yaml: Yaml = serde_yaml_ng::from_str(
            "{all: [{field: file.path, op: glob, value: \"/etc/**/x*\"}, {field: kind, op: eq, value: open}]}",
        )
        .unwrap();
        let at = At {
            set: "t".into(),
            rule: "r".into(),
            part: String::new(),
        };
        let node = compile_node(&yaml, &at, &mut 0).unwrap();
        let Node::All(children) = &node else {
            panic!("{node:?}")
        };
        assert!(
            matches!(&children[0], Node::Leaf(l) if l.field == Field::Kind),
            "kind test moved first"
        );
        let e = ev(Kind::Open, 0, "/etc/a/x1", 0);
        let mut out = Vec::new();
        node.explain(&Subject::new(&e), true, &mut out);
        out.sort_by_key(|(o, _, _)| *o);
        let fields: Vec<Field> = out.iter().map(|(_, f, _)| *f).collect();
        assert_eq!(fields, [Field::FilePath, Field::Kind]);
    }
}
