//! The runtime event model: what the node agent emits after enrichment, what standalone mode
//! prints (one JSON object per line) and what the detection library consumes.
//!
//! Field names are snake_case and documented in `docs/events.md`. Every string that comes from
//! the monitored workload (paths, argv, comm, labels, socket paths) is attacker-controlled data:
//! it is carried as-is (invalid UTF-8 replaced by U+FFFD) and only ever escaped on output, never
//! interpreted.

mod blinding;
mod cluster;
pub mod json;
mod time;

use std::{net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::blinding::{
    BlindingKind, BlindingReason, MAX_BLINDING_CODE_BYTES, MAX_BLINDING_DETAIL_BYTES,
    MAX_BLINDING_REASONS,
};
pub use crate::cluster::{
    ClusterArn, ClusterArnError, MAX_CLUSTER_ARN_BYTES, valid_account_id, valid_cluster_name,
    valid_partition, valid_region,
};
pub use crate::time::Timestamp;
/// The kind table and the flag constants shared with the kernel (one definition each).
pub use node_agent_common::{
    Kind, KindFamily, O_APPEND, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY, WRITE_INTENT,
};

/// One enriched runtime event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "kind_name")]
    pub kind: Kind,
    /// Wall-clock time of capture.
    pub time: Timestamp,
    /// The thread that caused it (the process's pid for a single-threaded process).
    pub tid: u32,
    /// The process: an immutable snapshot shared by every event of the same process state.
    pub process: Arc<Process>,
    /// `null` for a process on the host.
    pub container: Option<Arc<Container>>,
    /// The kind-specific part, in JSON one key named by [`Kind::detail`] (`exec`, `file`, ...).
    #[serde(flatten)]
    pub detail: Detail,
}

/// The kind-specific part of an event. Which variant a kind carries is the kind table's
/// `detail` column in node-agent-common ([`Kind::detail`]); [`Detail::fits`] checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Exec(ExecInfo),
    Fork(ForkInfo),
    Exit(ExitInfo),
    File(FileInfo),
    Net(NetInfo),
    IoUring(IoUringInfo),
    CompatSyscall(CompatSyscallInfo),
    Loss(LossInfo),
}

impl Detail {
    /// The JSON key, as named in the kind table.
    pub const fn key(&self) -> &'static str {
        match self {
            Detail::Exec(_) => "exec",
            Detail::Fork(_) => "fork",
            Detail::Exit(_) => "exit",
            Detail::File(_) => "file",
            Detail::Net(_) => "net",
            Detail::IoUring(_) => "io_uring",
            Detail::CompatSyscall(_) => "compat_syscall",
            Detail::Loss(_) => "loss",
        }
    }

    /// The kind's detail with every field empty (for builders that fill it in), or `None` for
    /// a kind that is never emitted.
    pub fn empty(kind: Kind) -> Option<Detail> {
        Some(match kind.detail()? {
            "exec" => Detail::Exec(ExecInfo::default()),
            "fork" => Detail::Fork(ForkInfo::default()),
            "exit" => Detail::Exit(ExitInfo::default()),
            "file" => Detail::File(FileInfo::default()),
            "net" => Detail::Net(NetInfo {
                family: Family::Inet,
                address: None,
                port: None,
                path: None,
                result: 0,
            }),
            "io_uring" => Detail::IoUring(IoUringInfo::default()),
            "compat_syscall" => Detail::CompatSyscall(CompatSyscallInfo::default()),
            "loss" => Detail::Loss(LossInfo::default()),
            _ => return None,
        })
    }

    /// Whether this detail is the one the kind table gives `kind`.
    pub fn fits(&self, kind: Kind) -> bool {
        kind.detail() == Some(self.key())
    }
}

/// The process that caused the event, from the agent's process table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub comm: String,
    /// Absolute path of the executable, as seen inside the process's mount namespace.
    pub exe: String,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_truncated: bool,
    pub cwd: String,
    /// Stable id that survives pid reuse: derived from (boot id, pid, start time).
    pub uuid: Uuid,
    pub parent_uuid: Uuid,
    pub start_time: Timestamp,
    /// SHA-256 of the executable, hex; `null` when it could not be read.
    pub sha256: Option<String>,
    pub cgroup_id: u64,
    pub mnt_ns: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ld_preload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ld_library_path: Option<String>,
    /// Ancestors, nearest first, up to the agent's configured depth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<Ancestor>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub uuid: Uuid,
    pub parent_uuid: Uuid,
    pub pid: u32,
    pub exe: String,
    pub comm: String,
    pub uid: u32,
    pub euid: u32,
    pub start_time: Timestamp,
}

/// Container and Kubernetes pod context, from containerd's CRI labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Full container id (64 hex digits under CRI).
    pub id: String,
    pub runtime: String,
    /// `io.kubernetes.container.name`.
    pub name: Option<String>,
    pub image: Option<String>,
    /// `io.kubernetes.pod.name`.
    pub pod_name: Option<String>,
    /// `io.kubernetes.pod.namespace`.
    pub pod_namespace: Option<String>,
    /// `io.kubernetes.pod.uid`, or the pod uid in the cgroup path.
    pub pod_uid: Option<String>,
    /// The containerd namespace (`k8s.io` under Kubernetes).
    pub namespace: Option<String>,
    /// `complete` when the runtime answered, `pending`/`unavailable` while it has not.
    pub metadata: MetadataState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataState {
    Complete,
    #[default]
    Pending,
    /// The runtime could not be asked (absent socket, timeout); retried with backoff.
    Unavailable,
    /// The runtime does not know this container (it may already be gone).
    NotFound,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecInfo {
    /// The path as passed to execve (may be relative, or /proc/self/fd/N).
    pub filename: String,
    pub exe_dev: u32,
    pub exe_ino: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub env_truncated: bool,
    /// Set when the executable was created or modified inside the container after it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_binary: Option<NewBinary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBinary {
    pub evidence: NewBinaryEvidence,
    /// The process the agent saw write the file, when it saw one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_by: Option<Ancestor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewBinaryEvidence {
    /// The file's overlayfs inode has an upper dentry: created or copied up in the container.
    OverlayUpper,
    /// The agent saw a process in the container write, create or rename it.
    ObservedWrite,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkInfo {
    pub child_pid: u32,
    pub child_uuid: Uuid,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status (0-255) when the process exited normally.
    pub code: Option<i32>,
    /// The terminating signal when it was killed.
    pub signal: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The file (open, unlink, chmod), the old name (rename, link) or the symlink target.
    pub path: String,
    /// The new name (rename, link) or the symlink's own path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    /// Open flags (`O_*`), rename flags (`RENAME_*`) or unlinkat flags (`AT_REMOVEDIR`).
    pub flags: u32,
    /// Create mode (open) or the new mode (chmod), as a number; see `mode_octal`.
    pub mode: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode_octal: String,
    /// Syscall result: >= 0 success, else -errno.
    pub result: i64,
    /// `path` is the kernel's resolution of the opened file (absolute, symlinks followed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub resolved: bool,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub ino: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub dev: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// A path argument read from the caller's memory changed while the syscall ran: another
    /// thread rewrote it after the kernel copied it, so `path` or `new_path` may be a decoy and
    /// not the file the kernel acted on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_changed: bool,
    /// A path argument could not be read at syscall entry, so whether it changed during the
    /// syscall is unknown.
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_unverified: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Inet,
    Inet6,
    Unix,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    pub family: Family,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Unix socket path; abstract names start with `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// connect(2) result: 0, or -errno (`-115` is EINPROGRESS for a non-blocking socket).
    pub result: i64,
}

/// An `io_uring_setup` attempt (`io_uring`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoUringInfo {
    /// The requested number of submission-queue entries.
    pub entries: u32,
    /// `io_uring_params.flags` (`IORING_SETUP_*`; 0x2 is `IORING_SETUP_SQPOLL`).
    pub flags: u32,
    /// The ring's file descriptor, or -errno.
    pub result: i64,
}

/// A 32-bit syscall (`compat_syscall`), reported the first time a process image makes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatSyscallInfo {
    /// The 32-bit syscall number (i386 numbering on x86-64, arm EABI on arm64).
    pub nr: u32,
    /// Its name, when the agent knows the number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The result: >= 0 success, else -errno; absent for a syscall that does not return to
    /// its caller (exit, exit_group, execve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    /// The caller was running 64-bit code: `int 0x80` from a 64-bit process (x86-64).
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_64bit: bool,
}

/// Events the agent could not deliver, reported as an event of their own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossInfo {
    /// Kernel ring-buffer reserve/output failures since the previous loss event.
    pub kernel_ringbuf_full: u64,
    /// Kernel events lost because the per-CPU scratch area was unavailable.
    pub kernel_no_scratch: u64,
    /// Events dropped because the agent's internal queue was full.
    pub user_queue_full: u64,
    /// Events dropped downstream (for example a full spool), when known.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub downstream: u64,
    /// The agent's status tick that measured this loss (1, 2, ... since the agent started;
    /// ticks without loss emit no Loss event). 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tick: u64,
}

impl LossInfo {
    pub fn total(&self) -> u64 {
        self.kernel_ringbuf_full + self.kernel_no_scratch + self.user_queue_full + self.downstream
    }
}

impl Event {
    /// The event kind's snake_case name.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// `Event::exec()`, `Event::exec_mut()` and the like: the detail when it is that variant.
macro_rules! detail_accessors {
    ($($get:ident, $get_mut:ident, $variant:ident, $ty:ty;)*) => {
        impl Event {
            $(
                pub fn $get(&self) -> Option<&$ty> {
                    match &self.detail {
                        Detail::$variant(x) => Some(x),
                        _ => None,
                    }
                }

                pub fn $get_mut(&mut self) -> Option<&mut $ty> {
                    match &mut self.detail {
                        Detail::$variant(x) => Some(x),
                        _ => None,
                    }
                }
            )*
        }
    };
}

detail_accessors! {
    exec, exec_mut, Exec, ExecInfo;
    fork, fork_mut, Fork, ForkInfo;
    exit, exit_mut, Exit, ExitInfo;
    file, file_mut, File, FileInfo;
    net, net_mut, Net, NetInfo;
    io_uring, io_uring_mut, IoUring, IoUringInfo;
    compat_syscall, compat_syscall_mut, CompatSyscall, CompatSyscallInfo;
    loss, loss_mut, Loss, LossInfo;
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// Serialises [`Kind`] by its snake_case name.
pub mod kind_name {
    use super::Kind;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown event kind {name:?}")))
    }
}

/// Formats a mode as octal with the special bits, e.g. `4755`.
pub fn mode_octal(mode: u32) -> String {
    format!("{:o}", mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            kind: Kind::Open,
            time: Timestamp::from_unix_nanos(1_764_000_000_123_456_789),
            tid: 42,
            process: Arc::new(Process {
                pid: 42,
                argv: vec!["sh".into(), "-c".into(), "echo \"x\"\n\u{1b}[31m".into()],
                exe: "/bin/sh".into(),
                ..Process::default()
            }),
            container: None,
            detail: Detail::File(FileInfo {
                path: "/tmp/a\nb\"c".into(),
                flags: 0o101,
                mode: 0o4755,
                mode_octal: mode_octal(0o4755),
                result: 3,
                ..FileInfo::default()
            }),
        }
    }

    #[test]
    fn json_round_trip_keeps_attacker_strings_as_data() {
        let e = sample();
        let line = serde_json::to_string(&e).unwrap();
        // One line, whatever the path and argv contain.
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""path":"/tmp/a\nb\"c""#));
        assert!(line.contains(r#"\u001b[31m"#));
        assert!(line.contains(r#""kind":"open""#));
        assert!(line.contains(r#""container":null"#));
        assert!(line.contains(r#""mode_octal":"4755""#));
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["kind"] = "teleport".into();
        let err = serde_json::from_value::<Event>(v).unwrap_err();
        assert!(err.to_string().contains("unknown event kind"));
    }
}
