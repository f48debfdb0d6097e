//! Builders for the event model and the wire's identities: processes, ancestors, containers,
//! events, agent identities, heartbeat probes and the finding environment.
//!
//! Everything starts from the model's `Default` and sets only what a fixture says; the rest
//! stays empty. `comm` always follows the exe as the kernel would set it.
//!
//! ```
//! use peregrine_testkit::builders::{EventBuilder, process};
//! let sh = process(7000, "/bin/sh").argv(&["sh", "-c", "id"]).user(1000).arc();
//! let ev = EventBuilder::open("/etc/passwd", 1).by(sh).at(5).build();
//! assert_eq!((ev.tid, ev.process.comm.as_str()), (7000, "sh"));
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use peregrine_event::{
    Ancestor, Container, Detail, Event, ExecInfo, ExitInfo, Family, FileInfo, ForkInfo, Kind,
    LossInfo, MetadataState, NetInfo, NewBinary, Process, Timestamp, mode_octal,
};
use peregrine_finding::FindingEnv;
use peregrine_wire::{AgentIdentity, Heartbeat, ProbeState, ProbeStatus};
use uuid::Uuid;

/// `O_CLOEXEC`: not a write-intent bit (so not in the event model's flag set); fixtures'
/// opens carry it as real programs do.
pub const O_CLOEXEC: u32 = 0o2000000;

/// The `comm` the kernel gives an executable: its file name, cut to 15 bytes (`TASK_COMM_LEN`
/// less the NUL).
pub fn comm(exe: &str) -> String {
    exe.rsplit('/')
        .next()
        .unwrap_or(exe)
        .chars()
        .take(15)
        .collect()
}

/// A process running `exe` as `pid`; see [`ProcessBuilder`].
pub fn process(pid: u32, exe: &str) -> ProcessBuilder {
    ProcessBuilder(Process {
        pid,
        comm: comm(exe),
        exe: exe.into(),
        ..Process::default()
    })
}

/// A process snapshot under construction: [`process`], then what the fixture cares about.
#[derive(Clone, Debug)]
pub struct ProcessBuilder(Process);

impl ProcessBuilder {
    pub fn argv(mut self, argv: &[&str]) -> Self {
        self.0.argv = argv.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// Real, effective user and group all `uid`, as for a process that changed nothing.
    pub fn user(mut self, uid: u32) -> Self {
        (self.0.uid, self.0.euid, self.0.gid) = (uid, uid, uid);
        self
    }
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.0.cwd = cwd.into();
        self
    }
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.0.uuid = uuid;
        self
    }
    pub fn started(mut self, unix_nanos: i64) -> Self {
        self.0.start_time = Timestamp::from_unix_nanos(unix_nanos);
        self
    }
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.0.sha256 = Some(hex.into());
        self
    }
    /// The cgroup and the mount namespace.
    pub fn cgroup(mut self, cgroup_id: u64, mnt_ns: u32) -> Self {
        (self.0.cgroup_id, self.0.mnt_ns) = (cgroup_id, mnt_ns);
        self
    }
    /// The ancestors, nearest first; the parent's pid and uuid follow the first (pid 1 and the
    /// nil uuid without one).
    pub fn lineage(mut self, lineage: Vec<Ancestor>) -> Self {
        self.0.ppid = lineage.first().map_or(1, |a| a.pid);
        self.0.parent_uuid = lineage.first().map(|a| a.uuid).unwrap_or_default();
        self.0.lineage = lineage;
        self
    }
    /// Anything else, on the snapshot itself.
    pub fn with(mut self, f: impl FnOnce(&mut Process)) -> Self {
        f(&mut self.0);
        self
    }
    pub fn build(self) -> Process {
        self.0
    }
    /// The snapshot, shared as the agent's process table shares it between events.
    pub fn arc(self) -> Arc<Process> {
        Arc::new(self.0)
    }
}

/// An ancestor running `exe` as `pid` (comm from the exe, nothing else set).
pub fn ancestor(pid: u32, exe: &str) -> Ancestor {
    Ancestor {
        pid,
        exe: exe.into(),
        comm: comm(exe),
        ..Ancestor::default()
    }
}

/// `p` as its children's lineage records it.
pub fn ancestor_of(p: &Process) -> Ancestor {
    Ancestor {
        uuid: p.uuid,
        parent_uuid: p.parent_uuid,
        pid: p.pid,
        exe: p.exe.clone(),
        comm: p.comm.clone(),
        uid: p.uid,
        euid: p.euid,
        start_time: p.start_time,
    }
}

/// The Kubernetes side of a container: its pod and the container's name and image.
#[derive(Clone, Copy, Debug)]
pub struct Pod<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub container: &'a str,
    pub image: &'a str,
}

/// A pod's container as the agent sees it on an EKS node: containerd, CRI namespace `k8s.io`,
/// metadata complete.
pub fn pod_container(id: impl Into<String>, pod: Pod<'_>) -> Container {
    Container {
        id: id.into(),
        runtime: "containerd".into(),
        name: Some(pod.container.into()),
        image: Some(pod.image.into()),
        pod_name: Some(pod.name.into()),
        pod_namespace: Some(pod.namespace.into()),
        pod_uid: Some(pod.uid.into()),
        namespace: Some("k8s.io".into()),
        metadata: MetadataState::Complete,
    }
}

/// An event under construction: a kind and its detail first, then who, where and when.
/// Without [`by`](Self::by) the process is an empty snapshot; without [`tid`](Self::tid) the
/// event is on the process's main thread.
#[derive(Clone, Debug)]
pub struct EventBuilder {
    event: Event,
    tid: Option<u32>,
}

impl EventBuilder {
    /// A `kind` event with an empty detail of the variant the kind table gives it.
    ///
    /// # Panics
    /// For a kind that is never emitted (it has no detail).
    pub fn new(kind: Kind) -> Self {
        let detail = Detail::empty(kind).unwrap_or_else(|| panic!("{kind:?} is never emitted"));
        Self::with_detail(kind, detail)
    }

    pub fn with_detail(kind: Kind, detail: Detail) -> Self {
        EventBuilder {
            event: Event {
                kind,
                time: Timestamp::from_unix_nanos(0),
                tid: 0,
                process: Arc::new(Process::default()),
                container: None,
                detail,
            },
            tid: None,
        }
    }

    /// A file event of `kind` on `path`.
    pub fn file(kind: Kind, path: &str) -> Self {
        Self::with_detail(
            kind,
            Detail::File(FileInfo {
                path: path.into(),
                ..FileInfo::default()
            }),
        )
    }

    pub fn open(path: &str, flags: u32) -> Self {
        Self::file(Kind::Open, path).with_file(|f| f.flags = flags)
    }

    /// A rename, link or symlink: `path` and its new name.
    pub fn file2(kind: Kind, path: &str, new_path: &str) -> Self {
        Self::file(kind, path).with_file(|f| f.new_path = Some(new_path.into()))
    }

    /// A connect to an IP address (the family follows it), in progress (`-EINPROGRESS`) until
    /// [`result`](Self::result) says otherwise.
    pub fn connect_inet(address: IpAddr, port: u16) -> Self {
        let family = match address {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        };
        Self::with_detail(
            Kind::Connect,
            Detail::Net(NetInfo {
                family,
                address: Some(address),
                port: Some(port),
                path: None,
                result: -115,
            }),
        )
    }

    /// A connect to a unix socket, successful.
    pub fn connect_unix(path: &str) -> Self {
        Self::with_detail(
            Kind::Connect,
            Detail::Net(NetInfo {
                family: Family::Unix,
                address: None,
                port: None,
                path: Some(path.into()),
                result: 0,
            }),
        )
    }

    /// An execve of `filename` (the path given to it).
    pub fn exec(filename: &str) -> Self {
        Self::with_detail(
            Kind::Exec,
            Detail::Exec(ExecInfo {
                filename: filename.into(),
                ..ExecInfo::default()
            }),
        )
    }

    pub fn fork(child_pid: u32, child_uuid: Uuid) -> Self {
        Self::with_detail(
            Kind::Fork,
            Detail::Fork(ForkInfo {
                child_pid,
                child_uuid,
            }),
        )
    }

    /// A normal exit with `code`.
    pub fn exit(code: i32) -> Self {
        Self::with_detail(
            Kind::Exit,
            Detail::Exit(ExitInfo {
                code: Some(code),
                signal: None,
            }),
        )
    }

    pub fn loss(loss: LossInfo) -> Self {
        Self::with_detail(Kind::Loss, Detail::Loss(loss))
    }

    /// The process: an `Arc` already shared with other events, or a `Process` of its own.
    pub fn by(mut self, process: impl Into<Arc<Process>>) -> Self {
        self.event.process = process.into();
        self
    }
    pub fn in_container(mut self, container: impl Into<Arc<Container>>) -> Self {
        self.event.container = Some(container.into());
        self
    }
    /// In `container`, or on the host.
    pub fn container(mut self, container: Option<Arc<Container>>) -> Self {
        self.event.container = container;
        self
    }
    pub fn at(self, unix_nanos: i64) -> Self {
        self.time(Timestamp::from_unix_nanos(unix_nanos))
    }
    pub fn time(mut self, time: Timestamp) -> Self {
        self.event.time = time;
        self
    }
    pub fn tid(mut self, tid: u32) -> Self {
        self.tid = Some(tid);
        self
    }

    /// The syscall's result, for a file, network, io_uring or compat-syscall event.
    pub fn result(self, result: i64) -> Self {
        self.with_detail_mut(|d| match d {
            Detail::File(f) => f.result = result,
            Detail::Net(n) => n.result = result,
            Detail::IoUring(u) => u.result = result,
            Detail::CompatSyscall(c) => c.result = Some(result),
            _ => {}
        })
    }
    /// The mode (create mode or new mode) and its octal text.
    pub fn mode(self, mode: u32) -> Self {
        self.with_file(|f| (f.mode, f.mode_octal) = (mode, mode_octal(mode)))
    }
    /// The path is the kernel's resolution of the file, with its device and inode.
    pub fn resolved(self, dev: u32, ino: u64) -> Self {
        self.with_file(|f| (f.resolved, f.dev, f.ino) = (true, dev, ino))
    }
    /// A path argument changed in the caller's memory during the syscall.
    pub fn path_changed(self) -> Self {
        self.with_file(|f| f.path_changed = true)
    }
    pub fn new_binary(self, new_binary: NewBinary) -> Self {
        self.with_exec(|e| e.new_binary = Some(new_binary))
    }

    /// Anything else on a file detail (nothing for other details).
    pub fn with_file(self, f: impl FnOnce(&mut FileInfo)) -> Self {
        self.with_detail_mut(|d| {
            if let Detail::File(file) = d {
                f(file);
            }
        })
    }
    /// Anything else on an exec detail (nothing for other details).
    pub fn with_exec(self, f: impl FnOnce(&mut ExecInfo)) -> Self {
        self.with_detail_mut(|d| {
            if let Detail::Exec(exec) = d {
                f(exec);
            }
        })
    }
    fn with_detail_mut(mut self, f: impl FnOnce(&mut Detail)) -> Self {
        f(&mut self.event.detail);
        self
    }

    pub fn build(self) -> Event {
        let mut event = self.event;
        event.tid = self.tid.unwrap_or(event.process.pid);
        event
    }
}

/// An agent's identity on the wire (version 0.1.0).
pub fn agent_identity(agent_id: &str, node_name: &str, cluster_name: &str) -> AgentIdentity {
    AgentIdentity {
        agent_id: agent_id.into(),
        node_name: node_name.into(),
        cluster_name: cluster_name.into(),
        cluster_arn: None,
        agent_version: "0.1.0".into(),
    }
}

/// A heartbeat from the agent `identity`, with nothing to report yet.
pub fn heartbeat(identity: AgentIdentity) -> Heartbeat {
    Heartbeat {
        agent_id: identity.agent_id,
        node_name: identity.node_name,
        cluster_name: identity.cluster_name,
        cluster_arn: identity.cluster_arn,
        agent_version: identity.agent_version,
        ..Heartbeat::default()
    }
}

/// A heartbeat's probe lines: `(program, target, state, error)` each.
pub fn probes(lines: &[(&str, &str, ProbeState, Option<&str>)]) -> Vec<ProbeStatus> {
    lines
        .iter()
        .map(|&(program, target, state, error)| ProbeStatus {
            program: program.into(),
            target: target.into(),
            state,
            error: error.map(Into::into),
        })
        .collect()
}

/// The account, detector and node findings are raised in: one EKS cluster `prod` in eu-west-1.
pub fn finding_env() -> FindingEnv {
    FindingEnv {
        account_id: "111122223333".into(),
        region: "eu-west-1".into(),
        partition: "aws".into(),
        detector_id: "det-1".into(),
        cluster_name: "prod".into(),
        cluster_arn: Some("arn:aws:eks:eu-west-1:111122223333:cluster/prod".into()),
        node_name: "ip-10-0-1-2.eu-west-1.compute.internal".into(),
        instance_id: Some("i-0abc".into()),
        agent_id: "agent-7".into(),
        agent_version: "0.1.0".into(),
    }
}
