//! Context: what a rule adds to a finding's `service.runtimeDetails.context` (GuardDuty's
//! `RuntimeContext`), from event fields or literals.

use peregrine_finding::{IsoTime, ProcessDetails, RuntimeContext};
use serde_yaml_ng::Value as Yaml;

use crate::error::{At, RuleError};
use crate::field::{Field, FieldType, Subject, Val, edit_distance};
use crate::pred::Leaf;
use crate::rule::predicate::PredicateMap;
use crate::rule::schema::describe;

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

pub(super) fn render_str(v: Val<'_>) -> Option<String> {
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
    /// The event fields this entry reads (none for a literal).
    pub(super) fn fields(&self) -> &[Field] {
        match &self.source {
            Source::Fields(fs, _) => fs,
            Source::Literal(_) => &[],
        }
    }

    pub(super) fn fill(&self, s: &Subject<'_>, matched: &[Field], ctx: &mut RuntimeContext) {
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
                let candidates = || fields.iter().enumerate().filter(|(i, f)| eligible(*i, **f));
                let chosen = candidates()
                    .find(|(_, f)| matched.iter().any(|m| m.origin() == f.origin()))
                    .or_else(|| candidates().next());
                // A filtered candidate gives what its filter matched: the element of a list,
                // or a regex's `value` group.
                let extracted = chosen.and_then(|(i, _)| {
                    let leaf = filter.as_ref()?.get(i)?;
                    matches!(ty, TargetType::Str | TargetType::List)
                        .then(|| leaf.extract(s))
                        .flatten()
                });
                if let Some(x) = extracted {
                    Some(match ty {
                        TargetType::List => CtxVal::List(vec![x]),
                        _ => CtxVal::Str(x),
                    })
                } else {
                    chosen.and_then(|(_, f)| {
                        let v = s.get(*f);
                        match (ty, v) {
                            (TargetType::Process, Val::Process(a)) => {
                                Some(CtxVal::Process(Box::new(ProcessDetails::from_ancestor(a))))
                            }
                            (TargetType::Time, Val::Time(t)) => Some(CtxVal::Time(t.into())),
                            (TargetType::Int, Val::Int(i)) => {
                                i32::try_from(i).ok().map(CtxVal::Int)
                            }
                            (TargetType::List, Val::List(l)) => {
                                Some(CtxVal::List(l.iter().map(str::to_owned).collect()))
                            }
                            (TargetType::List, v) => render_str(v).map(|x| CtxVal::List(vec![x])),
                            (TargetType::Str, v) => render_str(v).map(CtxVal::Str),
                            _ => None,
                        }
                    })
                }
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

pub(super) fn compile_context(name: &str, spec: &Yaml, at: &At) -> Result<ContextEntry, RuleError> {
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
            let p = PredicateMap::parse(m, "fields").map_err(bad)?;
            let fields = match p.subject {
                Some(v) => field_list(v)?,
                None => Vec::new(),
            };
            let Some(op) = p.op else {
                return Err(bad(
                    "a filtered source needs `op` (and a value unless it is `exists`)".into(),
                ));
            };
            let filter = fields
                .iter()
                .map(|f| p.compile(f.name(), op, at))
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
