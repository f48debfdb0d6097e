//! The closed, typed set of event fields rules can use. A field name is resolved to a
//! [`Field`] once when the rule compiles; per event, reading a field is a `match` and a borrow,
//! with no string lookup and no allocation (except `process.cmdline`, built at most once per
//! event and only when a rule reads it).

use std::cell::OnceCell;
use std::net::IpAddr;

use peregrine_event::{Ancestor, Event, Family, Kind, KindFamily, NewBinaryEvidence, Timestamp};

/// What a field holds, which decides the operators it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Str,
    /// A list of strings; a predicate matches if any element does.
    StrList,
    Int,
    Bool,
    Ip,
    /// Only `exists`: whether the event has it at all (`container`).
    Presence,
    /// A process record; only for `context` (e.g. `modifyingProcess`).
    Process,
    /// A time; only for `context` (e.g. `modifiedAt`).
    Time,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Str => "string",
            FieldType::StrList => "list of strings",
            FieldType::Int => "integer",
            FieldType::Bool => "boolean",
            FieldType::Ip => "IP address",
            FieldType::Presence => "presence",
            FieldType::Process => "process",
            FieldType::Time => "time",
        }
    }
}

/// Which event kinds carry a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    All,
    Exec,
    Fork,
    Exit,
    /// open, rename, link, symlink, unlink, chmod
    File,
    /// rename, link, symlink: the kinds with a second path
    FileNew,
    Connect,
    IoUring,
    CompatSyscall,
}

impl Scope {
    pub(crate) fn has(self, kind: Kind) -> bool {
        match self {
            Scope::All => true,
            Scope::Exec => kind == Kind::Exec,
            Scope::Fork => kind == Kind::Fork,
            Scope::Exit => kind == Kind::Exit,
            Scope::File => kind.family() == KindFamily::File,
            Scope::FileNew => matches!(kind, Kind::Rename | Kind::Link | Kind::Symlink),
            Scope::Connect => kind == Kind::Connect,
            Scope::IoUring => kind == Kind::IoUring,
            Scope::CompatSyscall => kind == Kind::CompatSyscall,
        }
    }
}

macro_rules! fields {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $ty:ident, $scope:ident, $origin:ident; )*) => {
        /// A field rules can read. See `docs/rules.md` for each field's meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field {
            $( $(#[$doc])* $variant, )*
        }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            /// The name rules use.
            pub const fn name(self) -> &'static str {
                match self { $(Field::$variant => $name,)* }
            }

            pub const fn ty(self) -> FieldType {
                match self { $(Field::$variant => FieldType::$ty,)* }
            }

            pub(crate) const fn scope(self) -> Scope {
                match self { $(Field::$variant => Scope::$scope,)* }
            }

            /// The field this one is derived from (`file.basename` from `file.path`), or itself.
            /// Context uses it to prefer the path whose predicate matched.
            pub(crate) const fn origin(self) -> Field {
                match self { $(Field::$variant => Field::$origin,)* }
            }
        }
    };
}

fields! {
    Kind = "kind", Str, All, Kind;
    ProcessPid = "process.pid", Int, All, ProcessPid;
    ProcessTid = "process.tid", Int, All, ProcessTid;
    ProcessPpid = "process.ppid", Int, All, ProcessPpid;
    ProcessUid = "process.uid", Int, All, ProcessUid;
    ProcessEuid = "process.euid", Int, All, ProcessEuid;
    ProcessGid = "process.gid", Int, All, ProcessGid;
    ProcessComm = "process.comm", Str, All, ProcessComm;
    ProcessExe = "process.exe", Str, All, ProcessExe;
    /// The executable's file name (`comm` when the path is unknown).
    ProcessName = "process.name", Str, All, ProcessExe;
    ProcessArgv = "process.argv", StrList, All, ProcessArgv;
    /// `argv[1]` when it is an absolute path: the script an interpreter runs (the kernel puts
    /// a `#!` script's path there). With `process.exe` it names a script program by path.
    ProcessScript = "process.script", Str, All, ProcessArgv;
    /// argv joined by spaces.
    ProcessCmdline = "process.cmdline", Str, All, ProcessArgv;
    ProcessCwd = "process.cwd", Str, All, ProcessCwd;
    ProcessSha256 = "process.sha256", Str, All, ProcessSha256;
    ProcessLdPreload = "process.ld_preload", Str, All, ProcessLdPreload;
    ProcessLdLibraryPath = "process.ld_library_path", Str, All, ProcessLdLibraryPath;
    ProcessStartTime = "process.start_time", Time, All, ProcessStartTime;
    ParentExe = "parent.exe", Str, All, ParentExe;
    ParentName = "parent.name", Str, All, ParentExe;
    ParentComm = "parent.comm", Str, All, ParentComm;
    ParentUid = "parent.uid", Int, All, ParentUid;
    ParentEuid = "parent.euid", Int, All, ParentEuid;
    AncestorsName = "ancestors.name", StrList, All, AncestorsExe;
    AncestorsExe = "ancestors.exe", StrList, All, AncestorsExe;
    Container = "container", Presence, All, Container;
    ContainerId = "container.id", Str, All, ContainerId;
    ContainerName = "container.name", Str, All, ContainerName;
    ContainerImage = "container.image", Str, All, ContainerImage;
    ContainerRuntime = "container.runtime", Str, All, ContainerRuntime;
    ContainerPodName = "container.pod_name", Str, All, ContainerPodName;
    ContainerPodNamespace = "container.pod_namespace", Str, All, ContainerPodNamespace;
    ContainerPodUid = "container.pod_uid", Str, All, ContainerPodUid;
    ExecFilename = "exec.filename", Str, Exec, ExecFilename;
    /// The file name of `exec.filename`: the script for `./linpeas.sh`, where `process.exe` is the interpreter.
    ExecBasename = "exec.basename", Str, Exec, ExecFilename;
    ExecNewBinary = "exec.new_binary", Bool, Exec, ExecNewBinary;
    ExecNewBinaryEvidence = "exec.new_binary.evidence", Str, Exec, ExecNewBinary;
    ExecNewBinaryModifiedBy = "exec.new_binary.modified_by", Process, Exec, ExecNewBinary;
    ExecNewBinaryModifiedAt = "exec.new_binary.modified_at", Time, Exec, ExecNewBinary;
    ForkChildPid = "fork.child_pid", Int, Fork, ForkChildPid;
    ExitCode = "exit.code", Int, Exit, ExitCode;
    ExitSignal = "exit.signal", Int, Exit, ExitSignal;
    FilePath = "file.path", Str, File, FilePath;
    FileBasename = "file.basename", Str, File, FilePath;
    FileNewPath = "file.new_path", Str, FileNew, FileNewPath;
    FileNewBasename = "file.new_basename", Str, FileNew, FileNewPath;
    FileFlags = "file.flags", Int, File, FileFlags;
    FileMode = "file.mode", Int, File, FileMode;
    FileResult = "file.result", Int, File, FileResult;
    /// An open that can change the file (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC), or any
    /// rename, link, symlink, unlink or chmod.
    FileWrite = "file.write", Bool, File, FileWrite;
    /// GuardDuty's `fileOperation`: Write (open, chmod), Delete, Rename, Link or Symlink.
    FileOperation = "file.operation", Str, File, FileOperation;
    /// A path argument changed in the caller's memory while the syscall ran: `file.path` or
    /// `file.new_path` may be a decoy.
    FilePathChanged = "file.path_changed", Bool, File, FilePathChanged;
    /// A path argument could not be read at syscall entry: a change would have gone unseen.
    FilePathUnverified = "file.path_unverified", Bool, File, FilePathUnverified;
    NetFamily = "net.family", Str, Connect, NetFamily;
    NetAddress = "net.address", Ip, Connect, NetAddress;
    NetPort = "net.port", Int, Connect, NetPort;
    NetPath = "net.path", Str, Connect, NetPath;
    NetResult = "net.result", Int, Connect, NetResult;
    IoUringEntries = "io_uring.entries", Int, IoUring, IoUringEntries;
    IoUringFlags = "io_uring.flags", Int, IoUring, IoUringFlags;
    IoUringResult = "io_uring.result", Int, IoUring, IoUringResult;
    CompatSyscallNr = "compat_syscall.nr", Int, CompatSyscall, CompatSyscallNr;
    CompatSyscallName = "compat_syscall.name", Str, CompatSyscall, CompatSyscallName;
    /// Missing for a syscall that does not return (exit, exit_group, execve).
    CompatSyscallResult = "compat_syscall.result", Int, CompatSyscall, CompatSyscallResult;
    CompatSyscallFrom64bit = "compat_syscall.from_64bit", Bool, CompatSyscall, CompatSyscallFrom64bit;
}

impl Field {
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Whether events of `kind` can carry this field.
    pub fn available_for(self, kind: Kind) -> bool {
        self.scope().has(kind)
    }

    /// The closest known field name, for "did you mean" hints.
    pub(crate) fn suggest(name: &str) -> Option<&'static str> {
        Field::ALL
            .iter()
            .map(|f| (edit_distance(name, f.name()), f.name()))
            .filter(|(d, n)| *d <= 3.max(n.len() / 4))
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
    }
}

/// Levenshtein distance, for suggestions on small strings only.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let del = prev
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// The open flags rules and tests use; one definition, shared with the kernel's filter.
pub use peregrine_event::{O_APPEND, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY, WRITE_INTENT};

/// A field's value in one event, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    Missing,
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
    List(List<'a>),
    Present,
    Process(&'a Ancestor),
    Time(Timestamp),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum List<'a> {
    Strs(&'a [String]),
    AncestorNames(&'a [Ancestor]),
    AncestorExes(&'a [Ancestor]),
}

impl<'a> List<'a> {
    pub(crate) fn iter(self) -> impl Iterator<Item = &'a str> {
        let (strs, ancestors, names): (&'a [String], &'a [Ancestor], bool) = match self {
            List::Strs(s) => (s, &[], false),
            List::AncestorNames(a) => (&[], a, true),
            List::AncestorExes(a) => (&[], a, false),
        };
        strs.iter()
            .map(String::as_str)
            .chain(ancestors.iter().map(move |a| {
                if names {
                    name_of(&a.exe, &a.comm)
                } else {
                    a.exe.as_str()
                }
            }))
    }
}

/// The last path segment.
#[inline]
pub(crate) fn basename(path: &str) -> &str {
    match path.as_bytes().iter().rposition(|&b| b == b'/') {
        Some(i) => path.get(i + 1..).unwrap_or(""),
        None => path,
    }
}

/// A process name: the executable's file name, or `comm` when the path is unknown.
#[inline]
fn name_of<'a>(exe: &'a str, comm: &'a str) -> &'a str {
    let b = basename(exe);
    if b.is_empty() { comm } else { b }
}

/// The script an interpreter runs, by path: `argv[1]` when it is absolute. When the kernel
/// runs a `#!` script it replaces `argv[0]` with the interpreter and puts the script's path,
/// as given to execve, in `argv[1]` (`fs/binfmt_script.c`); and an interpreter given an
/// absolute path as its first argument runs that file. A leading option (`python3 -s x`,
/// `python3 -c code`) leaves it missing rather than guessing which argument is the script:
/// `python3 -W /usr/bin/dnf evil.py` runs `evil.py`.
#[inline]
fn script_of(argv: &[String]) -> Option<&str> {
    argv.get(1)
        .map(String::as_str)
        .filter(|a| a.starts_with('/'))
}

fn opt(s: &Option<String>) -> Val<'_> {
    match s {
        Some(s) => Val::Str(s),
        None => Val::Missing,
    }
}

/// One event being evaluated, with values derived from it at most once.
pub(crate) struct Subject<'a> {
    pub(crate) ev: &'a Event,
    cmdline: OnceCell<String>,
}

impl<'a> Subject<'a> {
    pub(crate) fn new(ev: &'a Event) -> Self {
        Subject {
            ev,
            cmdline: OnceCell::new(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, f: Field) -> Val<'_> {
        let ev = self.ev;
        let p = &ev.process;
        let parent = p.lineage.first();
        let c = ev.container.as_ref();
        let file = ev.file();
        let net = ev.net();
        let exec = ev.exec();
        match f {
            Field::Kind => Val::Str(ev.kind.name()),
            Field::ProcessPid => Val::Int(p.pid.into()),
            Field::ProcessTid => Val::Int(ev.tid.into()),
            Field::ProcessPpid => Val::Int(p.ppid.into()),
            Field::ProcessUid => Val::Int(p.uid.into()),
            Field::ProcessEuid => Val::Int(p.euid.into()),
            Field::ProcessGid => Val::Int(p.gid.into()),
            Field::ProcessComm => Val::Str(&p.comm),
            Field::ProcessExe => Val::Str(&p.exe),
            Field::ProcessName => Val::Str(name_of(&p.exe, &p.comm)),
            Field::ProcessArgv => Val::List(List::Strs(&p.argv)),
            Field::ProcessScript => script_of(&p.argv).map_or(Val::Missing, Val::Str),
            Field::ProcessCmdline => Val::Str(self.cmdline.get_or_init(|| p.argv.join(" "))),
            Field::ProcessCwd => Val::Str(&p.cwd),
            Field::ProcessSha256 => opt(&p.sha256),
            Field::ProcessLdPreload => opt(&p.ld_preload),
            Field::ProcessLdLibraryPath => opt(&p.ld_library_path),
            Field::ProcessStartTime => Val::Time(p.start_time),
            Field::ParentExe => parent.map_or(Val::Missing, |a| Val::Str(&a.exe)),
            Field::ParentName => {
                parent.map_or(Val::Missing, |a| Val::Str(name_of(&a.exe, &a.comm)))
            }
            Field::ParentComm => parent.map_or(Val::Missing, |a| Val::Str(&a.comm)),
            Field::ParentUid => parent.map_or(Val::Missing, |a| Val::Int(a.uid.into())),
            Field::ParentEuid => parent.map_or(Val::Missing, |a| Val::Int(a.euid.into())),
            Field::AncestorsName => Val::List(List::AncestorNames(&p.lineage)),
            Field::AncestorsExe => Val::List(List::AncestorExes(&p.lineage)),
            Field::Container => c.map_or(Val::Missing, |_| Val::Present),
            Field::ContainerId => c.map_or(Val::Missing, |c| Val::Str(&c.id)),
            Field::ContainerName => c.map_or(Val::Missing, |c| opt(&c.name)),
            Field::ContainerImage => c.map_or(Val::Missing, |c| opt(&c.image)),
            Field::ContainerRuntime => c.map_or(Val::Missing, |c| Val::Str(&c.runtime)),
            Field::ContainerPodName => c.map_or(Val::Missing, |c| opt(&c.pod_name)),
            Field::ContainerPodNamespace => c.map_or(Val::Missing, |c| opt(&c.pod_namespace)),
            Field::ContainerPodUid => c.map_or(Val::Missing, |c| opt(&c.pod_uid)),
            Field::ExecFilename => exec.map_or(Val::Missing, |x| Val::Str(&x.filename)),
            Field::ExecBasename => exec.map_or(Val::Missing, |x| Val::Str(basename(&x.filename))),
            Field::ExecNewBinary => {
                exec.map_or(Val::Missing, |x| Val::Bool(x.new_binary.is_some()))
            }
            Field::ExecNewBinaryEvidence => match exec.and_then(|x| x.new_binary.as_ref()) {
                Some(nb) => Val::Str(match nb.evidence {
                    NewBinaryEvidence::OverlayUpper => "overlay_upper",
                    NewBinaryEvidence::ObservedWrite => "observed_write",
                }),
                None => Val::Missing,
            },
            Field::ExecNewBinaryModifiedBy => {
                match exec
                    .and_then(|x| x.new_binary.as_ref())
                    .and_then(|nb| nb.modified_by.as_ref())
                {
                    Some(a) => Val::Process(a),
                    None => Val::Missing,
                }
            }
            Field::ExecNewBinaryModifiedAt => {
                match exec
                    .and_then(|x| x.new_binary.as_ref())
                    .and_then(|nb| nb.modified_at)
                {
                    Some(t) => Val::Time(t),
                    None => Val::Missing,
                }
            }
            Field::ForkChildPid => ev
                .fork()
                .map_or(Val::Missing, |x| Val::Int(x.child_pid.into())),
            Field::ExitCode => ev
                .exit()
                .and_then(|x| x.code)
                .map_or(Val::Missing, |v| Val::Int(v.into())),
            Field::ExitSignal => ev
                .exit()
                .and_then(|x| x.signal)
                .map_or(Val::Missing, |v| Val::Int(v.into())),
            Field::FilePath => file.map_or(Val::Missing, |f| Val::Str(&f.path)),
            Field::FileBasename => file.map_or(Val::Missing, |f| Val::Str(basename(&f.path))),
            Field::FileNewPath => file.map_or(Val::Missing, |f| opt(&f.new_path)),
            Field::FileNewBasename => file
                .and_then(|f| f.new_path.as_deref())
                .map_or(Val::Missing, |p| Val::Str(basename(p))),
            Field::FileFlags => file.map_or(Val::Missing, |f| Val::Int(f.flags.into())),
            Field::FileMode => file.map_or(Val::Missing, |f| Val::Int(f.mode.into())),
            Field::FileResult => file.map_or(Val::Missing, |f| Val::Int(f.result)),
            Field::FileWrite => match file {
                Some(f) => Val::Bool(ev.kind != Kind::Open || f.flags & WRITE_INTENT != 0),
                None => Val::Missing,
            },
            Field::FileOperation => match (file, file_operation(ev.kind)) {
                (Some(_), Some(op)) => Val::Str(op),
                _ => Val::Missing,
            },
            Field::FilePathChanged => file.map_or(Val::Missing, |f| Val::Bool(f.path_changed)),
            Field::FilePathUnverified => {
                file.map_or(Val::Missing, |f| Val::Bool(f.path_unverified))
            }
            Field::NetFamily => net.map_or(Val::Missing, |n| {
                Val::Str(match n.family {
                    Family::Inet => "inet",
                    Family::Inet6 => "inet6",
                    Family::Unix => "unix",
                })
            }),
            Field::NetAddress => net.and_then(|n| n.address).map_or(Val::Missing, Val::Ip),
            Field::NetPort => net
                .and_then(|n| n.port)
                .map_or(Val::Missing, |v| Val::Int(v.into())),
            Field::NetPath => net.map_or(Val::Missing, |n| opt(&n.path)),
            Field::NetResult => net.map_or(Val::Missing, |n| Val::Int(n.result)),
            Field::IoUringEntries => ev
                .io_uring()
                .map_or(Val::Missing, |u| Val::Int(u.entries.into())),
            Field::IoUringFlags => ev
                .io_uring()
                .map_or(Val::Missing, |u| Val::Int(u.flags.into())),
            Field::IoUringResult => ev.io_uring().map_or(Val::Missing, |u| Val::Int(u.result)),
            Field::CompatSyscallNr => ev
                .compat_syscall()
                .map_or(Val::Missing, |c| Val::Int(c.nr.into())),
            Field::CompatSyscallName => ev.compat_syscall().map_or(Val::Missing, |c| opt(&c.name)),
            Field::CompatSyscallResult => ev
                .compat_syscall()
                .and_then(|c| c.result)
                .map_or(Val::Missing, Val::Int),
            Field::CompatSyscallFrom64bit => ev
                .compat_syscall()
                .map_or(Val::Missing, |c| Val::Bool(c.from_64bit)),
        }
    }
}

/// GuardDuty's `fileOperation` for a file event kind.
pub(crate) fn file_operation(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Open | Kind::Chmod => Some("Write"),
        Kind::Unlink => Some("Delete"),
        Kind::Rename => Some("Rename"),
        Kind::Link => Some("Link"),
        Kind::Symlink => Some("Symlink"),
        _ => None,
    }
}

/// The values `file.operation`, `net.family` and `kind` can take, to reject typos at load.
pub(crate) fn closed_values(f: Field) -> Option<Vec<&'static str>> {
    match f {
        Field::Kind => Some(Kind::ALL.iter().map(|k| k.name()).collect()),
        Field::FileOperation => Some(vec!["Write", "Delete", "Rename", "Link", "Symlink"]),
        Field::NetFamily => Some(vec!["inet", "inet6", "unix"]),
        Field::ExecNewBinaryEvidence => Some(vec!["overlay_upper", "observed_write"]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for f in Field::ALL {
            assert_eq!(Field::parse(f.name()), Some(*f));
            assert_eq!(
                Field::ALL.iter().filter(|g| g.name() == f.name()).count(),
                1
            );
            // A derived field derives from a field of the same scope.
            assert!(f.origin().scope() == f.scope() || f.origin() == *f, "{f:?}");
        }
        assert_eq!(Field::parse("file.pathh"), None);
        assert_eq!(Field::suggest("file.pathh"), Some("file.path"));
        assert_eq!(Field::suggest("proces.exe"), Some("process.exe"));
        assert_eq!(Field::suggest("zzzzzzzz"), None);
    }

    #[test]
    fn script_is_an_absolute_first_argument() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            script_of(&argv(&["/usr/bin/python3", "/usr/bin/dnf", "install"])),
            Some("/usr/bin/dnf")
        );
        assert_eq!(script_of(&argv(&["python3", "-s", "/usr/bin/dnf"])), None);
        assert_eq!(script_of(&argv(&["python3", "-c", "/usr/bin/dnf"])), None);
        assert_eq!(script_of(&argv(&["sh", "./x.sh"])), None);
        assert_eq!(script_of(&argv(&["yum"])), None);
        assert_eq!(script_of(&[]), None);
    }

    #[test]
    fn basename_of_paths() {
        assert_eq!(basename("/usr/bin/python3"), "python3");
        assert_eq!(basename("runc"), "runc");
        assert_eq!(basename("/dir/"), "");
        assert_eq!(basename(""), "");
    }
}
