//! The one place a test event is built: an [`EventSpec`] over fixed, ordinary defaults.
//!
//! The defaults: uid and euid 1000, `/usr/local/bin/app` (argv `[app]`) in `/srv`, started a
//! minute before the event by `/bin/sh` under containerd-shim, in container `web` (image
//! `public.ecr.aws/nginx/nginx:1.27`) of pod `default/web-1`. Opens succeed with fd 3 and mode
//! 0644, other file kinds and connects with 0. An io_uring asks for 8 entries and gets fd 4; a
//! compat syscall is i386 `open` (5), made by a 32-bit process, returning fd 3.

use std::sync::Arc;

use peregrine_event::{
    Ancestor, CompatSyscallInfo, Container, Detail, Event, ExecInfo, Family, FileInfo, IoUringInfo,
    Kind, KindFamily, MetadataState, NetInfo, NewBinary, NewBinaryEvidence, Process, Timestamp,
};

use crate::cases::schema::EventSpec;

/// The time of every built event (2025-11-24T16:00:00Z), in Unix nanoseconds.
pub const T0: i64 = 1_764_000_000_000_000_000;
/// The default container's id.
pub const CONTAINER_ID: &str = "4f1c9e7d2a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5";

const PID: u32 = 4242;

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn comm_of(path: &str) -> String {
    file_name(path).chars().take(15).collect()
}

fn ancestor(exe: &str, pid: u32) -> Ancestor {
    Ancestor {
        pid,
        exe: exe.into(),
        comm: comm_of(exe),
        start_time: Timestamp::from_unix_nanos(T0 - 120_000_000_000),
        ..Ancestor::default()
    }
}

fn container(spec: &EventSpec) -> Option<Arc<Container>> {
    if spec.host {
        return None;
    }
    let mut c = Container {
        id: CONTAINER_ID.into(),
        runtime: "containerd".into(),
        name: Some("web".into()),
        image: Some("public.ecr.aws/nginx/nginx:1.27".into()),
        pod_name: Some("web-1".into()),
        pod_namespace: Some("default".into()),
        pod_uid: Some("8d6b5b4c-1f0e-4a7c-9a51-2f1e7f3c0b11".into()),
        namespace: Some("k8s.io".into()),
        metadata: MetadataState::Complete,
    };
    if let Some(s) = &spec.container {
        if let Some(id) = &s.id {
            c.id.clone_from(id);
        }
        for (slot, v) in [
            (&mut c.name, &s.name),
            (&mut c.image, &s.image),
            (&mut c.pod_name, &s.pod_name),
            (&mut c.pod_namespace, &s.pod_namespace),
        ] {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
    }
    Some(Arc::new(c))
}

fn process(spec: &EventSpec) -> Process {
    let mut p = Process {
        pid: PID,
        ppid: 4200,
        uid: 1000,
        euid: 1000,
        gid: 1000,
        comm: "app".into(),
        exe: "/usr/local/bin/app".into(),
        argv: vec!["app".into()],
        cwd: "/srv".into(),
        start_time: Timestamp::from_unix_nanos(T0 - 60_000_000_000),
        lineage: vec![
            ancestor("/bin/sh", 4200),
            ancestor("/usr/bin/containerd-shim-runc-v2", 1),
        ],
        ..Process::default()
    };
    if let Some(exe) = &spec.exe {
        p.exe.clone_from(exe);
        p.comm = comm_of(exe);
        // At exec argv is the new program's; otherwise only argv[0] follows the exe.
        if spec.kind == Kind::Exec {
            p.argv = vec![file_name(exe).to_owned()];
        } else if let Some(a0) = p.argv.first_mut() {
            *a0 = file_name(exe).to_owned();
        }
    }
    if let Some(comm) = &spec.comm {
        p.comm.clone_from(comm);
    }
    if let Some(argv) = &spec.argv {
        p.argv.clone_from(argv);
    }
    p.uid = spec.uid.unwrap_or(p.uid);
    p.euid = spec.euid.unwrap_or(p.euid);
    if let Some(cwd) = &spec.cwd {
        p.cwd.clone_from(cwd);
    }
    p.ld_preload.clone_from(&spec.ld_preload);
    p.ld_library_path.clone_from(&spec.ld_library_path);
    for exe in spec.parents.iter().rev() {
        p.lineage.insert(0, ancestor(exe, 4100));
    }
    p
}

/// Builds the event `spec` describes, or says which of its fields does not fit its kind.
pub fn build_event(spec: &EventSpec) -> Result<Event, String> {
    let kind = spec.kind;
    let is_file = kind.family() == KindFamily::File;
    let misplaced: Vec<&str> = [
        (
            "path",
            spec.path.is_some() && !is_file && kind != Kind::Connect,
        ),
        ("new_path", spec.new_path.is_some() && !is_file),
        (
            "flags",
            spec.flags.is_some() && !is_file && kind != Kind::IoUring,
        ),
        ("mode", spec.mode.is_some() && !is_file),
        (
            "result",
            spec.result.is_some()
                && !is_file
                && !matches!(kind, Kind::Connect | Kind::IoUring | Kind::CompatSyscall),
        ),
        ("entries", spec.entries.is_some() && kind != Kind::IoUring),
        ("nr", spec.nr.is_some() && kind != Kind::CompatSyscall),
        (
            "syscall",
            spec.syscall.is_some() && kind != Kind::CompatSyscall,
        ),
        (
            "from_64bit",
            spec.from_64bit.is_some() && kind != Kind::CompatSyscall,
        ),
        ("path_changed", spec.path_changed && !is_file),
        ("path_unverified", spec.path_unverified && !is_file),
        ("family", spec.family.is_some() && kind != Kind::Connect),
        ("address", spec.address.is_some() && kind != Kind::Connect),
        ("port", spec.port.is_some() && kind != Kind::Connect),
        ("filename", spec.filename.is_some() && kind != Kind::Exec),
        (
            "new_binary",
            spec.new_binary.is_some() && kind != Kind::Exec,
        ),
    ]
    .into_iter()
    .filter_map(|(name, bad)| bad.then_some(name))
    .collect();
    if !misplaced.is_empty() {
        return Err(format!(
            "{} do(es) not apply to {} events",
            misplaced
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            kind.name()
        ));
    }
    let process = process(spec);
    let mut detail =
        Detail::empty(kind).ok_or_else(|| format!("{} events are never emitted", kind.name()))?;
    if is_file {
        let Some(path) = &spec.path else {
            return Err(format!("a {} event needs `path`", kind.name()));
        };
        if matches!(kind, Kind::Rename | Kind::Link | Kind::Symlink) != spec.new_path.is_some() {
            return Err(format!(
                "`new_path` is given for rename, link and symlink (the new name, or the symlink's own path), and only for them; this is a {} event",
                kind.name()
            ));
        }
        detail = Detail::File(FileInfo {
            path: path.clone(),
            new_path: spec.new_path.clone(),
            flags: spec.flags.map_or(0, |f| f.0),
            mode: spec.mode.map_or(0o644, |m| m.0),
            result: spec
                .result
                .unwrap_or(if kind == Kind::Open { 3 } else { 0 }),
            path_changed: spec.path_changed,
            path_unverified: spec.path_unverified,
            ..FileInfo::default()
        });
    }
    match kind {
        Kind::Exec => {
            detail = Detail::Exec(ExecInfo {
                filename: spec.filename.clone().unwrap_or_else(|| process.exe.clone()),
                new_binary: spec.new_binary.as_ref().map(|nb| NewBinary {
                    evidence: if nb.modified_by.is_some() {
                        NewBinaryEvidence::ObservedWrite
                    } else {
                        NewBinaryEvidence::OverlayUpper
                    },
                    modified_by: nb.modified_by.as_deref().map(|exe| ancestor(exe, 77)),
                    modified_at: nb
                        .modified_by
                        .as_ref()
                        .map(|_| Timestamp::from_unix_nanos(T0 - 5_000_000_000)),
                }),
                ..ExecInfo::default()
            });
        }
        Kind::Connect => {
            let family = match (spec.family, &spec.address, &spec.path) {
                (Some(f), _, _) => f,
                (None, Some(a), None) if a.is_ipv6() => Family::Inet6,
                (None, Some(_), None) => Family::Inet,
                (None, None, Some(_)) => Family::Unix,
                _ => {
                    return Err(
                        "a connect event needs `path` (a Unix socket) or `address` and `port`"
                            .into(),
                    );
                }
            };
            detail = Detail::Net(NetInfo {
                family,
                address: spec.address,
                port: spec.port,
                path: spec.path.clone(),
                result: spec.result.unwrap_or(0),
            });
        }
        Kind::IoUring => {
            detail = Detail::IoUring(IoUringInfo {
                entries: spec.entries.unwrap_or(8),
                flags: spec.flags.map_or(0, |f| f.0),
                result: spec.result.unwrap_or(4),
            });
        }
        Kind::CompatSyscall => {
            let nr = spec.nr.unwrap_or(5);
            detail = Detail::CompatSyscall(CompatSyscallInfo {
                nr,
                name: spec
                    .syscall
                    .clone()
                    .or_else(|| (nr == 5).then(|| "open".to_owned())),
                result: Some(spec.result.unwrap_or(3)),
                from_64bit: spec.from_64bit.unwrap_or(false),
            });
        }
        _ => {}
    }
    let ev = Event {
        kind,
        time: Timestamp::from_unix_nanos(T0),
        tid: PID,
        process: Arc::new(process),
        container: container(spec),
        detail,
    };
    Ok(ev)
}
