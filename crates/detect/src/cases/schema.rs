//! The YAML shape of a `*.tests.yaml` file. Unknown keys are errors everywhere: a misspelt
//! `flgs` would otherwise leave a case testing a different event than its author meant.
//!
//! Only data here: [`build_event`](crate::cases::build_event) turns an [`EventSpec`] into an
//! event, and [`run`](crate::cases::run) checks the expectations.

use std::net::IpAddr;

use peregrine_event::{Family, Kind};
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::{Map, Value as Json};
use serde_yaml_ng::Value as Yaml;

use crate::field::{O_APPEND, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY};
use crate::pred::parse_int;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseFile {
    pub(crate) tests: Vec<RuleCases>,
}

/// The cases of one rule (`rule: <id>`) or of whichever rule raises a finding type
/// (`type: <finding type>`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleCases {
    #[serde(default)]
    pub(crate) rule: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) finding_type: Option<String>,
    /// Events that must fire it.
    #[serde(default)]
    pub(crate) fires: Vec<Case>,
    /// Near misses: events that must not.
    #[serde(default)]
    pub(crate) misses: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) event: EventSpec,
    /// Members the match's `RuntimeContext` must have, as in the finding's JSON; `null` means
    /// the member must be absent. Objects are compared member by member.
    #[serde(default)]
    pub(crate) context: Option<Map<String, Json>>,
    /// Entries that must be in the match's evidence, as in the finding's JSON.
    #[serde(default)]
    pub(crate) evidence: Option<Vec<Json>>,
}

/// An event by its meaningful fields; everything else is a fixed, ordinary default (see
/// [`build_event`](crate::cases::build_event)). The names are those of the rule fields
/// without their prefix: `exe` is `process.exe`, `path` is `file.path` (or `net.path` on a
/// connect), `address` is `net.address`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    #[serde(with = "peregrine_event::kind_name")]
    pub kind: Kind,

    // The process.
    /// The executable; `comm` and `argv[0]` follow its file name unless given.
    #[serde(default)]
    pub exe: Option<String>,
    #[serde(default)]
    pub comm: Option<String>,
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub euid: Option<u32>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub ld_preload: Option<String>,
    #[serde(default)]
    pub ld_library_path: Option<String>,
    /// Ancestors' executables, nearest first, in front of the default lineage.
    #[serde(default)]
    pub parents: Vec<String>,

    // Where it runs.
    /// A host process: no container.
    #[serde(default)]
    pub host: bool,
    /// Changes to the default container.
    #[serde(default)]
    pub container: Option<ContainerSpec>,

    // File kinds.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub new_path: Option<String>,
    /// Open/rename/unlinkat flags, or io_uring's `IORING_SETUP_*` flags (an integer).
    #[serde(default)]
    pub flags: Option<Flags>,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The syscall's result (file kinds, connect, io_uring, compat_syscall): >= 0 success, else
    /// -errno.
    #[serde(default)]
    pub result: Option<i64>,
    /// `file.path_changed`: a path argument was rewritten during the syscall.
    #[serde(default)]
    pub path_changed: bool,
    /// `file.path_unverified`: a path argument could not be read at syscall entry.
    #[serde(default)]
    pub path_unverified: bool,

    // Connect (`path` for a Unix socket).
    #[serde(default)]
    pub family: Option<Family>,
    #[serde(default)]
    pub address: Option<IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,

    // Exec.
    /// The path given to execve, when it differs from `exe` (a script).
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub new_binary: Option<NewBinarySpec>,

    // io_uring.
    /// Requested submission-queue entries (default 8).
    #[serde(default)]
    pub entries: Option<u32>,

    // compat_syscall.
    /// The 32-bit syscall number (default 5, i386 `open`).
    #[serde(default)]
    pub nr: Option<u32>,
    /// Its name (default: `open` for the default number, else none).
    #[serde(default)]
    pub syscall: Option<String>,
    /// `int 0x80` from 64-bit code.
    #[serde(default)]
    pub from_64bit: Option<bool>,
}

impl EventSpec {
    /// An event of `kind` with every field at its default.
    pub fn new(kind: Kind) -> EventSpec {
        EventSpec {
            kind,
            exe: None,
            comm: None,
            argv: None,
            uid: None,
            euid: None,
            cwd: None,
            ld_preload: None,
            ld_library_path: None,
            parents: Vec::new(),
            host: false,
            container: None,
            path: None,
            new_path: None,
            flags: None,
            mode: None,
            result: None,
            path_changed: false,
            path_unverified: false,
            family: None,
            address: None,
            port: None,
            filename: None,
            new_binary: None,
            entries: None,
            nr: None,
            syscall: None,
            from_64bit: None,
        }
    }
}

/// Changes to the default container (`web` in pod `default/web-1`, image nginx).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
}

/// `exec.new_binary`: `{}` for overlay evidence alone, `{modified_by: <exe>}` when the agent
/// saw the process that wrote it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBinarySpec {
    #[serde(default)]
    pub modified_by: Option<String>,
}

/// `file.flags`: a list of `O_*` names (`[O_WRONLY, O_CREAT]`) or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(pub u32);

/// The `O_*` names a case may use.
pub const FLAG_NAMES: &[(&str, u32)] = &[
    ("O_RDONLY", 0),
    ("O_WRONLY", O_WRONLY),
    ("O_RDWR", O_RDWR),
    ("O_CREAT", O_CREAT),
    ("O_TRUNC", O_TRUNC),
    ("O_APPEND", O_APPEND),
];

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flags, D::Error> {
        let names = || {
            FLAG_NAMES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match Yaml::deserialize(d)? {
            Yaml::Sequence(items) => {
                let mut bits = 0;
                for item in &items {
                    let name = item.as_str();
                    let Some((_, b)) = FLAG_NAMES.iter().find(|(n, _)| Some(*n) == name) else {
                        let shown = name.map_or_else(|| format!("{item:?}"), |n| format!("{n:?}"));
                        return Err(D::Error::custom(format!(
                            "unknown flag {shown}; flags are {} or an integer",
                            names()
                        )));
                    };
                    bits |= b;
                }
                Ok(Flags(bits))
            }
            v => int(&v).map(Flags).map_err(D::Error::custom),
        }
    }
}

/// `file.mode`: an integer, written `0o755` (a string or a YAML number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        int(&Yaml::deserialize(d)?)
            .map(Mode)
            .map_err(D::Error::custom)
    }
}

fn int(v: &Yaml) -> Result<u32, String> {
    let i = parse_int(v)?;
    u32::try_from(i).map_err(|_| format!("{i} is out of range"))
}
