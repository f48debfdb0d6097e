//! Rule files: YAML in, compiled rules out.

use std::collections::{BTreeMap, HashSet};

use peregrine_event::Kind;
use peregrine_finding::{Evidence, IsoTime, MitreTag, ProcessDetails, RuntimeContext};
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

use crate::error::{At, RuleError};
use crate::field::{Field, FieldType, Subject, Val, edit_distance};
use crate::pred::{Leaf, LeafDef};
#[cfg(test)]
use crate::program::Program;

// ---------------------------------------------------------------------------------------------
// The YAML shape. Unknown keys are errors: a misspelt `exceptions` would otherwise silently
// leave a rule without its exceptions.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(default)]
    rules: Vec<RuleDef>,
    #[serde(default)]
    overrides: Vec<OverrideDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "type")]
    finding_type: String,
    severity: f64,
    #[serde(default)]
    mitre: Vec<MitreDef>,
    kinds: Vec<String>,
    condition: Yaml,
    #[serde(default)]
    exceptions: Vec<ExceptionDef>,
    #[serde(default)]
    context: BTreeMap<String, Yaml>,
    #[serde(default)]
    aggregate_by: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MitreDef {
    tactic: String,
    technique: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionDef {
    name: String,
    fields: Vec<String>,
    /// One operator per field; `eq` for every field when absent.
    #[serde(default)]
    ops: Option<Vec<String>>,
    values: Vec<Vec<Yaml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideDef {
    rule: String,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    exceptions: Vec<ExceptionDef>,
}

// ---------------------------------------------------------------------------------------------
// Compiled forms.

/// A condition tree.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Leaf(Box<Leaf>),
}

impl Node {
    /// Tree evaluation: used to explain a match; events are evaluated by the [`Program`].
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

    fn fields(&self, out: &mut Vec<Field>) {
        match self {
            Node::Leaf(l) => out.push(l.field),
            Node::Not(n) => n.fields(out),
            Node::All(c) | Node::Any(c) => c.iter().for_each(|n| n.fields(out)),
        }
    }
}

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

    fn fields(&self, out: &mut Vec<Field>) {
        for t in &self.tuples {
            out.extend(t.iter().map(|l| l.field));
        }
    }
}

macro_rules! targets {
    ($( $variant:ident = $name:literal, $ty:ident; )*) => {
        /// A `RuntimeContext` member a rule can fill.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Member { $($variant,)* }
        impl Member {
            const ALL: &'static [Member] = &[$(Member::$variant),*];
            fn name(self) -> &'static str { match self { $(Member::$variant => $name,)* } }
            fn ty(self) -> TargetType { match self { $(Member::$variant => TargetType::$ty,)* } }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetType {
    Str,
    List,
    Int,
    Process,
    Time,
}

targets! {
    ModifyingProcess = "modifyingProcess", Process;
    ModifiedAt = "modifiedAt", Time;
    ScriptPath = "scriptPath", Str;
    LibraryPath = "libraryPath", Str;
    LdPreloadValue = "ldPreloadValue", Str;
    SocketPath = "socketPath", Str;
    RuncBinaryPath = "runcBinaryPath", Str;
    ReleaseAgentPath = "releaseAgentPath", Str;
    MountSource = "mountSource", Str;
    MountTarget = "mountTarget", Str;
    FileSystemType = "fileSystemType", Str;
    Flags = "flags", List;
    ModuleName = "moduleName", Str;
    ModuleFilePath = "moduleFilePath", Str;
    ModuleSha256 = "moduleSha256", Str;
    ShellHistoryFilePath = "shellHistoryFilePath", Str;
    TargetProcess = "targetProcess", Process;
    AddressFamily = "addressFamily", Str;
    IanaProtocolNumber = "ianaProtocolNumber", Int;
    MemoryRegions = "memoryRegions", List;
    ToolName = "toolName", Str;
    ToolCategory = "toolCategory", Str;
    ServiceName = "serviceName", Str;
    CommandLineExample = "commandLineExample", Str;
    ThreatFilePath = "threatFilePath", Str;
    FileOperation = "fileOperation", Str;
    FilePath = "filePath", Str;
    RelatedFilePaths = "relatedFilePaths", List;
}

#[derive(Clone, Debug)]
enum Source {
    /// Candidate fields, best first: the first one a matched predicate was about (or derived
    /// from the same field), else the first one the event has. With a filter (one compiled
    /// predicate per candidate), only candidates whose value passes it are considered.
    Fields(Vec<Field>, Option<Vec<Leaf>>),
    Literal(Yaml),
}

#[derive(Clone, Debug)]
pub(crate) struct ContextEntry {
    target: Member,
    source: Source,
}

/// A rendered context value.
enum CtxVal {
    Str(String),
    List(Vec<String>),
    Int(i32),
    Process(Box<ProcessDetails>),
    Time(IsoTime),
}

fn render_str(v: Val<'_>) -> Option<String> {
    Some(match v {
        Val::Missing | Val::Process(_) | Val::Time(_) => return None,
        Val::Str(s) => s.to_owned(),
        Val::Int(i) => i.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Ip(ip) => ip.to_string(),
        Val::List(l) => l.iter().collect::<Vec<_>>().join(" "),
        Val::Present => "true".to_owned(),
    })
}

impl ContextEntry {
    fn fill(&self, s: &Subject<'_>, matched: &[Field], ctx: &mut RuntimeContext) {
        let ty = self.target.ty();
        let value = match &self.source {
            Source::Literal(y) => match (ty, y) {
                (TargetType::Str, Yaml::String(x)) => Some(CtxVal::Str(x.clone())),
                (TargetType::List, Yaml::String(x)) => Some(CtxVal::List(vec![x.clone()])),
                (TargetType::List, Yaml::Sequence(xs)) => Some(CtxVal::List(
                    xs.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect(),
                )),
                (TargetType::Int, Yaml::Number(n)) => n
                    .as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .map(CtxVal::Int),
                _ => None,
            },
            Source::Fields(fields, filter) => {
                let eligible =
                    |i: usize, f: Field| match filter.as_ref().and_then(|leaves| leaves.get(i)) {
                        Some(leaf) => leaf.eval(s),
                        None => !matches!(s.get(f), Val::Missing),
                    };
                let candidates = || {
                    fields
                        .iter()
                        .enumerate()
                        .filter(|(i, f)| eligible(*i, **f))
                        .map(|(_, f)| f)
                };
                let chosen = candidates()
                    .find(|f| matched.iter().any(|m| m.origin() == f.origin()))
                    .or_else(|| candidates().next());
                chosen.and_then(|f| {
                    let v = s.get(*f);
                    match (ty, v) {
                        (TargetType::Process, Val::Process(a)) => {
                            Some(CtxVal::Process(Box::new(ProcessDetails::from_ancestor(a))))
                        }
                        (TargetType::Time, Val::Time(t)) => Some(CtxVal::Time(t.into())),
                        (TargetType::Int, Val::Int(i)) => i32::try_from(i).ok().map(CtxVal::Int),
                        (TargetType::List, Val::List(l)) => {
                            Some(CtxVal::List(l.iter().map(str::to_owned).collect()))
                        }
                        (TargetType::List, v) => render_str(v).map(|x| CtxVal::List(vec![x])),
                        (TargetType::Str, v) => render_str(v).map(CtxVal::Str),
                        _ => None,
                    }
                })
            }
        };
        let Some(value) = value else { return };
        match (self.target, value) {
            (Member::ModifyingProcess, CtxVal::Process(p)) => ctx.modifying_process = Some(p),
            (Member::TargetProcess, CtxVal::Process(p)) => ctx.target_process = Some(p),
            (Member::ModifiedAt, CtxVal::Time(t)) => ctx.modified_at = Some(t),
            (Member::IanaProtocolNumber, CtxVal::Int(i)) => ctx.iana_protocol_number = Some(i),
            (Member::Flags, CtxVal::List(l)) => ctx.flags = l,
            (Member::MemoryRegions, CtxVal::List(l)) => ctx.memory_regions = l,
            (Member::RelatedFilePaths, CtxVal::List(l)) => {
                for p in l {
                    ctx.add_related_file_path(&p);
                }
            }
            (t, CtxVal::Str(v)) => {
                let slot = match t {
                    Member::ScriptPath => &mut ctx.script_path,
                    Member::LibraryPath => &mut ctx.library_path,
                    Member::LdPreloadValue => &mut ctx.ld_preload_value,
                    Member::SocketPath => &mut ctx.socket_path,
                    Member::RuncBinaryPath => &mut ctx.runc_binary_path,
                    Member::ReleaseAgentPath => &mut ctx.release_agent_path,
                    Member::MountSource => &mut ctx.mount_source,
                    Member::MountTarget => &mut ctx.mount_target,
                    Member::FileSystemType => &mut ctx.file_system_type,
                    Member::ModuleName => &mut ctx.module_name,
                    Member::ModuleFilePath => &mut ctx.module_file_path,
                    Member::ModuleSha256 => &mut ctx.module_sha256,
                    Member::ShellHistoryFilePath => &mut ctx.shell_history_file_path,
                    Member::AddressFamily => &mut ctx.address_family,
                    Member::ToolName => &mut ctx.tool_name,
                    Member::ToolCategory => &mut ctx.tool_category,
                    Member::ServiceName => &mut ctx.service_name,
                    Member::CommandLineExample => &mut ctx.command_line_example,
                    Member::ThreatFilePath => &mut ctx.threat_file_path,
                    Member::FileOperation => &mut ctx.file_operation,
                    Member::FilePath => &mut ctx.file_path,
                    _ => return,
                };
                *slot = Some(v);
            }
            _ => {}
        }
    }
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub(crate) set: String,
    pub(crate) id: String,
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
    pub fn from_yaml(name: &str, yaml: &str) -> Result<RuleSet, RuleError> {
        let file: FileDef = serde_yaml_ng::from_str(yaml).map_err(|e| RuleError::Yaml {
            set: name.to_owned(),
            message: e.to_string(),
        })?;
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
            match compile_rule(name, def) {
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

fn compile_rule(set: &str, def: RuleDef) -> Result<Rule, RuleError> {
    let at = |part: &str| At {
        set: set.to_owned(),
        rule: def.id.clone(),
        part: part.to_owned(),
    };
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
        if let Source::Fields(fs, _) = &entry.source {
            check_fields_present(fs, &kinds, &at(&format!("context.{name}")))?;
        }
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
fn compile_node(v: &Yaml, at: &At, next: &mut u32) -> Result<Node, RuleError> {
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
    let key = |k: &Yaml| k.as_str().map(str::to_owned).unwrap_or_else(|| describe(k));
    if m.contains_key("field") || m.contains_key("op") {
        let mut field = None;
        let mut op = None;
        let mut value = None;
        let mut values = None;
        let mut ignore_case = false;
        for (k, val) in m {
            match k.as_str() {
                Some("field") => field = val.as_str(),
                Some("op") => op = val.as_str(),
                Some("value") => value = Some(val),
                Some("values") => values = Some(val),
                Some("ignore_case") => match val {
                    Yaml::Bool(b) => ignore_case = *b,
                    other => {
                        return Err(bad(format!(
                            "`ignore_case` must be true or false, got {}",
                            describe(other)
                        )));
                    }
                },
                _ => {
                    return Err(bad(format!(
                        "unknown key `{}` in a predicate; a predicate has field, op, value or values, and ignore_case",
                        key(k)
                    )));
                }
            }
        }
        let (Some(field), Some(op)) = (field, op) else {
            return Err(bad(
                "a predicate needs both `field` and `op` (as strings)".into()
            ));
        };
        let mut leaf = Leaf::compile(
            &LeafDef {
                field,
                op,
                value,
                values,
                ignore_case,
            },
            at,
        )?;
        leaf.order = *next;
        *next += 1;
        return Ok(Node::Leaf(Box::new(leaf)));
    }
    if m.len() != 1 {
        let keys: Vec<String> = m.keys().map(key).collect();
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
            key(k)
        ))),
    }
}

fn describe(v: &Yaml) -> String {
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

fn compile_exceptions(defs: &[ExceptionDef], at: &At) -> Result<Vec<Exception>, RuleError> {
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

fn compile_context(name: &str, spec: &Yaml, at: &At) -> Result<ContextEntry, RuleError> {
    let target = Member::ALL
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or_else(|| RuleError::UnknownContextTarget {
            at: Box::new(at.clone()),
            target: name.to_owned(),
            suggestion: Member::ALL
                .iter()
                .map(|t| (edit_distance(name, t.name()), t.name()))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d)
                .map(|(_, n)| n),
        })?;
    let bad = |reason: String| RuleError::BadContext {
        at: Box::new(at.clone()),
        reason,
    };
    let ty = target.ty();
    let field = |n: &str| {
        Field::parse(n).ok_or_else(|| RuleError::UnknownField {
            at: Box::new(at.clone()),
            field: n.to_owned(),
            suggestion: Field::suggest(n),
        })
    };
    let field_list = |v: &Yaml| -> Result<Vec<Field>, RuleError> {
        match v {
            Yaml::String(n) => Ok(vec![field(n)?]),
            Yaml::Sequence(items) if !items.is_empty() => items
                .iter()
                .map(|i| match i {
                    Yaml::String(n) => field(n),
                    other => Err(bad(format!(
                        "field names must be strings, got {}",
                        describe(other)
                    ))),
                })
                .collect(),
            other => Err(bad(format!(
                "expected a field name or a list of them, got {}",
                describe(other)
            ))),
        }
    };
    let source = match spec {
        Yaml::String(_) | Yaml::Sequence(_) => Source::Fields(field_list(spec)?, None),
        Yaml::Mapping(m) if m.contains_key("fields") => {
            let mut fields = None;
            let mut op = None;
            let mut value = None;
            let mut values = None;
            let mut ignore_case = false;
            for (k, v) in m {
                match k.as_str() {
                    Some("fields") => fields = Some(field_list(v)?),
                    Some("op") => op = v.as_str(),
                    Some("value") => value = Some(v),
                    Some("values") => values = Some(v),
                    Some("ignore_case") => match v {
                        Yaml::Bool(b) => ignore_case = *b,
                        other => {
                            return Err(bad(format!(
                                "`ignore_case` must be true or false, got {}",
                                describe(other)
                            )));
                        }
                    },
                    _ => {
                        return Err(bad(format!(
                            "unknown key `{}`; a filtered source has fields, op, value or values, and ignore_case",
                            describe(k)
                        )));
                    }
                }
            }
            let fields = fields.unwrap_or_default();
            let Some(op) = op else {
                return Err(bad(
                    "a filtered source needs `op` (and a value unless it is `exists`)".into(),
                ));
            };
            let filter = fields
                .iter()
                .map(|f| {
                    Leaf::compile(
                        &LeafDef {
                            field: f.name(),
                            op,
                            value,
                            values,
                            ignore_case,
                        },
                        at,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Source::Fields(fields, Some(filter))
        }
        Yaml::Mapping(m) if m.len() == 1 && m.contains_key("value") => {
            let v = m.get("value").cloned().unwrap_or(Yaml::Null);
            let ok = match (ty, &v) {
                (TargetType::Str, Yaml::String(_)) => true,
                (TargetType::List, Yaml::String(_)) => true,
                (TargetType::List, Yaml::Sequence(xs)) => xs.iter().all(|x| x.as_str().is_some()),
                (TargetType::Int, Yaml::Number(n)) => {
                    n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
                }
                _ => false,
            };
            if !ok {
                return Err(bad(format!(
                    "a literal {describe} does not fit `{name}`",
                    describe = describe(&v)
                )));
            }
            Source::Literal(v)
        }
        other => {
            return Err(bad(format!(
                "give a field name, a list of field names (best first), `{{fields: [...], op, values}}` to keep only values that match, or `{{value: ...}}` for a literal; got {}",
                describe(other)
            )));
        }
    };
    if let Source::Fields(fs, _) = &source {
        for f in fs {
            let ok = match ty {
                TargetType::Process => f.ty() == FieldType::Process,
                TargetType::Time => f.ty() == FieldType::Time,
                TargetType::Int => f.ty() == FieldType::Int,
                TargetType::Str | TargetType::List => {
                    matches!(
                        f.ty(),
                        FieldType::Str
                            | FieldType::StrList
                            | FieldType::Int
                            | FieldType::Bool
                            | FieldType::Ip
                    )
                }
            };
            if !ok {
                return Err(bad(format!(
                    "`{}` is a {}, which does not fit `{name}`",
                    f.name(),
                    f.ty().name()
                )));
            }
        }
    }
    Ok(ContextEntry { target, source })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use peregrine_event::{Detail, Event, ExecInfo, FileInfo, Kind, Process, Timestamp};

    use super::*;

    fn ev(kind: Kind, uid: u32, path: &str, flags: u32) -> Event {
        Event {
            kind,
            time: Timestamp::default(),
            tid: 0,
            process: Arc::new(Process {
                uid,
                exe: "/bin/x".into(),
                ..Process::default()
            }),
            container: None,
            detail: if kind == Kind::Exec {
                Detail::Exec(ExecInfo::default())
            } else {
                Detail::File(FileInfo {
                    path: path.into(),
                    flags,
                    ..FileInfo::default()
                })
            },
        }
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
