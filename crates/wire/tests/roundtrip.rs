//! Encode → decode gives back exactly what went in, with the header and tables we expect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use peregrine_event::{
    BlindingKind, BlindingReason, Detail, Event, FileInfo, Kind, Process, Timestamp,
};
use peregrine_testkit::builders::{heartbeat as heartbeat_of, probes};
use peregrine_testkit::coverage::*;
use peregrine_testkit::wire::*;
use peregrine_wire::{
    BatchEncoder, DropCounters, EncoderConfig, Heartbeat, Message, ProbeState, SCHEMA_VERSION,
    SpoolDepth, decode, encode_heartbeat, pb,
};

fn distinct_processes(events: &[Event]) -> usize {
    // The thread id is per event, not part of the process.
    let mut seen: Vec<&Process> = Vec::new();
    for e in events {
        if !seen.contains(&&*e.process) {
            seen.push(&e.process);
        }
    }
    seen.len()
}

#[test]
fn every_kind_and_optional_field_round_trips() {
    let events = every_kind();
    // The fixture really covers every kind that is shipped.
    for k in Kind::ALL.into_iter().filter(|k| k.detail().is_some()) {
        assert!(
            events.iter().any(|e| e.kind == k),
            "{k:?} missing from the fixture"
        );
    }
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    for e in events.clone() {
        enc.push(e).unwrap();
    }
    assert_eq!(enc.pending(), events.len());
    let created = Timestamp::from_unix_nanos(T0 + 1);
    let messages = enc.flush(created).unwrap();
    assert_eq!(enc.pending(), 0);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.sequence, 0);
    assert_eq!(m.event_count, events.len());

    let Message::Batch {
        header,
        events: back,
    } = decode(&m.body).unwrap()
    else {
        panic!("not a batch");
    };
    assert_eq!(back, events);
    assert_eq!(header.schema_version, SCHEMA_VERSION);
    assert_eq!(header.agent_id, identity().agent_id);
    assert_eq!(header.node_name, identity().node_name);
    assert_eq!(header.cluster_name, identity().cluster_name);
    assert_eq!(header.agent_version, identity().agent_version);
    assert_eq!(header.sequence, 0);
    assert_eq!(header.created_at, created);
    assert_eq!(header.counts.events as usize, events.len());
    assert_eq!(
        header.counts.processes as usize,
        distinct_processes(&events)
    );
    assert_eq!(header.counts.containers, 2, "pod and pending container");
}

#[test]
fn wire_form_is_normalised() {
    let events = every_kind();
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    let messages = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    let env = open_envelope(&messages[0].body);
    let Some(pb::envelope::Body::Batch(b)) = env.body else {
        panic!("not a batch")
    };
    // Kinds are the stable numeric Kind values.
    let kinds: Vec<u32> = b.kinds.clone();
    let want: Vec<u32> = events.iter().map(|e| e.kind as u32).collect();
    assert_eq!(kinds, want);
    assert_eq!(b.kinds[0], 0x0100);
    // Strings are stored once.
    let mut sorted = b.strings.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        b.strings.len(),
        "duplicate strings in the table"
    );
    assert_eq!(
        b.strings
            .iter()
            .filter(|s| *s == "/var/log/app.log")
            .count(),
        1
    );
    // The shell's lineage ancestors are shared between its process entries (it appears with
    // two different sha256 forms, so twice in the process table).
    assert!(b.ancestors.len() < 3 * 2 + 2);
    // A canonical lowercase digest travels as 32 raw bytes, an uppercase one as text.
    assert!(
        b.processes.iter().any(
            |p| matches!(&p.sha256, Some(pb::process::Sha256::Sha256Digest(d)) if d.len() == 32)
        )
    );
    assert!(
        b.processes
            .iter()
            .any(|p| matches!(p.sha256, Some(pb::process::Sha256::Sha256Text(_))))
    );
    // The base time is the first event's and the first delta is 0.
    assert_eq!(b.base_time_unix_ns, events[0].time.unix_nanos());
    assert_eq!(b.time_deltas_ns[0], 0);
    // Columns: one entry per event each.
    for len in [
        b.time_deltas_ns.len(),
        b.process_refs.len(),
        b.tid_deltas.len(),
        b.container_refs.len(),
        b.details.len(),
    ] {
        assert_eq!(len, events.len());
    }
    // The main thread is delta 0; other threads carry their offset.
    assert_eq!(b.tid_deltas[0], 0);
    assert!(b.tid_deltas.contains(&(4250 - 4242)) && b.tid_deltas.contains(&(7 - 4242)));
}

#[test]
fn one_process_many_threads_is_one_table_entry() {
    let events: Vec<Event> = (0..200)
        .map(|i| {
            let mut e = bare(Kind::Open, i64::from(i) * 1000, shell(), Some(pod()));
            e.tid = e.process.pid + (i % 7);
            e.detail = Detail::File(FileInfo {
                path: format!("/var/log/app-{}.log", i % 3),
                ..FileInfo::default()
            });
            e
        })
        .collect();
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    let messages = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    let Message::Batch {
        header,
        events: back,
    } = decode(&messages[0].body).unwrap()
    else {
        panic!()
    };
    assert_eq!(back, events);
    assert_eq!(header.counts.processes, 1);
    assert_eq!(header.counts.containers, 1);
    // Normalised and compressed, a repetitive batch is a few bytes per event.
    assert!(
        messages[0].body.len() < 200 * 16,
        "{} bytes",
        messages[0].body.len()
    );
}

#[test]
fn empty_input_produces_no_message_and_no_sequence() {
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    assert!(
        enc.flush(Timestamp::from_unix_nanos(T0))
            .unwrap()
            .is_empty()
    );
    assert!(
        enc.encode(&[], Timestamp::from_unix_nanos(T0))
            .unwrap()
            .is_empty()
    );
    assert_eq!(enc.next_sequence(), 0);
}

#[test]
fn sequence_numbers_continue_across_flushes() {
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default())
        .unwrap()
        .with_next_sequence(41);
    let events = every_kind();
    let mut seqs = Vec::new();
    for chunk in events.chunks(5) {
        for e in chunk {
            enc.push(e.clone()).unwrap();
        }
        for m in enc.flush(Timestamp::from_unix_nanos(T0)).unwrap() {
            assert_eq!(decode(&m.body).unwrap().header().sequence, m.sequence);
            seqs.push(m.sequence);
        }
    }
    let want: Vec<u64> = (41..41 + seqs.len() as u64).collect();
    assert_eq!(seqs, want);
    assert_eq!(enc.next_sequence(), 41 + seqs.len() as u64);
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        kernel_release: "6.1.119-129.201.amzn2023.x86_64".into(),
        probes: probes(&[
            (
                "sched_process_exec",
                "sched/sched_process_exec",
                ProbeState::Attached,
                None,
            ),
            (
                "sys_enter_openat2",
                "syscalls/sys_enter_openat2",
                ProbeState::Absent,
                None,
            ),
            (
                "sys_exit_connect",
                "syscalls/sys_exit_connect",
                ProbeState::Failed,
                Some("EPERM: lockdown=confidentiality"),
            ),
            ("", "", ProbeState::Failed, Some("")),
        ]),
        drops: DropCounters {
            kernel_ringbuf_full: 17,
            kernel_no_scratch: 2,
            user_queue_full: 0,
            spool_dropped: u64::MAX,
        },
        spool: SpoolDepth {
            messages: 3,
            bytes: 2_400_000,
            degraded: true,
        },
        events_sent: 123_456_789,
        blinding: vec![
            BlindingReason::new(
                BlindingKind::SustainedDrops,
                "kernel 1200, queue 0 events lost in each of the last 3 ticks",
            ),
            BlindingReason {
                code: "from_a_newer_agent".into(),
                detail: "\u{1b}[31m\n".into(),
            },
        ],
        uptime: Duration::new(86_400 * 30, 999_999_999),
        timestamp: Timestamp::from_unix_nanos(T0),
        ..heartbeat_of(identity())
    }
}

#[test]
fn heartbeat_round_trips() {
    let hb = heartbeat();
    let body = encode_heartbeat(&hb, 77, &EncoderConfig::default()).unwrap();
    let Message::Heartbeat { header, heartbeat } = decode(&body).unwrap() else {
        panic!("not a heartbeat")
    };
    assert_eq!(*heartbeat, hb);
    assert_eq!(header.sequence, 77);
    assert_eq!(header.created_at, hb.timestamp);
    assert_eq!(header.agent_id, hb.agent_id);
    assert_eq!(header.cluster_arn, identity().cluster_arn);
    assert!(header.cluster_arn.is_some());
    assert_eq!(header.counts, Default::default());

    let empty = Heartbeat::default();
    let body = encode_heartbeat(&empty, 0, &EncoderConfig::default()).unwrap();
    let Message::Heartbeat { heartbeat, .. } = decode(&body).unwrap() else {
        panic!()
    };
    assert_eq!(*heartbeat, empty);
}

#[test]
fn a_heartbeat_from_before_blinding_reasons_decodes_as_none() {
    // The committed sample was encoded before `Heartbeat.blinding` existed.
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/detector-sqs.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let heartbeats: Vec<Heartbeat> = sample["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| match decode(r["body"].as_str().unwrap()).unwrap() {
            Message::Heartbeat { heartbeat, .. } => Some(*heartbeat),
            Message::Batch { .. } => None,
        })
        .collect();
    assert_eq!(heartbeats.len(), 1);
    assert!(heartbeats[0].blinding.is_empty());
    assert!(!heartbeats[0].probes.is_empty(), "the rest still decodes");
}

#[test]
fn every_zstd_level_in_range_works() {
    for level in [1, 3, 9, 19, -5] {
        let cfg = EncoderConfig {
            zstd_level: level,
            ..EncoderConfig::default()
        };
        let mut enc = BatchEncoder::new(identity(), cfg).unwrap();
        let events = every_kind();
        let m = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
        let Message::Batch { events: back, .. } = decode(&m[0].body).unwrap() else {
            panic!()
        };
        assert_eq!(back, events, "level {level}");
    }
}

#[test]
fn processes_differing_in_one_field_stay_distinct() {
    use peregrine_event::{Ancestor, Container, MetadataState, Process};
    use uuid::Uuid;
    let base = shell();
    let mut variants: Vec<Process> = vec![base.clone()];
    type Edit = Box<dyn Fn(&mut Process)>;
    let edits: Vec<Edit> = vec![
        Box::new(|p| p.ppid += 1),
        Box::new(|p| p.uid += 1),
        Box::new(|p| p.euid += 1),
        Box::new(|p| p.gid += 1),
        Box::new(|p| p.comm.push('x')),
        Box::new(|p| p.exe.push('x')),
        Box::new(|p| p.argv[1].push('x')),
        Box::new(|p| p.argv.push(String::new())),
        Box::new(|p| p.argv_truncated = !p.argv_truncated),
        Box::new(|p| p.cwd.push('x')),
        Box::new(|p| p.parent_uuid = Uuid::from_u128(5)),
        Box::new(|p| p.sha256 = None),
        Box::new(|p| p.cgroup_id += 1),
        Box::new(|p| p.mnt_ns += 1),
        Box::new(|p| p.ld_preload = None),
        Box::new(|p| p.ld_library_path = None),
        Box::new(|p| p.lineage[1].exe.push('x')),
        Box::new(|p| p.lineage[2].comm.push('x')),
        Box::new(|p| p.lineage[0].uid += 1),
        Box::new(|p| p.lineage[0].euid += 1),
        Box::new(|p| p.lineage[0].parent_uuid = Uuid::nil()),
        Box::new(|p| p.lineage.swap(0, 1)),
        Box::new(|p| p.lineage.push(Ancestor::default())),
    ];
    for edit in &edits {
        let mut p = base.clone();
        edit(&mut p);
        assert_ne!(p, base);
        variants.push(p);
    }
    let containers = [
        pod(),
        Container {
            image: None,
            ..pod()
        },
        Container {
            pod_uid: Some(String::new()),
            ..pod()
        },
        Container {
            metadata: MetadataState::NotFound,
            ..pod()
        },
    ];
    let events: Vec<Event> = variants
        .iter()
        .enumerate()
        .map(|(i, p)| {
            bare(
                Kind::Exit,
                i as i64,
                p.clone(),
                Some(containers[i % 4].clone()),
            )
        })
        .collect();
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    let m = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    let Message::Batch {
        header,
        events: back,
    } = decode(&m[0].body).unwrap()
    else {
        panic!()
    };
    assert_eq!(back, events);
    assert_eq!(header.counts.processes as usize, variants.len());
    assert_eq!(header.counts.containers, 4);
}
