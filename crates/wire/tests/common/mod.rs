//! Shared test fixtures: handcrafted events covering every kind and optional field,
//! proptest strategies for `Event`, and helpers to hand-build (malformed) messages.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use base64::Engine;
use peregrine_event::{
    Ancestor, Container, Detail, Event, ExecInfo, ExitInfo, Family, FileInfo, ForkInfo, Kind,
    LossInfo, MetadataState, NetInfo, NewBinary, NewBinaryEvidence, Process, Timestamp, mode_octal,
};
use peregrine_wire::{AgentIdentity, pb};
use proptest::prelude::*;
use prost::Message as _;
use uuid::Uuid;

pub const T0: i64 = 1_764_000_000_123_456_789;

pub fn identity() -> AgentIdentity {
    AgentIdentity {
        agent_id: "i-0123456789abcdef0".into(),
        node_name: "ip-10-0-1-23.ec2.internal".into(),
        cluster_name: "prod".into(),
        agent_version: "0.1.0".into(),
    }
}

fn ancestor(pid: u32, exe: &str, start: i64) -> Ancestor {
    Ancestor {
        uuid: Uuid::from_u128(0xa000 + u128::from(pid)),
        parent_uuid: Uuid::from_u128(0xa000 + u128::from(pid) - 1),
        pid,
        exe: exe.into(),
        comm: exe.rsplit('/').next().unwrap_or_default().into(),
        uid: 0,
        euid: 0,
        start_time: Timestamp::from_unix_nanos(start),
    }
}

pub fn shell() -> Process {
    Process {
        pid: 4242,
        ppid: 4200,
        uid: 1000,
        euid: 0,
        gid: 1000,
        comm: "bash".into(),
        exe: "/usr/bin/bash".into(),
        argv: vec![
            "bash".into(),
            "-c".into(),
            "echo \"x\"\n\u{1b}[31m | tee /tmp/ü".into(),
            String::new(),
        ],
        argv_truncated: true,
        cwd: "/home/ci".into(),
        uuid: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        parent_uuid: Uuid::from_u128(0xa000 + 4200),
        start_time: Timestamp::from_unix_nanos(T0 - 3_000_000_000),
        sha256: Some("30f31da8ba0660d6875fcfe48924bdf908c28c944e543728379623ad4691fe44".into()),
        cgroup_id: 0x1_0000_0042,
        mnt_ns: 4026531832,
        ld_preload: Some("/tmp/evil.so".into()),
        ld_library_path: Some(String::new()),
        lineage: vec![
            ancestor(4200, "/usr/bin/sudo", T0 - 9_000_000_000),
            ancestor(4199, "/usr/sbin/sshd", T0 - 90_000_000_000),
            Ancestor {
                parent_uuid: Uuid::nil(),
                ..ancestor(1, "", i64::MIN)
            },
        ],
    }
}

pub fn pod() -> Container {
    Container {
        id: "4f9a".repeat(16),
        runtime: "containerd".into(),
        name: Some("web".into()),
        image: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/web:3f9c2d1".into()),
        pod_name: Some("web-6d8f9c7b5-qz7xt".into()),
        pod_namespace: Some("shop".into()),
        pod_uid: Some("0c5e6a3e-2b7d-4c1e-9f3a-6b2d1e0f9a8c".into()),
        namespace: Some("k8s.io".into()),
        metadata: MetadataState::Complete,
    }
}

/// An event with an empty detail, on the process's main thread (`tid == pid`).
pub fn bare(kind: Kind, dt: i64, process: Process, container: Option<Container>) -> Event {
    Event {
        kind,
        time: Timestamp::from_unix_nanos(T0 + dt),
        tid: process.pid,
        process: Arc::new(process),
        container: container.map(Arc::new),
        detail: Detail::empty(kind).expect("an emitted kind"),
    }
}

fn file(path: &str) -> FileInfo {
    FileInfo {
        path: path.into(),
        new_path: None,
        flags: 0o2101101,
        mode: 0o644,
        mode_octal: mode_octal(0o644),
        result: 3,
        resolved: true,
        ino: 1_234_567,
        dev: 0x10302,
        truncated: false,
    }
}

/// One event of every kind, with every optional field both set and unset somewhere.
pub fn every_kind() -> Vec<Event> {
    let sh = shell();
    let host = Process {
        pid: 1,
        comm: "systemd".into(),
        exe: "/usr/lib/systemd/systemd".into(),
        uuid: Uuid::nil(),
        sha256: None,
        ..Process::default()
    };
    // The shell's other threads: one above its pid, one below (a negative delta).
    let threaded = 4250;
    let low_tid = 7; // tid < pid: negative delta
    let pending = Container {
        id: "ab".repeat(32),
        runtime: "containerd".into(),
        metadata: MetadataState::Pending,
        ..Container::default()
    };
    let odd_sha = Process {
        sha256: Some("30F31DA8BA0660D6875FCFE48924BDF908C28C944E543728379623AD4691FE44".into()),
        ..sh.clone()
    };

    let mut v = Vec::new();
    let mut e = bare(Kind::Exec, 0, sh.clone(), Some(pod()));
    e.detail = Detail::Exec(ExecInfo {
        filename: "./run.sh".into(),
        exe_dev: 0x4c,
        exe_ino: 99,
        env_truncated: true,
        new_binary: Some(NewBinary {
            evidence: NewBinaryEvidence::ObservedWrite,
            modified_by: Some(ancestor(4100, "/usr/bin/curl", T0 - 5_000)),
            modified_at: Some(Timestamp::from_unix_nanos(T0 - 1_000)),
        }),
    });
    v.push(e);
    let mut e = bare(Kind::Exec, 10, odd_sha, None);
    e.detail = Detail::Exec(ExecInfo {
        filename: "/proc/self/fd/3".into(),
        new_binary: Some(NewBinary {
            evidence: NewBinaryEvidence::OverlayUpper,
            modified_by: None,
            modified_at: None,
        }),
        ..ExecInfo::default()
    });
    v.push(e);
    let mut e = bare(Kind::Fork, 5, host.clone(), None); // time goes backwards
    e.detail = Detail::Fork(ForkInfo {
        child_pid: 4243,
        child_uuid: Uuid::from_u128(77),
    });
    v.push(e);
    let mut e = bare(Kind::Exit, 20, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::Exit(ExitInfo {
        code: Some(0),
        signal: None,
    });
    v.push(e);
    let mut e = bare(Kind::Exit, 21, sh.clone(), Some(pending.clone()));
    e.tid = low_tid;
    e.detail = Detail::Exit(ExitInfo {
        code: None,
        signal: Some(9),
    });
    v.push(e);
    let mut e = bare(Kind::Exit, 22, host.clone(), None);
    e.detail = Detail::Exit(ExitInfo::default());
    v.push(e);

    let mut e = bare(Kind::Open, 30, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::File(file("/var/log/app.log"));
    v.push(e);
    let mut e = bare(Kind::Open, 31, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::File(FileInfo {
        mode: 0,
        mode_octal: String::new(),
        result: -13,
        resolved: false,
        ino: 0,
        dev: 0,
        truncated: true,
        ..file("relative/../path\n\"quoted\"")
    });
    v.push(e);
    let mut e = bare(Kind::Rename, 32, sh.clone(), Some(pod()));
    e.detail = Detail::File(FileInfo {
        new_path: Some("/var/log/app.log.1".into()),
        flags: 1,
        mode: 0,
        mode_octal: String::new(),
        result: 0,
        ..file("/var/log/app.log")
    });
    v.push(e);
    let mut e = bare(Kind::Link, 33, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        new_path: Some("/tmp/hard".into()),
        ..file("/etc/shadow")
    });
    v.push(e);
    let mut e = bare(Kind::Symlink, 34, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        new_path: Some(String::new()),
        ..file("/etc/passwd")
    });
    v.push(e);
    let mut e = bare(Kind::Unlink, 35, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        flags: 0x200,
        mode: 0,
        mode_octal: String::new(),
        ..file("/tmp/x")
    });
    v.push(e);
    let mut e = bare(Kind::Chmod, 36, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        mode: 0o104755,
        mode_octal: mode_octal(0o104755),
        ..file("/tmp/suid")
    });
    v.push(e);
    let mut e = bare(Kind::Chmod, 37, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        mode: 0,
        mode_octal: mode_octal(0), // "0": not empty
        ..file("/tmp/none")
    });
    v.push(e);
    let mut e = bare(Kind::Chmod, 38, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        mode: 0o755,
        mode_octal: "0755 (not canonical)".into(),
        ..file("/tmp/odd")
    });
    v.push(e);

    let nets = [
        (
            Family::Inet,
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 40, 17))),
            Some(5432),
            None,
            0,
        ),
        (
            Family::Inet,
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Some(0),
            None,
            -115,
        ),
        (
            Family::Inet6,
            Some(IpAddr::V6(Ipv6Addr::new(0x2600, 0x1f18, 0, 0, 0, 0, 0, 1))),
            Some(443),
            None,
            -111,
        ),
        (
            Family::Inet6,
            Some(IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped())),
            Some(65535),
            None,
            0,
        ),
        (
            Family::Unix,
            None,
            None,
            Some("/run/containerd/containerd.sock".to_owned()),
            0,
        ),
        (
            Family::Unix,
            None,
            None,
            Some("@abstract\u{0}name".to_owned()),
            -2,
        ),
        (Family::Unix, None, None, None, 0),
    ];
    for (i, (family, address, port, path, result)) in nets.into_iter().enumerate() {
        let mut e = bare(Kind::Connect, 40 + i as i64, sh.clone(), Some(pod()));
        e.tid = threaded;
        e.detail = Detail::Net(NetInfo {
            family,
            address,
            port,
            path,
            result,
        });
        v.push(e);
    }

    let mut e = bare(Kind::Loss, 60, host.clone(), None);
    e.detail = Detail::Loss(LossInfo {
        kernel_ringbuf_full: 12,
        kernel_no_scratch: 1,
        user_queue_full: u64::MAX,
        downstream: 0,
    });
    v.push(e);
    // Kinds the agent consumes itself (cgroup_mkdir, cgroup_rmdir) have no detail and are never
    // shipped; an exit with an empty detail stands in for the smallest event.
    v.push(bare(Kind::Exit, 61, host.clone(), None));
    let mut e = bare(Kind::Exit, 0, host, Some(pending));
    e.time = Timestamp::from_unix_nanos(i64::MIN); // the largest possible step back
    v.push(e);
    v
}

/// Frames a hand-built envelope the way the encoder does.
pub fn seal(envelope: &pb::Envelope) -> String {
    seal_bytes(&envelope.encode_to_vec())
}

pub fn seal_bytes(raw: &[u8]) -> String {
    let compressed = zstd::bulk::compress(raw, 3).expect("zstd");
    base64::engine::general_purpose::STANDARD.encode(compressed)
}

pub fn header(version: u32, events: u32, processes: u32, containers: u32) -> pb::Header {
    pb::Header {
        schema_version: version,
        agent_id: "i-1".into(),
        node_name: "n".into(),
        cluster_name: "c".into(),
        agent_version: "0".into(),
        sequence: 9,
        created_at_unix_ns: T0,
        event_count: events,
        process_count: processes,
        container_count: containers,
    }
}

/// Repeats every event of a batch `n` times in total (all columns and details).
pub fn repeat_events(b: &mut pb::EventBatch, n: usize) {
    b.kinds = vec![b.kinds[0]; n];
    b.time_deltas_ns = vec![b.time_deltas_ns[0]; n];
    b.process_refs = vec![b.process_refs[0]; n];
    b.tid_deltas = vec![b.tid_deltas[0]; n];
    b.container_refs = vec![b.container_refs[0]; n];
    b.details = vec![b.details[0].clone(); n];
}

/// A minimal valid batch: one open by one host process.
pub fn minimal_batch() -> pb::Envelope {
    pb::Envelope {
        header: Some(header(1, 1, 1, 0)),
        body: Some(pb::envelope::Body::Batch(pb::EventBatch {
            base_time_unix_ns: T0,
            strings: vec!["sh".into(), "/bin/sh".into(), "/".into(), "/tmp/a".into()],
            ancestors: vec![],
            processes: vec![pb::Process {
                pid: 10,
                comm: 0,
                exe: 1,
                argv: vec![0],
                cwd: 2,
                ..pb::Process::default()
            }],
            containers: vec![],
            kinds: vec![Kind::Open as u32],
            time_deltas_ns: vec![0],
            process_refs: vec![0],
            tid_deltas: vec![0],
            container_refs: vec![0],
            details: vec![pb::EventDetails {
                detail: Some(pb::event_details::Detail::File(pb::FileInfo {
                    path: 3,
                    ..pb::FileInfo::default()
                })),
            }],
        })),
    }
}

// ---- proptest strategies ----------------------------------------------------------------

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "(?s).{0,12}",
        1 => Just(String::new()),
        1 => "/[a-z/._-]{1,40}",
    ]
}

pub fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

pub fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![1 => Just(Uuid::nil()), 4 => any::<u128>().prop_map(Uuid::from_u128)]
}

pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>(),
        (T0 - 10_000_000_000..T0 + 10_000_000_000),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
    .prop_map(Timestamp::from_unix_nanos)
}

pub fn ancestor_s() -> impl Strategy<Value = Ancestor> {
    (
        uuid(),
        uuid(),
        any::<u32>(),
        text(),
        text(),
        any::<u32>(),
        any::<u32>(),
        timestamp(),
    )
        .prop_map(
            |(uuid, parent_uuid, pid, exe, comm, uid, euid, start_time)| Ancestor {
                uuid,
                parent_uuid,
                pid,
                exe,
                comm,
                uid,
                euid,
                start_time,
            },
        )
}

pub fn sha256() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[0-9a-f]{64}".prop_map(Some),
        "[0-9a-fA-F]{63,65}".prop_map(Some),
        text().prop_map(Some),
    ]
}

pub fn process_s() -> impl Strategy<Value = Process> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            text(),
            text(),
            prop::collection::vec(text(), 0..5),
            any::<bool>(),
            text(),
        ),
        (
            uuid(),
            uuid(),
            timestamp(),
            sha256(),
            any::<u64>(),
            any::<u32>(),
        ),
        (
            opt_text(),
            opt_text(),
            prop::collection::vec(ancestor_s(), 0..4),
        ),
    )
        .prop_map(
            |(
                (pid, ppid, uid, euid, gid),
                (comm, exe, argv, argv_truncated, cwd),
                (uuid, parent_uuid, start_time, sha256, cgroup_id, mnt_ns),
                (ld_preload, ld_library_path, lineage),
            )| Process {
                pid,
                ppid,
                uid,
                euid,
                gid,
                comm,
                exe,
                argv,
                argv_truncated,
                cwd,
                uuid,
                parent_uuid,
                start_time,
                sha256,
                cgroup_id,
                mnt_ns,
                ld_preload,
                ld_library_path,
                lineage,
            },
        )
}

pub fn container_s() -> impl Strategy<Value = Container> {
    (
        text(),
        text(),
        (
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
        ),
        prop::sample::select(vec![
            MetadataState::Complete,
            MetadataState::Pending,
            MetadataState::Unavailable,
            MetadataState::NotFound,
        ]),
    )
        .prop_map(
            |(
                id,
                runtime,
                (name, image, pod_name, pod_namespace, pod_uid, namespace),
                metadata,
            )| {
                Container {
                    id,
                    runtime,
                    name,
                    image,
                    pod_name,
                    pod_namespace,
                    pod_uid,
                    namespace,
                    metadata,
                }
            },
        )
}

pub fn exec_s() -> impl Strategy<Value = ExecInfo> {
    let new_binary = (
        prop::sample::select(vec![
            NewBinaryEvidence::OverlayUpper,
            NewBinaryEvidence::ObservedWrite,
        ]),
        prop::option::of(ancestor_s()),
        prop::option::of(timestamp()),
    )
        .prop_map(|(evidence, modified_by, modified_at)| NewBinary {
            evidence,
            modified_by,
            modified_at,
        });
    (
        text(),
        any::<u32>(),
        any::<u64>(),
        any::<bool>(),
        prop::option::of(new_binary),
    )
        .prop_map(
            |(filename, exe_dev, exe_ino, env_truncated, new_binary)| ExecInfo {
                filename,
                exe_dev,
                exe_ino,
                env_truncated,
                new_binary,
            },
        )
}

pub fn file_s() -> impl Strategy<Value = FileInfo> {
    (
        (
            text(),
            opt_text(),
            any::<u32>(),
            any::<u32>(),
            0..3u8,
            text(),
        ),
        (
            any::<i64>(),
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (path, new_path, flags, mode, how, other),
                (result, resolved, ino, dev, truncated),
            )| {
                FileInfo {
                    path,
                    new_path,
                    flags,
                    mode,
                    mode_octal: match how {
                        0 => String::new(),
                        1 => mode_octal(mode),
                        _ => other,
                    },
                    result,
                    resolved,
                    ino,
                    dev,
                    truncated,
                }
            },
        )
}

pub fn net_s() -> impl Strategy<Value = NetInfo> {
    let address = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ];
    (
        prop::sample::select(vec![Family::Inet, Family::Inet6, Family::Unix]),
        prop::option::of(address),
        prop::option::of(any::<u16>()),
        opt_text(),
        any::<i64>(),
    )
        .prop_map(|(family, address, port, path, result)| NetInfo {
            family,
            address,
            port,
            path,
            result,
        })
}

pub fn loss_s() -> impl Strategy<Value = LossInfo> {
    any::<[u64; 4]>().prop_map(|[a, b, c, d]| LossInfo {
        kernel_ringbuf_full: a,
        kernel_no_scratch: b,
        user_queue_full: c,
        downstream: d,
    })
}

/// An event's kind and its detail: any kind that is shipped, with a detail of the variant the
/// kind table gives it.
pub fn kind_detail_s() -> impl Strategy<Value = (Kind, Detail)> {
    let fork = (any::<u32>(), uuid()).prop_map(|(child_pid, child_uuid)| ForkInfo {
        child_pid,
        child_uuid,
    });
    let exit = (
        prop::option::of(any::<i32>()),
        prop::option::of(any::<i32>()),
    )
        .prop_map(|(code, signal)| ExitInfo { code, signal });
    let detail = prop_oneof![
        2 => exec_s().prop_map(Detail::Exec),
        2 => fork.prop_map(Detail::Fork),
        2 => exit.prop_map(Detail::Exit),
        3 => file_s().prop_map(Detail::File),
        3 => net_s().prop_map(Detail::Net),
        1 => loss_s().prop_map(Detail::Loss),
    ];
    (detail, any::<prop::sample::Index>()).prop_map(|(detail, i)| {
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| detail.fits(*k)).collect();
        (*i.get(&kinds), detail)
    })
}

/// A batch whose events share processes and containers (as real batches do), with varying
/// thread ids, so that the tables and the per-event deltas are both exercised.
pub fn batch_s(max_events: usize) -> impl Strategy<Value = Vec<Event>> {
    (
        prop::collection::vec(process_s().prop_map(Arc::new), 1..4),
        prop::collection::vec(container_s().prop_map(Arc::new), 0..3),
    )
        .prop_flat_map(move |(procs, conts)| {
            let n_p = procs.len();
            let n_c = conts.len();
            let event = (
                kind_detail_s(),
                timestamp(),
                0..n_p,
                prop::option::of(any::<u32>()),
                prop::option::of(0..n_c.max(1)),
            );
            prop::collection::vec(event, 0..max_events).prop_map(move |evs| {
                evs.into_iter()
                    .map(|((kind, detail), time, p, tid, c)| {
                        // Events of one process share its snapshot, as the agent's do.
                        let process = Arc::clone(&procs[p]);
                        Event {
                            kind,
                            time,
                            // The main thread unless another one was drawn.
                            tid: tid.unwrap_or(process.pid),
                            process,
                            container: c.and_then(|c| conts.get(c).cloned()),
                            detail,
                        }
                    })
                    .collect()
            })
        })
}
