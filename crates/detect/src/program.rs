//! A condition tree flattened into a short-circuit jump program.
//!
//! Walking the tree recursively costs a call, a prologue and a dispatch per node; most events
//! are rejected after two or three cheap leaves, so that overhead dominated. Instead each leaf
//! becomes one instruction holding where to go when it is true and when it is false: the next
//! instruction to test, or the final answer. Evaluation is a loop. Every jump goes forward, so
//! it always terminates.
//!
//!
//! The engine builds one program per rule and event kind, after folding away what the kind
//! alone decides ([`specialize`]): for an `open`, `kind: open` is true and `file.new_path` (only
//! rename, link and symlink carry it) is false, so neither is tested per event.
//!
//! ```text
//! all: [a, any: [b, c], not: d]      0: a  T->1  F->REJECT
//!                                     1: b  T->3  F->2
//!                                     2: c  T->3  F->REJECT
//!                                     3: d  T->REJECT F->ACCEPT
//! ```

use peregrine_event::Kind;

use crate::field::Subject;
use crate::pred::Leaf;
use crate::rule::Node;

const ACCEPT: u32 = u32::MAX;
const REJECT: u32 = u32::MAX - 1;

#[derive(Clone, Copy, Debug)]
struct Ins {
    leaf: u32,
    on_true: u32,
    on_false: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Program {
    ins: Box<[Ins]>,
    leaves: Box<[Leaf]>,
    /// The answer when there is nothing to test (a condition the kind alone satisfies).
    always: bool,
}

#[derive(Clone, Copy)]
enum Target {
    Accept,
    Reject,
    Label(usize),
}

struct Builder {
    ins: Vec<(u32, Target, Target)>,
    leaves: Vec<Leaf>,
    /// Label id -> the instruction it names.
    labels: Vec<usize>,
}

impl Builder {
    fn label(&mut self) -> usize {
        self.labels.push(usize::MAX);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        let here = self.ins.len();
        if let Some(l) = self.labels.get_mut(label) {
            *l = here;
        }
    }

    fn emit(&mut self, node: &Node, t: Target, f: Target) {
        match node {
            Node::Leaf(leaf) => {
                let idx = self.leaves.len() as u32;
                self.leaves.push((**leaf).clone());
                self.ins.push((idx, t, f));
            }
            Node::Not(inner) => self.emit(inner, f, t),
            Node::All(children) | Node::Any(children) => {
                let all = matches!(node, Node::All(_));
                let n = children.len();
                for (i, c) in children.iter().enumerate() {
                    if i + 1 == n {
                        self.emit(c, t, f);
                    } else {
                        // all: true goes on to the next child; any: false does.
                        let next = self.label();
                        if all {
                            self.emit(c, Target::Label(next), f);
                        } else {
                            self.emit(c, t, Target::Label(next));
                        }
                        self.bind(next);
                    }
                }
            }
        }
    }

    fn resolve(&self, t: Target) -> u32 {
        match t {
            Target::Accept => ACCEPT,
            Target::Reject => REJECT,
            // Every label is bound to the first instruction of a following child, which exists
            // because `all`/`any` lists are never empty; an unbound label would reject.
            Target::Label(l) => self
                .labels
                .get(l)
                .filter(|&&i| i < self.ins.len())
                .map_or(REJECT, |&i| i as u32),
        }
    }
}

/// `node` for events of `kind` only: leaves the kind decides become constants, and `all`,
/// `any` and `not` are simplified around them. `Err(b)` when the whole condition is the
/// constant `b`.
pub(crate) fn specialize(node: &Node, kind: Kind) -> Result<Node, bool> {
    match node {
        Node::Leaf(l) => match l.constant_for(kind) {
            Some(b) => Err(b),
            None => Ok(node.clone()),
        },
        Node::Not(inner) => match specialize(inner, kind) {
            Err(b) => Err(!b),
            Ok(n) => Ok(Node::Not(Box::new(n))),
        },
        Node::All(children) | Node::Any(children) => {
            let all = matches!(node, Node::All(_));
            let mut kept = Vec::with_capacity(children.len());
            for c in children.iter() {
                match specialize(c, kind) {
                    // A false child decides an `all`, a true one an `any`.
                    Err(b) if b != all => return Err(b),
                    Err(_) => {}
                    Ok(n) => kept.push(n),
                }
            }
            match kept.len() {
                // Every child was the neutral constant.
                0 => Err(all),
                1 => Ok(kept.remove(0)),
                _ => Ok(if all {
                    Node::All(kept.into())
                } else {
                    Node::Any(kept.into())
                }),
            }
        }
    }
}

impl Program {
    /// The program for events of `kind`, or `None` when no such event can match.
    pub(crate) fn for_kind(node: &Node, kind: Kind) -> Option<Program> {
        match specialize(node, kind) {
            Ok(n) => Some(Program::new(&n)),
            Err(true) => Some(Program {
                ins: Box::default(),
                leaves: Box::default(),
                always: true,
            }),
            Err(false) => None,
        }
    }

    pub(crate) fn new(node: &Node) -> Program {
        let mut b = Builder {
            ins: Vec::new(),
            leaves: Vec::new(),
            labels: Vec::new(),
        };
        b.emit(node, Target::Accept, Target::Reject);
        let ins = b
            .ins
            .iter()
            .map(|&(leaf, t, f)| Ins {
                leaf,
                on_true: b.resolve(t),
                on_false: b.resolve(f),
            })
            .collect();
        Program {
            ins,
            leaves: b.leaves.into_boxed_slice(),
            always: false,
        }
    }

    #[inline]
    pub(crate) fn eval(&self, s: &Subject<'_>) -> bool {
        let mut pc = 0usize;
        loop {
            // Only an empty program has no instruction 0: a condition its kind decided.
            let Some(ins) = self.ins.get(pc) else {
                return self.always;
            };
            let Some(leaf) = self.leaves.get(ins.leaf as usize) else {
                return false;
            };
            let next = if leaf.eval(s) {
                ins.on_true
            } else {
                ins.on_false
            };
            match next {
                ACCEPT => return true,
                REJECT => return false,
                n => pc = n as usize,
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ins.len()
    }
}

#[cfg(test)]
mod tests {
    use peregrine_event::Event;
    use serde_yaml_ng::Value as Yaml;

    use super::*;
    use crate::cases::{EventSpec, Flags, build_event};
    use crate::error::At;

    fn node(cond: &str) -> Node {
        let yaml: Yaml = serde_yaml_ng::from_str(cond).unwrap();
        let at = At {
            set: "t".into(),
            rule: "r".into(),
            part: String::new(),
        };
        crate::rule::compile_node_for_tests(&yaml, &at)
    }

    fn ev(kind: Kind, path: &str, new_path: Option<&str>, flags: u32) -> Event {
        let mut spec = EventSpec::new(kind);
        spec.path = Some(path.into());
        spec.new_path = new_path.map(Into::into);
        spec.flags = Some(Flags(flags));
        build_event(&spec).unwrap()
    }

    const RELEASE_AGENT: &str = "{any: [{all: [{field: kind, op: eq, value: open}, {field: file.write, op: eq, value: true}, {field: file.basename, op: eq, value: release_agent}]}, {field: file.new_basename, op: eq, value: release_agent}]}";

    #[test]
    fn kind_decided_leaves_are_folded_away() {
        let n = node(RELEASE_AGENT);
        // open: `kind: open` is true and new_basename can never be present.
        assert_eq!(Program::for_kind(&n, Kind::Open).unwrap().len(), 2);
        // rename: the open branch is dead; only new_basename is left.
        assert_eq!(Program::for_kind(&n, Kind::Rename).unwrap().len(), 1);
        // exec: nothing can match.
        assert!(Program::for_kind(&n, Kind::Exec).is_none());
        // A condition the kind alone satisfies needs no test at all.
        let always = Program::for_kind(
            &node("{not: {field: kind, op: eq, value: exec}}"),
            Kind::Open,
        )
        .unwrap();
        assert_eq!(always.len(), 0);
        let e = ev(Kind::Open, "/x", None, 0);
        assert!(always.eval(&Subject::new(&e)));
        assert!(
            Program::for_kind(
                &node("{not: {field: kind, op: eq, value: exec}}"),
                Kind::Exec
            )
            .is_none()
        );
        // `kind` with string operators folds too.
        assert!(
            Program::for_kind(&node("{field: kind, op: prefix, value: sym}"), Kind::Open).is_none()
        );
    }

    #[test]
    fn specialised_programs_agree_with_the_tree() {
        let n = node(RELEASE_AGENT);
        let events = [
            ev(Kind::Open, "/a/release_agent", None, 1),
            ev(Kind::Open, "/a/release_agent", None, 0),
            ev(Kind::Open, "/a/other", None, 1),
            ev(Kind::Rename, "/a/x", Some("/b/release_agent"), 0),
            ev(Kind::Rename, "/a/release_agent", Some("/b/x"), 0),
            ev(Kind::Symlink, "/t", Some("/b/release_agent"), 0),
            ev(Kind::Unlink, "/a/release_agent", None, 0),
        ];
        for e in &events {
            let s = Subject::new(e);
            let tree = n.eval(&s);
            let program = Program::for_kind(&n, e.kind).is_some_and(|p| p.eval(&s));
            assert_eq!(program, tree, "{:?} {:?}", e.kind, e.detail);
        }
    }
}
