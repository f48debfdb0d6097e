//! Every event kind walks the whole user-space path, without root: a kernel record built from
//! node-agent-common's `#[repr(C)]` structs is decoded by `node_agent::decode`, becomes an
//! `Event` through the agent's own enrichment, crosses the wire (`peregrine_wire`), and is seen
//! by a rule on `kind` and on a field of its family (`peregrine_detect`). The internal cgroup
//! kinds are decoded, consumed by the agent and never emitted.
//!
//! A new kind fails here until it is handled at every layer: [`sample`] matches on `Kind`
//! without a wildcard (the compiler asks for the new kind's record), and the test walks
//! `Kind::ALL` at run time (a record nothing decodes, converts, ships or exposes to rules fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use node_agent::{
    decode::{DecodeError, RawBody, decode},
    enrich::{EnrichConfig, Enricher},
};
use node_agent_common::{
    AF_INET, COMPAT_FROM_64BIT, COMPAT_RETURNED, CgroupRecord, CompatSyscallRecord, ConnectRecord,
    EventHeader, ExecRecord, ExitRecord, FileRecord, ForkRecord, IoUringRecord, Kind, O_CREAT,
    O_WRONLY, PATH_RESOLVED,
};
use peregrine_detect::{Engine, RuleSet};
use peregrine_event::{Event, LossInfo, Timestamp};
use peregrine_wire::{AgentIdentity, BatchEncoder, EncoderConfig, Message};

/// The container id in the sample cgroup path.
const CONTAINER_ID: &str = "5b1e7c0ffee0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607182930";
/// A cgroup id no real cgroup has, so that only the sample mkdir can map it.
const SAMPLE_CGROUP_ID: u64 = 0x7ead_0000_0000_0001;

/// What a kind's sample is, and what the agent must do with it.
enum Sample {
    /// A kernel record the agent turns into an event, and a family field whose value the event
    /// must carry to the rules (`field`, YAML `value`).
    Emitted {
        record: Vec<u8>,
        field: &'static str,
        value: String,
    },
    /// A kernel record the agent consumes itself and never emits.
    Consumed { record: Vec<u8> },
    /// An event the agent generates itself: the kernel never writes it, so a record of this
    /// kind must not decode.
    Generated,
}

/// Each kind's sample. No wildcard: a new kind does not compile until it has one.
fn sample(kind: Kind) -> Sample {
    match kind {
        Kind::Exec => {
            // filename, exe, cwd, argv, environment.
            let fields: [&[u8]; 5] = [
                b"./kinds-sample",
                b"/usr/bin/true",
                b"/tmp",
                b"kinds-sample\0--flag\0",
                b"HOME=/root\0LD_PRELOAD=/tmp/x.so\0",
            ];
            let data = fields.concat();
            let rec = ExecRecord {
                header: header(kind, data.len()),
                exe_ino: 1,
                exe_mtime_sec: 2,
                exe_dev: 3,
                exe_mtime_nsec: 4,
                filename_len: len(fields[0]),
                exe_len: len(fields[1]),
                cwd_len: len(fields[2]),
                argv_len: len(fields[3]),
                env_len: len(fields[4]),
                _pad: [0; 3],
            };
            emitted(record(&rec, &data), "exec.filename", "./kinds-sample")
        }
        Kind::Fork => {
            let rec = ForkRecord {
                header: header(kind, 0),
                child_start_boottime_ns: 5_000_000_000,
                child_tgid: 4_194_000,
                _pad: 0,
            };
            emitted(record(&rec, &[]), "fork.child_pid", "4194000")
        }
        Kind::Exit => {
            let rec = ExitRecord {
                header: header(kind, 0),
                // A wait(2) status: exit code 3.
                exit_code: 3 << 8,
                _pad: 0,
            };
            emitted(record(&rec, &[]), "exit.code", "3")
        }
        Kind::Open | Kind::Rename | Kind::Link | Kind::Symlink | Kind::Unlink | Kind::Chmod => {
            let path = format!("/tmp/peregrine-kinds/{}", kind.name());
            // path, path base, new path, new path base.
            let new_path: &[u8] = match kind {
                Kind::Rename | Kind::Link | Kind::Symlink => b"renamed",
                _ => b"",
            };
            let new_base: &[u8] = if new_path.is_empty() { b"" } else { b"/tmp" };
            let data = [path.as_bytes(), b"", new_path, new_base].concat();
            let mut rec = FileRecord {
                header: header(kind, data.len()),
                result: 0,
                ino: 7,
                dev: 8,
                flags: if kind == Kind::Open {
                    O_WRONLY | O_CREAT
                } else {
                    0
                },
                mode: 0o644,
                syscall: 257,
                path_len: len(path.as_bytes()),
                path_base_len: 0,
                new_path_len: len(new_path),
                new_path_base_len: len(new_base),
            };
            rec.header.flags = PATH_RESOLVED;
            emitted(record(&rec, &data), "file.path", &path)
        }
        Kind::Connect => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&[10, 1, 2, 3]);
            let rec = ConnectRecord {
                header: header(kind, 0),
                result: 0,
                addr,
                family: AF_INET,
                port: 8443,
                path_len: 0,
                _pad: 0,
            };
            emitted(record(&rec, &[]), "net.port", "8443")
        }
        Kind::IoUring => {
            let rec = IoUringRecord {
                header: header(kind, 0),
                result: 5,
                entries: 64,
                // IORING_SETUP_SQPOLL
                flags: 2,
            };
            emitted(record(&rec, &[]), "io_uring.flags", "2")
        }
        Kind::CompatSyscall => {
            let rec = CompatSyscallRecord {
                header: header(kind, 0),
                result: 3,
                // i386 open
                nr: 5,
                compat_flags: COMPAT_RETURNED | COMPAT_FROM_64BIT,
            };
            emitted(record(&rec, &[]), "compat_syscall.nr", "5")
        }
        Kind::Loss => Sample::Generated,
        Kind::CgroupMkdir | Kind::CgroupRmdir => {
            let path = format!(
                "/kubepods.slice/kubepods-besteffort.slice/\
                 kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/\
                 cri-containerd-{CONTAINER_ID}.scope"
            );
            let rec = CgroupRecord {
                header: header(kind, path.len()),
                cgroup_id: SAMPLE_CGROUP_ID,
                level: 4,
                path_len: len(path.as_bytes()),
                _pad: 0,
            };
            Sample::Consumed {
                record: record(&rec, path.as_bytes()),
            }
        }
    }
}

fn emitted(record: Vec<u8>, field: &'static str, value: &str) -> Sample {
    Sample::Emitted {
        record,
        field,
        value: value.to_owned(),
    }
}

fn len(b: &[u8]) -> u16 {
    u16::try_from(b.len()).unwrap()
}

/// A record's bytes: its fixed part, then its variable data.
fn record<T: Copy>(fixed: &T, data: &[u8]) -> Vec<u8> {
    // SAFETY: the records are repr(C) PODs without padding (tests/layout.rs); a byte view of
    // one is what the kernel writes.
    let mut out = unsafe {
        std::slice::from_raw_parts((fixed as *const T).cast::<u8>(), size_of::<T>()).to_vec()
    };
    out.extend_from_slice(data);
    out
}

/// A header for this test process, as the kernel would fill it. The start time need not be
/// the real one: the process table then takes the header's word for the process.
fn header(kind: Kind, data_len: usize) -> EventHeader {
    let mnt_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let mnt_ns = mnt_ns.to_str().unwrap();
    let mnt_ns: u32 = mnt_ns["mnt:[".len()..mnt_ns.len() - 1].parse().unwrap();
    let me = std::process::id();
    EventHeader {
        kind: kind as u32,
        flags: 0,
        ktime_ns: 2_000_000_000,
        start_boottime_ns: 1_000_000_000,
        parent_start_boottime_ns: 0,
        cgroup_id: 1,
        tgid: me,
        tid: me,
        ppid: 1,
        uid: 0,
        euid: 0,
        gid: 0,
        mnt_ns,
        data_len: u32::try_from(data_len).unwrap(),
        comm: *b"kinds-test\0\0\0\0\0\0",
    }
}

/// An enricher that never reaches containerd (there is none here): lookups fail fast and the
/// container, when there is one, is reported with `metadata: unavailable`.
fn enricher() -> Enricher {
    Enricher::new(EnrichConfig {
        containerd_socket: "/nonexistent/peregrine-kinds-test.sock".into(),
        containerd_timeout: Duration::from_millis(50),
        ..EnrichConfig::default()
    })
}

/// The event after a trip over the wire.
fn over_the_wire(ev: &Event) -> Event {
    let identity = AgentIdentity {
        agent_id: "kinds-test".into(),
        node_name: "node".into(),
        cluster_name: "cluster".into(),
        cluster_arn: None,
        agent_version: "0".into(),
    };
    let mut encoder = BatchEncoder::new(identity, EncoderConfig::default()).unwrap();
    let messages = encoder
        .encode(std::slice::from_ref(ev), Timestamp::now())
        .unwrap();
    assert_eq!(messages.len(), 1, "{}", ev.kind.name());
    let Message::Batch { mut events, .. } = peregrine_wire::decode(&messages[0].body).unwrap()
    else {
        panic!("{}: not a batch", ev.kind.name())
    };
    assert_eq!(events.len(), 1, "{}", ev.kind.name());
    events.remove(0)
}

/// A rule on `kind` and, when the kind's family has fields, on one of them.
fn rule(kind: Kind, field: Option<(&str, &str)>) -> Engine {
    let mut condition = format!(
        "        - {{field: kind, op: eq, value: {}}}\n",
        kind.name()
    );
    if let Some((field, value)) = field {
        condition += &format!("        - {{field: {field}, op: eq, value: {value}}}\n");
    }
    let yaml = format!(
        "version: 1.0.0
rules:
  - id: kinds-walk-{name}
    maturity: stable
    title: A {name} event reached the rules
    type: Execution:Runtime/KindsWalk
    severity: 2
    kinds: [{name}]
    condition:
      all:
{condition}",
        name = kind.name()
    );
    let rules = RuleSet::from_yaml("kinds.yaml", &yaml)
        .unwrap_or_else(|e| panic!("{}: the rule does not compile: {e}\n{yaml}", kind.name()));
    let engine = Engine::new([rules]);
    assert!(
        engine.warnings().is_empty(),
        "{}: {:?}",
        kind.name(),
        engine.warnings()
    );
    engine
}

fn assert_rule_matches(engine: &Engine, ev: &Event) {
    let mut matches = Vec::new();
    engine.evaluate(ev, &mut matches);
    let ids: Vec<&str> = matches.iter().map(|m| m.rule_id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("kinds-walk-{}", ev.kind.name())],
        "{}: the rule does not see the event's fields",
        ev.kind.name()
    );
}

#[tokio::test]
async fn every_kind_walks_from_kernel_record_to_rules() {
    let mut walked = Vec::new();
    for kind in Kind::ALL {
        match sample(kind) {
            Sample::Emitted {
                record,
                field,
                value,
            } => {
                let raw = decode(&record).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
                assert_eq!(raw.kind(), kind);
                let ev = enricher()
                    .enrich(raw)
                    .await
                    .unwrap_or_else(|| panic!("{kind:?}: the agent did not emit it"));
                assert_eq!(ev.kind, kind);
                assert!(ev.detail.fits(kind), "{kind:?}: {}", ev.detail.key());
                assert_eq!(Some(ev.detail.key()), kind.detail());
                let back = over_the_wire(&ev);
                assert_eq!(back, ev, "{kind:?}: changed on the wire");
                assert_rule_matches(&rule(kind, Some((field, &value))), &back);
            }
            Sample::Consumed { record } => {
                assert_eq!(kind.detail(), None, "{kind:?} has a detail: emit it");
                consumed(kind, &record).await;
            }
            Sample::Generated => {
                // Never a kernel record...
                let rec = record(&header(kind, 0), &[]);
                assert_eq!(decode(&rec), Err(DecodeError::UnknownKind(kind as u32)));
                // ... but an event the agent makes, and ships like any other.
                let ev = generated(kind, &mut enricher());
                assert_eq!(ev.kind, kind);
                assert!(ev.detail.fits(kind), "{kind:?}: {}", ev.detail.key());
                let back = over_the_wire(&ev);
                assert_eq!(back, ev, "{kind:?}: changed on the wire");
                let pid = back.process.pid.to_string();
                assert_rule_matches(&rule(kind, Some(("process.pid", &pid))), &back);
            }
        }
        walked.push(kind);
    }
    assert_eq!(walked, Kind::ALL);
}

/// The event the agent generates for a kind the kernel never writes.
fn generated(kind: Kind, enricher: &mut Enricher) -> Event {
    match kind {
        Kind::Loss => enricher.loss_event(LossInfo {
            kernel_ringbuf_full: 1,
            kernel_no_scratch: 2,
            user_queue_full: 3,
            downstream: 4,
            tick: 5,
        }),
        _ => panic!("{kind:?} is not generated by the agent"),
    }
}

/// A cgroup record is decoded, used to attribute events to the cgroup's container (mkdir) or
/// to forget it (rmdir), and never emitted.
async fn consumed(kind: Kind, record: &[u8]) {
    let raw = decode(record).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    let RawBody::Cgroup { id, path, created } = raw.body.clone() else {
        panic!("{kind:?}: decoded as {:?}", raw.body)
    };
    assert_eq!(id, SAMPLE_CGROUP_ID);
    assert!(path.ends_with(&format!("cri-containerd-{CONTAINER_ID}.scope")));
    assert_eq!(created, kind == Kind::CgroupMkdir);

    let mut e = enricher();
    // An event of a process in that cgroup, after the cgroup was created: the ring-buffer
    // reader hands a created cgroup to the container resolver ahead of the queue
    // (`ringbuf::early`), and enrichment drops the record itself.
    let mkdir = decode(&record_of(Kind::CgroupMkdir)).unwrap();
    let RawBody::Cgroup {
        id,
        ref path,
        created: true,
    } = mkdir.body
    else {
        panic!("mkdir decoded as {:?}", mkdir.body)
    };
    e.containers.on_cgroup_created(id, path);
    assert_eq!(
        e.enrich(mkdir.clone()).await,
        None,
        "cgroup_mkdir was emitted"
    );
    assert_eq!(
        container_of_an_event(&mut e, SAMPLE_CGROUP_ID)
            .await
            .as_deref(),
        Some(CONTAINER_ID)
    );

    // After the rmdir the mapping is gone.
    let rmdir = decode(&record_of(Kind::CgroupRmdir)).unwrap();
    assert_eq!(e.enrich(rmdir).await, None, "cgroup_rmdir was emitted");
    assert_ne!(
        container_of_an_event(&mut e, SAMPLE_CGROUP_ID)
            .await
            .as_deref(),
        Some(CONTAINER_ID)
    );
}

/// The container of an event in cgroup `cgroup_id`, as enrichment attributes it.
async fn container_of_an_event(e: &mut Enricher, cgroup_id: u64) -> Option<String> {
    let mut raw = decode(&record_of(Kind::Connect)).unwrap();
    raw.header.cgroup_id = cgroup_id;
    let ev = e.enrich(raw).await.unwrap();
    ev.container.map(|c| c.id.clone())
}

fn record_of(kind: Kind) -> Vec<u8> {
    match sample(kind) {
        Sample::Emitted { record, .. } | Sample::Consumed { record } => record,
        Sample::Generated => panic!("{kind:?} has no kernel record"),
    }
}
