//! Leaf predicates: `{field, op, value(s)}` compiled to a typed test.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;

use peregrine_event::Kind;
use peregrine_finding::Evidence;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::error::{At, RuleError};
use crate::field::{Field, FieldType, Subject, Val, closed_values};
use crate::matcher::{PatternKind, StrMatcher};
use crate::strset::FxHasher;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Neq,
    In,
    Prefix,
    Suffix,
    Contains,
    Glob,
    Regex,
    Exists,
    Gt,
    Gte,
    Lt,
    Lte,
    BitsAny,
    BitsAll,
}

pub(crate) const OP_NAMES: &str = "eq, neq, in, prefix, suffix, contains, glob, regex, exists, gt, gte, lt, lte, bits_any, bits_all";

impl Op {
    const ALL: [Op; 15] = [
        Op::Eq,
        Op::Neq,
        Op::In,
        Op::Prefix,
        Op::Suffix,
        Op::Contains,
        Op::Glob,
        Op::Regex,
        Op::Exists,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::BitsAny,
        Op::BitsAll,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::In => "in",
            Op::Prefix => "prefix",
            Op::Suffix => "suffix",
            Op::Contains => "contains",
            Op::Glob => "glob",
            Op::Regex => "regex",
            Op::Exists => "exists",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::BitsAny => "bits_any",
            Op::BitsAll => "bits_all",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == s)
    }

    fn allowed(ty: FieldType) -> &'static [Op] {
        use Op::*;
        match ty {
            FieldType::Str | FieldType::StrList => {
                &[Eq, Neq, In, Prefix, Suffix, Contains, Glob, Regex, Exists]
            }
            FieldType::Int => &[Eq, Neq, In, Gt, Gte, Lt, Lte, BitsAny, BitsAll, Exists],
            FieldType::Bool => &[Eq, Neq, Exists],
            FieldType::Ip => &[Eq, Neq, In, Exists],
            FieldType::Presence => &[Exists],
            FieldType::Process | FieldType::Time => &[],
        }
    }
}

type FxSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

#[derive(Clone, Debug)]
enum Test {
    Exists,
    /// `exists` with `value: false`: the event lacks the field. Exceptions have no `not`, so
    /// this is how one is scoped to host processes (`container` absent).
    Absent,
    /// `kind` eq/in/neq: compared as the enum, not its name.
    Kind {
        kinds: Box<[Kind]>,
        negate: bool,
    },
    /// `neq` is a negated `eq`: true when the field is present and no value matches.
    Str {
        m: Box<StrMatcher>,
        negate: bool,
    },
    Int(IntTest),
    Bool(bool),
    Ip {
        set: FxSet<IpAddr>,
        negate: bool,
    },
}

#[derive(Clone, Debug)]
enum IntTest {
    Eq(i64),
    Ne(i64),
    In(FxSet<i64>),
    Gt(i64),
    Gte(i64),
    Lt(i64),
    Lte(i64),
    BitsAny(i64),
    BitsAll(i64),
}

impl IntTest {
    #[inline]
    fn test(&self, v: i64) -> bool {
        match self {
            IntTest::Eq(x) => v == *x,
            IntTest::Ne(x) => v != *x,
            IntTest::In(s) => s.contains(&v),
            IntTest::Gt(x) => v > *x,
            IntTest::Gte(x) => v >= *x,
            IntTest::Lt(x) => v < *x,
            IntTest::Lte(x) => v <= *x,
            IntTest::BitsAny(x) => v & x != 0,
            IntTest::BitsAll(x) => v & x == *x,
        }
    }
}

/// A compiled `{field, op, value(s)}`.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    pub(crate) field: Field,
    /// Position in the rule as written; evidence is reported in this order even though the
    /// engine may test cheaper predicates first.
    pub(crate) order: u32,
    op: Op,
    test: Test,
    /// The value(s) as the rule gave them, for evidence.
    expected: Json,
}

/// A leaf as written in YAML, before typing.
pub(crate) struct LeafDef<'a> {
    pub(crate) field: &'a str,
    pub(crate) op: &'a str,
    /// `value: x` or `values: [..]`.
    pub(crate) value: Option<&'a Yaml>,
    pub(crate) values: Option<&'a Yaml>,
    pub(crate) ignore_case: bool,
}

/// Lists larger than this are summarised in evidence rather than copied into every finding.
const EVIDENCE_LIST_MAX: usize = 32;

fn yaml_kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// An integer from YAML: a number, or a string in decimal, `0o` octal, `0x` hex or `0b` binary
/// (octal strings keep modes and flags readable: `"0o4000"` for setuid).
pub(crate) fn parse_int(v: &Yaml) -> Result<i64, String> {
    match v {
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(u) = n.as_u64() {
                i64::try_from(u).map_err(|_| format!("{u} is too large"))
            } else {
                Err(format!("{n} is not an integer"))
            }
        }
        Yaml::String(s) => {
            let t = s.trim().replace('_', "");
            let (neg, t) = match t.strip_prefix('-') {
                Some(rest) => (true, rest.to_owned()),
                None => (false, t),
            };
            let lower = t.to_ascii_lowercase();
            let parsed = if let Some(d) = lower.strip_prefix("0o") {
                i64::from_str_radix(d, 8)
            } else if let Some(d) = lower.strip_prefix("0x") {
                i64::from_str_radix(d, 16)
            } else if let Some(d) = lower.strip_prefix("0b") {
                i64::from_str_radix(d, 2)
            } else {
                lower.parse::<i64>()
            };
            parsed
                .map(|i| if neg { -i } else { i })
                .map_err(|_| format!("{s:?} is not an integer"))
        }
        other => Err(format!("expected an integer, got {}", yaml_kind(other))),
    }
}

impl Leaf {
    pub(crate) fn compile(def: &LeafDef<'_>, at: &At) -> Result<Leaf, RuleError> {
        let field = Field::parse(def.field).ok_or_else(|| RuleError::UnknownField {
            at: Box::new(at.clone()),
            field: def.field.to_owned(),
            suggestion: Field::suggest(def.field),
        })?;
        let op = Op::parse(def.op).ok_or_else(|| RuleError::UnknownOperator {
            at: Box::new(at.clone()),
            field: def.field.to_owned(),
            op: def.op.to_owned(),
            known: OP_NAMES,
        })?;
        let ty = field.ty();
        if matches!(ty, FieldType::Process | FieldType::Time) {
            return Err(RuleError::ContextOnlyField {
                at: Box::new(at.clone()),
                field: def.field.to_owned(),
            });
        }
        let allowed = Op::allowed(ty);
        if !allowed.contains(&op) {
            return Err(RuleError::OperatorNotForType {
                at: Box::new(at.clone()),
                field: def.field.to_owned(),
                op: def.op.to_owned(),
                ty: ty.name(),
                allowed: allowed
                    .iter()
                    .map(|o| o.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let bad = |reason: String| RuleError::BadValue {
            at: Box::new(at.clone()),
            field: def.field.to_owned(),
            op: def.op.to_owned(),
            reason,
        };

        // The values, as a list, and whether the rule gave a list.
        let values: Vec<&Yaml> = match (def.value, def.values, op) {
            (Some(_), Some(_), _) => return Err(bad("give `value` or `values`, not both".into())),
            (None, None, Op::Exists) => Vec::new(),
            // `value: true` is plain `exists`, `value: false` its absence. An exception's tuple
            // always gives a value, and has no `not` to wrap it in.
            (Some(Yaml::Bool(_)), None, Op::Exists) => Vec::new(),
            (Some(_), _, Op::Exists) | (_, Some(_), Op::Exists) => {
                return Err(bad(
                    "`exists` takes no value, or `true` or `false` (absent); in a condition, \
                     `not` also expresses absence"
                        .into(),
                ));
            }
            (None, None, _) => {
                return Err(bad(
                    "a value is required (`value: ...`, or `values: [...]`)".into(),
                ));
            }
            (Some(Yaml::Sequence(seq)), None, Op::In) | (None, Some(Yaml::Sequence(seq)), _) => {
                seq.iter().collect()
            }
            (None, Some(other), _) => {
                return Err(bad(format!(
                    "`values` must be a list, got {}",
                    yaml_kind(other)
                )));
            }
            (Some(v), None, _) => vec![v],
        };
        if values.is_empty() && op != Op::Exists {
            return Err(bad("the list of values is empty".into()));
        }
        let multi_ok = matches!(
            op,
            Op::In | Op::Prefix | Op::Suffix | Op::Contains | Op::Glob | Op::Regex
        );
        if values.len() > 1 && !multi_ok {
            return Err(bad(format!(
                "takes one value, got {}; use `in` to compare against several",
                values.len()
            )));
        }
        if def.ignore_case && !matches!(ty, FieldType::Str | FieldType::StrList) {
            return Err(bad("`ignore_case` only applies to string fields".into()));
        }

        let (test, expected) = match ty {
            FieldType::Str | FieldType::StrList => {
                let mut strs = Vec::with_capacity(values.len());
                for v in &values {
                    match v {
                        Yaml::String(s) => strs.push(s.clone()),
                        other => {
                            return Err(bad(format!(
                                "expected a string, got {} (quote it: \"{}\")",
                                yaml_kind(other),
                                serde_yaml_ng::to_string(other).unwrap_or_default().trim()
                            )));
                        }
                    }
                }
                if let Some(known) = closed_values(field)
                    && matches!(op, Op::Eq | Op::Neq | Op::In)
                {
                    for s in &strs {
                        let ok = known.iter().any(|k| {
                            if def.ignore_case {
                                k.eq_ignore_ascii_case(s)
                            } else {
                                k == s
                            }
                        });
                        if !ok {
                            return Err(bad(format!(
                                "{s:?} is not a value `{}` can take; it is one of: {}",
                                def.field,
                                known.join(", ")
                            )));
                        }
                    }
                }
                let kind = match op {
                    Op::Eq | Op::Neq | Op::In => PatternKind::Exact,
                    Op::Prefix => PatternKind::Prefix,
                    Op::Suffix => PatternKind::Suffix,
                    Op::Contains => PatternKind::Contains,
                    Op::Glob => PatternKind::Glob,
                    Op::Regex => PatternKind::Regex,
                    _ => PatternKind::Exact,
                };
                let test = if op == Op::Exists {
                    Test::Exists
                } else if field == Field::Kind && kind == PatternKind::Exact {
                    let kinds = Kind::ALL
                        .iter()
                        .copied()
                        .filter(|k| {
                            strs.iter().any(|s| {
                                if def.ignore_case {
                                    k.name().eq_ignore_ascii_case(s)
                                } else {
                                    k.name() == s
                                }
                            })
                        })
                        .collect();
                    Test::Kind {
                        kinds,
                        negate: op == Op::Neq,
                    }
                } else {
                    let m = StrMatcher::new(kind, &strs, def.ignore_case)
                        .map_err(|e| bad(e.to_string()))?;
                    Test::Str {
                        m: Box::new(m),
                        negate: op == Op::Neq,
                    }
                };
                (
                    test,
                    list_json(strs.into_iter().map(Json::String).collect(), op),
                )
            }
            FieldType::Int => {
                let mut ints = Vec::with_capacity(values.len());
                for v in &values {
                    ints.push(parse_int(v).map_err(&bad)?);
                }
                let first = ints.first().copied().unwrap_or(0);
                let t = match op {
                    Op::Exists => None,
                    Op::Eq => Some(IntTest::Eq(first)),
                    Op::Neq => Some(IntTest::Ne(first)),
                    Op::In => Some(IntTest::In(ints.iter().copied().collect())),
                    Op::Gt => Some(IntTest::Gt(first)),
                    Op::Gte => Some(IntTest::Gte(first)),
                    Op::Lt => Some(IntTest::Lt(first)),
                    Op::Lte => Some(IntTest::Lte(first)),
                    Op::BitsAny | Op::BitsAll => {
                        if first <= 0 {
                            return Err(bad(format!("a bit mask must be positive, got {first}")));
                        }
                        Some(if op == Op::BitsAny {
                            IntTest::BitsAny(first)
                        } else {
                            IntTest::BitsAll(first)
                        })
                    }
                    _ => None,
                };
                let test = t.map_or(Test::Exists, Test::Int);
                (
                    test,
                    list_json(ints.into_iter().map(Json::from).collect(), op),
                )
            }
            FieldType::Bool => {
                let b = match values.first() {
                    None => None,
                    Some(Yaml::Bool(b)) => Some(*b),
                    Some(other) => {
                        return Err(bad(format!(
                            "expected true or false, got {}",
                            yaml_kind(other)
                        )));
                    }
                };
                let test = match b {
                    None => Test::Exists,
                    Some(b) => Test::Bool(if op == Op::Neq { !b } else { b }),
                };
                (test, b.map_or(Json::Null, Json::Bool))
            }
            FieldType::Ip => {
                let mut ips = Vec::with_capacity(values.len());
                for v in &values {
                    match v {
                        Yaml::String(s) => ips.push(
                            s.parse::<IpAddr>()
                                .map_err(|_| bad(format!("{s:?} is not an IP address")))?,
                        ),
                        other => {
                            return Err(bad(format!(
                                "expected an IP address string, got {}",
                                yaml_kind(other)
                            )));
                        }
                    }
                }
                let test = if op == Op::Exists {
                    Test::Exists
                } else {
                    Test::Ip {
                        set: ips.iter().copied().collect(),
                        negate: op == Op::Neq,
                    }
                };
                (
                    test,
                    list_json(
                        ips.into_iter()
                            .map(|ip| Json::String(ip.to_string()))
                            .collect(),
                        op,
                    ),
                )
            }
            FieldType::Presence | FieldType::Process | FieldType::Time => {
                (Test::Exists, Json::Null)
            }
        };
        let (test, expected) = match (op, def.value) {
            (Op::Exists, Some(Yaml::Bool(false))) => (Test::Absent, Json::Bool(false)),
            (Op::Exists, Some(Yaml::Bool(true))) => (Test::Exists, Json::Bool(true)),
            _ => (test, expected),
        };
        Ok(Leaf {
            field,
            order: 0,
            op,
            test,
            expected,
        })
    }

    /// A rough relative cost of evaluating this leaf, to test cheap predicates first.
    pub(crate) fn cost(&self) -> u32 {
        let per_value = match &self.test {
            Test::Exists | Test::Absent | Test::Kind { .. } | Test::Bool(_) | Test::Int(_) => 1,
            Test::Ip { .. } => 2,
            Test::Str { m, .. } => m.cost(),
        };
        let field = match self.field.ty() {
            FieldType::StrList => 4,
            _ if self.field == Field::ProcessCmdline => 20,
            _ => 1,
        };
        per_value * field
    }

    /// The leaf's value for every event of `kind`, when the kind alone decides it: a test on
    /// `kind` itself, or a field events of that kind never carry (always missing, so false).
    pub(crate) fn constant_for(&self, kind: Kind) -> Option<bool> {
        if self.field == Field::Kind {
            return Some(match &self.test {
                Test::Kind { kinds, negate } => kinds.contains(&kind) != *negate,
                _ => self.test_val(Val::Str(kind.name())),
            });
        }
        // A field the kind never carries is missing: false for every test but absence.
        (!self.field.available_for(kind)).then(|| self.test_val(Val::Missing))
    }

    #[inline]
    pub(crate) fn eval(&self, s: &Subject<'_>) -> bool {
        if let Test::Kind { kinds, negate } = &self.test {
            return kinds.contains(&s.ev.kind) != *negate;
        }
        self.test_val(s.get(self.field))
    }

    #[inline]
    fn test_val(&self, v: Val<'_>) -> bool {
        match (&self.test, v) {
            (Test::Exists, Val::Missing) => false,
            (Test::Exists, _) => true,
            (Test::Absent, v) => matches!(v, Val::Missing),
            (_, Val::Missing) => false,
            (Test::Kind { kinds, negate }, Val::Str(name)) => {
                kinds.iter().any(|k| k.name() == name) != *negate
            }
            (Test::Str { m, negate }, Val::Str(s)) => m.is_match(s) != *negate,
            (Test::Str { m, negate }, Val::List(l)) => l.iter().any(|s| m.is_match(s)) != *negate,
            (Test::Int(t), Val::Int(i)) => t.test(i),
            (Test::Bool(b), Val::Bool(x)) => *b == x,
            (Test::Ip { set, negate }, Val::Ip(ip)) => set.contains(&ip) != *negate,
            // Unreachable: compilation only pairs a test with a field of its type.
            _ => false,
        }
    }

    /// The value a context entry takes from this leaf's field, when the leaf holds: for a list,
    /// the first element that matches (not the whole list); for `regex`, the group named
    /// `value` when the pattern has one. `None` when the leaf does not hold.
    pub(crate) fn extract(&self, s: &Subject<'_>) -> Option<String> {
        match (&self.test, s.get(self.field)) {
            (Test::Str { m, negate: false }, Val::Str(x)) => m.is_match(x).then(|| m.extract(x)),
            (Test::Str { m, negate: false }, Val::List(l)) => {
                l.iter().find(|x| m.is_match(x)).map(|x| m.extract(x))
            }
            _ => None,
        }
    }

    /// The evidence for this leaf, which evaluated to `held` in a rule that fired. A leaf that
    /// held under a `not` is reported with its operator prefixed by `not `.
    pub(crate) fn evidence(&self, s: &Subject<'_>, held: bool) -> Evidence {
        let v = s.get(self.field);
        let mut expected = self.expected.clone();
        let actual = match (&self.test, v) {
            (Test::Str { m, negate: false }, Val::Str(x)) if held => {
                if let Some(p) = m.explain(x) {
                    expected = Json::String(p);
                }
                Json::String(x.to_owned())
            }
            (Test::Str { m, negate: false }, Val::List(l)) if held => {
                // The element that matched, not the whole argv.
                match l.iter().find(|x| m.is_match(x)) {
                    Some(x) => {
                        if let Some(p) = m.explain(x) {
                            expected = Json::String(p);
                        }
                        Json::String(x.to_owned())
                    }
                    None => val_json(v),
                }
            }
            _ => val_json(v),
        };
        let operator = if held {
            self.op.name().to_owned()
        } else {
            format!("not {}", self.op.name())
        };
        Evidence {
            field: self.field.name().to_owned(),
            operator,
            expected,
            actual,
        }
    }
}

fn list_json(mut items: Vec<Json>, op: Op) -> Json {
    match op {
        Op::In if items.len() > EVIDENCE_LIST_MAX => {
            Json::String(format!("<{} values>", items.len()))
        }
        Op::In | Op::Prefix | Op::Suffix | Op::Contains | Op::Glob | Op::Regex
            if items.len() > 1 =>
        {
            Json::Array(items)
        }
        _ => items.pop().unwrap_or(Json::Null),
    }
}

/// An event value as JSON, for evidence.
pub(crate) fn val_json(v: Val<'_>) -> Json {
    match v {
        Val::Missing => Json::Null,
        Val::Str(s) => Json::String(s.to_owned()),
        Val::Int(i) => Json::from(i),
        Val::Bool(b) => Json::Bool(b),
        Val::Ip(ip) => Json::String(ip.to_string()),
        Val::List(l) => Json::Array(l.iter().map(|s| Json::String(s.to_owned())).collect()),
        Val::Present => Json::Bool(true),
        Val::Process(a) => Json::String(a.exe.clone()),
        Val::Time(t) => Json::String(t.to_rfc3339_millis()),
    }
}
