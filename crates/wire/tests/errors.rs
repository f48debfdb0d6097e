//! Poison messages: every malformed input is a clear, typed error (never a panic).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use peregrine_testkit::coverage::*;
use peregrine_testkit::wire::*;
use peregrine_wire::{
    BatchEncoder, EncoderConfig, Heartbeat, Inconsistency, Limits, WireError, decode,
    decode_with_limits, encode_heartbeat, pb,
};
use prost::Message as _;

use pb::event_details::Detail as D;
use peregrine_event::Kind;

fn file_of(d: &mut pb::EventDetails) -> &mut pb::FileInfo {
    match &mut d.detail {
        Some(D::File(f)) => f,
        other => panic!("not a file detail: {other:?}"),
    }
}

fn batch_of(env: &mut pb::Envelope) -> &mut pb::EventBatch {
    match env.body.as_mut() {
        Some(pb::envelope::Body::Batch(b)) => b,
        _ => panic!("not a batch"),
    }
}

fn inconsistency(env: &pb::Envelope) -> Inconsistency {
    match decode(&seal(env)) {
        Err(WireError::Inconsistent(i)) => i,
        other => panic!("expected an inconsistency, got {other:?}"),
    }
}

#[test]
fn the_minimal_fixture_is_valid() {
    // Otherwise every "mutated fixture is rejected" test below would prove nothing.
    let m = decode(&seal(&minimal_batch())).unwrap();
    assert_eq!(m.header().sequence, 9);
}

#[test]
fn a_cluster_arn_must_parse_and_name_the_headers_cluster() {
    let with_arn = |arn: &str| {
        let mut env = minimal_batch();
        env.header.as_mut().unwrap().cluster_arn = arn.into();
        env
    };
    let ok = decode(&seal(&with_arn(
        "arn:aws:eks:eu-west-1:111122223333:cluster/c",
    )))
    .unwrap();
    assert_eq!(
        ok.header().cluster_arn.as_ref().map(|a| a.account_id()),
        Some("111122223333")
    );
    assert_eq!(
        decode(&seal(&with_arn(""))).unwrap().header().cluster_arn,
        None
    );
    for bad in [
        "arn:aws:eks:eu-west-1:111122223333:cluster/other",
        "arn:aws:eks:eu-west-1:111122223333:cluster/c/x",
        "c",
        "arn:aws:iam::111122223333:role/c",
    ] {
        assert_eq!(
            inconsistency(&with_arn(bad)),
            Inconsistency::ClusterArn,
            "{bad}"
        );
    }
    // The encoder refuses to send one that would be refused.
    let identity = peregrine_wire::AgentIdentity {
        cluster_name: "other".into(),
        ..identity()
    };
    assert!(matches!(
        BatchEncoder::new(identity, EncoderConfig::default()),
        Err(WireError::InvalidConfig(_))
    ));
}

#[test]
fn newer_schema_version_is_unsupported() {
    let mut env = minimal_batch();
    env.header.as_mut().unwrap().schema_version = 2;
    // Even content that v1 would reject: the version is checked first.
    batch_of(&mut env).kinds[0] = 0x7777;
    let err = decode(&seal(&env)).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("schema version 2") && text.contains("DLQ"),
        "{text}"
    );

    env.header.as_mut().unwrap().schema_version = u32::MAX;
    assert!(matches!(
        decode(&seal(&env)),
        Err(WireError::UnsupportedVersion {
            found: u32::MAX,
            ..
        })
    ));
    // Version 0 (absent) is not a version.
    env.header.as_mut().unwrap().schema_version = 0;
    assert!(matches!(
        decode(&seal(&env)),
        Err(WireError::UnsupportedVersion { found: 0, .. })
    ));
}

#[test]
fn missing_header_and_body() {
    let mut env = minimal_batch();
    env.header = None;
    assert!(matches!(decode(&seal(&env)), Err(WireError::MissingHeader)));
    // An empty header is a header without a version.
    env.header = Some(pb::Header::default());
    assert!(matches!(
        decode(&seal(&env)),
        Err(WireError::UnsupportedVersion { found: 0, .. })
    ));
    let mut env = minimal_batch();
    env.body = None;
    assert!(matches!(decode(&seal(&env)), Err(WireError::MissingBody)));
    // An empty payload.
    assert!(matches!(
        decode(&seal_bytes(&[])),
        Err(WireError::MissingHeader)
    ));
}

#[test]
fn unknown_fields_are_ignored() {
    let mut raw = minimal_batch().encode_to_vec();
    // Top level: field 15 varint, field 16 fixed64, field 17 bytes, field 18 fixed32.
    raw.extend_from_slice(&[0x78, 0x01]);
    raw.extend_from_slice(&[0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
    raw.extend_from_slice(&[0x8a, 0x01, 0x02, 0xff, 0xff]);
    raw.extend_from_slice(&[0x95, 0x01, 1, 2, 3, 4]);
    // Inside the header and inside the batch: a second occurrence of a message field merges
    // into the first, so these add an unknown field 99 to each.
    raw.extend_from_slice(&[0x0a, 0x03, 0x98, 0x06, 0x01]);
    raw.extend_from_slice(&[0x12, 0x03, 0x98, 0x06, 0x01]);
    let m = decode(&seal_bytes(&raw)).unwrap();
    assert_eq!(m, decode(&seal(&minimal_batch())).unwrap());
}

#[test]
fn framing_errors() {
    assert!(matches!(decode("not base64!"), Err(WireError::Base64(_))));
    assert!(matches!(decode("aGVsbG8"), Err(WireError::Base64(_)))); // missing padding
    // Valid base64, not zstd.
    assert!(matches!(
        decode("aGVsbG8gd29ybGQ="),
        Err(WireError::Decompress(_))
    ));
    // zstd of something that is not protobuf.
    let err = decode(&seal_bytes(&[0xff; 32])).unwrap_err();
    assert!(matches!(err, WireError::Protobuf(_)), "{err:?}");
    // Too long to be an SQS body.
    let long = "A".repeat(1_048_577);
    assert!(matches!(
        decode(&long),
        Err(WireError::BodyTooLarge {
            found: 1_048_577,
            limit: 1_048_576
        })
    ));
}

#[test]
fn decompression_bomb_is_capped() {
    // 64 MiB of zeros compresses to a few KiB.
    let bomb = seal_bytes(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 10_000);
    let err = decode(&bomb).unwrap_err();
    assert!(
        matches!(err, WireError::DecompressedTooLarge { limit } if limit == 16 << 20),
        "{err:?}"
    );
    // Exactly at a cap is fine, one byte over is not.
    let limits = Limits {
        max_decompressed_bytes: 1000,
        ..Limits::default()
    };
    let mut exact = minimal_batch().encode_to_vec();
    exact.resize(1000, 0); // zero padding is field-0 garbage, but it must pass the cap first
    let err = decode_with_limits(&seal_bytes(&exact), &limits).unwrap_err();
    assert!(matches!(err, WireError::Protobuf(_)), "{err:?}");
    exact.push(0);
    let err = decode_with_limits(&seal_bytes(&exact), &limits).unwrap_err();
    assert!(
        matches!(err, WireError::DecompressedTooLarge { limit: 1000 }),
        "{err:?}"
    );
}

#[test]
fn counts_are_capped_before_decoding() {
    let mut env = minimal_batch();
    let b = batch_of(&mut env);
    repeat_events(b, 5);
    env.header.as_mut().unwrap().event_count = 5;
    let limits = Limits {
        max_events: 4,
        ..Limits::default()
    };
    let err = decode_with_limits(&seal(&env), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::LimitExceeded {
                what: "event count",
                found: 5,
                limit: 4
            }
        ),
        "{err:?}"
    );
    assert!(decode(&seal(&env)).is_ok());

    // A million empty strings: 2 MB of protobuf, 24 MB of Rust strings.
    let mut env = minimal_batch();
    batch_of(&mut env).strings.resize(1_000_001, String::new());
    let err = decode(&seal(&env)).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::LimitExceeded {
                what: "string table size",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn amplification_through_references_is_capped() {
    // One 10 KB string, referenced 1,000 times by one process's argv, and 1,000 events of that
    // process: a few KB on the wire, 10 GB decoded.
    let mut env = minimal_batch();
    let b = batch_of(&mut env);
    b.strings.push("x".repeat(10_000));
    b.processes[0].argv = vec![4; 1000];
    repeat_events(b, 1000);
    env.header.as_mut().unwrap().event_count = 1000;
    let body = seal(&env);
    assert!(body.len() < 20_000);
    let err = decode(&body).unwrap_err();
    assert!(
        matches!(err, WireError::LimitExceeded { what: "estimated decoded size in bytes", found, .. } if found > 10_000_000_000),
        "{err:?}"
    );
}

#[test]
fn count_mismatches() {
    // Every event column must have exactly one entry per event.
    type Mutation = Box<dyn Fn(&mut pb::EventBatch)>;
    let columns: Vec<(&str, Mutation)> = vec![
        ("kinds", Box::new(|b| b.kinds.push(Kind::Open as u32))),
        ("time deltas", Box::new(|b| b.time_deltas_ns.clear())),
        ("process refs", Box::new(|b| b.process_refs.push(0))),
        ("thread id deltas", Box::new(|b| b.tid_deltas.clear())),
        ("container refs", Box::new(|b| b.container_refs.push(0))),
    ];
    for (what, mutate) in columns {
        let mut env = minimal_batch();
        mutate(batch_of(&mut env));
        match inconsistency(&env) {
            Inconsistency::CountMismatch {
                what: w, header: 1, ..
            } => assert_eq!(w, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A column longer than any batch may be is refused before it is decoded.
    let mut env = minimal_batch();
    batch_of(&mut env).tid_deltas = vec![0; 100_001];
    assert!(matches!(
        decode(&seal(&env)),
        Err(WireError::LimitExceeded {
            what: "event column length",
            found: 100_001,
            ..
        })
    ));

    let mut env = minimal_batch();
    env.header.as_mut().unwrap().event_count = 2;
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::CountMismatch {
            what: "events",
            header: 2,
            actual: 1
        }
    ));
    let mut env = minimal_batch();
    env.header.as_mut().unwrap().process_count = 0;
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::CountMismatch {
            what: "processes",
            ..
        }
    ));
    let mut env = minimal_batch();
    env.header.as_mut().unwrap().container_count = 1;
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::CountMismatch {
            what: "containers",
            ..
        }
    ));
    // A heartbeat claims no events.
    let body = encode_heartbeat(&Heartbeat::default(), 0, &EncoderConfig::default()).unwrap();
    let _ = decode(&body).unwrap();
    let env = pb::Envelope {
        header: Some(header(1, 1, 0, 0)),
        body: Some(pb::envelope::Body::Heartbeat(pb::Heartbeat::default())),
    };
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::CountMismatch { what: "events", .. }
    ));
}

#[test]
fn indices_out_of_range() {
    type Mutation = Box<dyn Fn(&mut pb::EventBatch)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("process_refs", Box::new(|b| b.process_refs[0] = 1)),
        ("container_refs", Box::new(|b| b.container_refs[0] = 1)),
        (
            "FileInfo.path",
            Box::new(|b| file_of(&mut b.details[0]).path = 4),
        ),
        (
            "FileInfo.new_path",
            Box::new(|b| file_of(&mut b.details[0]).new_path = Some(u32::MAX)),
        ),
        ("Process.argv", Box::new(|b| b.processes[0].argv.push(99))),
        ("Process.comm", Box::new(|b| b.processes[0].comm = 4)),
        (
            "Process.lineage",
            Box::new(|b| b.processes[0].lineage = vec![0]),
        ),
        (
            "Process.sha256_text",
            Box::new(|b| b.processes[0].sha256 = Some(pb::process::Sha256::Sha256Text(7))),
        ),
        (
            "FileInfo.mode_octal_text",
            Box::new(|b| {
                let f = file_of(&mut b.details[0]);
                f.mode_text = pb::ModeText::Explicit as i32;
                f.mode_octal_text = 4;
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut env = minimal_batch();
        mutate(batch_of(&mut env));
        match inconsistency(&env) {
            Inconsistency::IndexOutOfRange { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // A container reference into a non-empty table, one past the end.
    let mut env = minimal_batch();
    env.header.as_mut().unwrap().container_count = 1;
    let b = batch_of(&mut env);
    b.containers.push(pb::Container {
        metadata: pb::MetadataState::Complete as i32,
        ..pb::Container::default()
    });
    b.container_refs[0] = 2;
    let err = inconsistency(&env);
    assert_eq!(
        err,
        Inconsistency::IndexOutOfRange {
            field: "container_refs",
            table: "container",
            index: 1,
            len: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "container_refs: index 1 is out of range (the container table has 1 entries)"
    );
}

#[test]
fn invalid_kinds_and_enums() {
    for kind in [0, 0x0103, 0x0402, 0x0f03, u32::MAX, i32::MAX as u32] {
        let mut env = minimal_batch();
        batch_of(&mut env).kinds[0] = kind;
        assert_eq!(inconsistency(&env), Inconsistency::InvalidKind(kind));
    }
    type Mutation = Box<dyn Fn(&mut pb::EventBatch, i32)>;
    let cases: Vec<(&str, &[i32], Mutation)> = vec![
        (
            "Container.metadata",
            &[0, 5],
            Box::new(|b, v| {
                b.containers.push(pb::Container {
                    metadata: v,
                    ..Default::default()
                });
                b.container_refs[0] = 1;
            }),
        ),
        (
            "NetInfo.family",
            &[0, 4],
            Box::new(|b, v| {
                b.details[0].detail = Some(D::Net(pb::NetInfo {
                    family: v,
                    ..Default::default()
                }))
            }),
        ),
        (
            "FileInfo.mode_text",
            &[3, -1],
            Box::new(|b, v| file_of(&mut b.details[0]).mode_text = v),
        ),
        (
            "NewBinary.evidence",
            &[0],
            Box::new(|b, v| {
                b.details[0].detail = Some(D::Exec(pb::ExecInfo {
                    new_binary: Some(pb::NewBinary {
                        evidence: v,
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
            }),
        ),
    ];
    for (field, values, mutate) in cases {
        for &value in values {
            let mut env = minimal_batch();
            let b = batch_of(&mut env);
            mutate(b, value);
            let containers = b.containers.len() as u32;
            env.header.as_mut().unwrap().container_count = containers;
            assert_eq!(
                inconsistency(&env),
                Inconsistency::InvalidEnum { field, value },
                "{field}"
            );
        }
    }
    let env = pb::Envelope {
        header: Some(header(1, 0, 0, 0)),
        body: Some(pb::envelope::Body::Heartbeat(pb::Heartbeat {
            probes: vec![pb::ProbeStatus {
                state: 9,
                ..Default::default()
            }],
            ..Default::default()
        })),
    };
    assert_eq!(
        inconsistency(&env),
        Inconsistency::InvalidEnum {
            field: "ProbeStatus.state",
            value: 9
        }
    );
}

#[test]
fn invalid_lengths_and_ranges() {
    let inet = |address: Vec<u8>| pb::NetInfo {
        family: pb::Family::Inet as i32,
        address: Some(address),
        ..Default::default()
    };
    for len in [0usize, 3, 5, 15, 17] {
        let mut env = minimal_batch();
        batch_of(&mut env).details[0].detail = Some(D::Net(inet(vec![1; len])));
        assert!(matches!(
            inconsistency(&env),
            Inconsistency::InvalidLength { field: "NetInfo.address", len: l, .. } if l == len
        ));
    }
    let mut env = minimal_batch();
    batch_of(&mut env).details[0].detail = Some(D::Net(pb::NetInfo {
        port: Some(65536),
        family: pb::Family::Inet as i32,
        ..Default::default()
    }));
    assert_eq!(
        inconsistency(&env),
        Inconsistency::OutOfRange {
            field: "NetInfo.port",
            value: 65536
        }
    );
    let mut env = minimal_batch();
    batch_of(&mut env).processes[0].uuid = vec![7; 15];
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::InvalidLength {
            field: "Process.uuid",
            len: 15,
            ..
        }
    ));
    let mut env = minimal_batch();
    batch_of(&mut env).details[0].detail = Some(D::Fork(pb::ForkInfo {
        child_pid: 1,
        child_uuid: vec![1; 17],
    }));
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::InvalidLength {
            field: "ForkInfo.child_uuid",
            ..
        }
    ));
    let mut env = minimal_batch();
    batch_of(&mut env).processes[0].sha256 = Some(pb::process::Sha256::Sha256Digest(vec![0; 31]));
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::InvalidLength {
            field: "Process.sha256_digest",
            len: 31,
            ..
        }
    ));
    let env = pb::Envelope {
        header: Some(header(1, 0, 0, 0)),
        body: Some(pb::envelope::Body::Heartbeat(pb::Heartbeat {
            uptime_nanos: 1_000_000_000,
            ..Default::default()
        })),
    };
    assert!(matches!(
        inconsistency(&env),
        Inconsistency::OutOfRange {
            field: "Heartbeat.uptime_nanos",
            ..
        }
    ));
}

#[test]
fn encoder_configuration_is_validated() {
    for cfg in [
        EncoderConfig {
            max_body_bytes: 100,
            ..Default::default()
        },
        EncoderConfig {
            max_body_bytes: 2_000_000,
            ..Default::default()
        },
        EncoderConfig {
            zstd_level: 99,
            ..Default::default()
        },
        EncoderConfig {
            limits: Limits {
                max_events: 0,
                ..Limits::default()
            },
            ..Default::default()
        },
    ] {
        let err = BatchEncoder::new(identity(), cfg.clone()).unwrap_err();
        assert!(
            matches!(err, WireError::InvalidConfig(_)),
            "{cfg:?}: {err:?}"
        );
        assert!(encode_heartbeat(&Heartbeat::default(), 0, &cfg).is_err());
    }
    // The SQS maximum itself is allowed.
    let cfg = EncoderConfig {
        max_body_bytes: 1_048_576,
        ..Default::default()
    };
    assert!(BatchEncoder::new(identity(), cfg).is_ok());
}

#[test]
fn heartbeat_limits() {
    let hb = Heartbeat {
        probes: vec![
            peregrine_wire::ProbeStatus {
                program: "p".into(),
                target: "t".into(),
                state: peregrine_wire::ProbeState::Attached,
                error: None,
            };
            5000
        ],
        ..Heartbeat::default()
    };
    assert!(matches!(
        encode_heartbeat(&hb, 0, &EncoderConfig::default()),
        Err(WireError::LimitExceeded {
            what: "probe count",
            found: 5000,
            limit: 4096
        })
    ));
}

#[test]
fn blinding_reasons_are_bounded_in_count_and_bytes() {
    use peregrine_event::{BlindingKind, BlindingReason};
    let reason = BlindingReason::new(BlindingKind::RestartLoop, "3 starts within 600 s");
    // The encoder refuses what the decoder would.
    let many = Heartbeat {
        blinding: vec![reason.clone(); 9],
        ..Heartbeat::default()
    };
    assert!(matches!(
        encode_heartbeat(&many, 0, &EncoderConfig::default()),
        Err(WireError::LimitExceeded {
            what: "blinding reason count",
            found: 9,
            limit: 8
        })
    ));
    let long = Heartbeat {
        blinding: vec![BlindingReason {
            code: "restart_loop".into(),
            detail: "x".repeat(513),
        }],
        ..Heartbeat::default()
    };
    assert!(matches!(
        encode_heartbeat(&long, 0, &EncoderConfig::default()),
        Err(WireError::Inconsistent(Inconsistency::InvalidLength {
            field: "BlindingReason.detail",
            len: 513,
            ..
        }))
    ));
    let eight = Heartbeat {
        blinding: vec![reason; 8],
        ..Heartbeat::default()
    };
    assert!(encode_heartbeat(&eight, 0, &EncoderConfig::default()).is_ok());

    // A decoder meets whatever a sender writes.
    let pb_reason = |code: &str, detail: &str| pb::BlindingReason {
        code: code.into(),
        detail: detail.into(),
    };
    let env = |blinding: Vec<pb::BlindingReason>| pb::Envelope {
        header: Some(header(1, 0, 0, 0)),
        body: Some(pb::envelope::Body::Heartbeat(pb::Heartbeat {
            blinding,
            ..Default::default()
        })),
    };
    assert!(matches!(
        decode(&seal(&env(vec![pb_reason("a", "b"); 9]))),
        Err(WireError::LimitExceeded {
            what: "blinding reason count",
            found: 9,
            ..
        })
    ));
    assert!(matches!(
        inconsistency(&env(vec![pb_reason(&"c".repeat(65), "b")])),
        Inconsistency::InvalidLength {
            field: "BlindingReason.code",
            len: 65,
            ..
        }
    ));
    assert!(matches!(
        inconsistency(&env(vec![pb_reason("c", &"d".repeat(513))])),
        Inconsistency::InvalidLength {
            field: "BlindingReason.detail",
            ..
        }
    ));
    let ok = decode(&seal(&env(vec![pb_reason("new_code", "what it saw")]))).unwrap();
    let peregrine_wire::Message::Heartbeat { heartbeat, .. } = ok else {
        panic!("not a heartbeat")
    };
    assert_eq!(heartbeat.blinding[0].code, "new_code");
    assert_eq!(heartbeat.blinding[0].kind(), None);
}

#[test]
fn a_detail_must_be_present_and_fit_its_kind() {
    let mut env = minimal_batch();
    batch_of(&mut env).details[0].detail = None;
    assert_eq!(inconsistency(&env), Inconsistency::MissingDetail);

    // An open (file family) that carries a connect's details.
    let mut env = minimal_batch();
    batch_of(&mut env).details[0].detail = Some(D::Net(pb::NetInfo {
        family: pb::Family::Unix as i32,
        ..Default::default()
    }));
    assert_eq!(
        inconsistency(&env),
        Inconsistency::DetailMismatch {
            kind: "open",
            detail: "net"
        }
    );

    // A kind the agent consumes itself is never shipped, whatever it carries.
    let mut env = minimal_batch();
    batch_of(&mut env).kinds[0] = Kind::CgroupMkdir as u32;
    assert_eq!(
        inconsistency(&env),
        Inconsistency::DetailMismatch {
            kind: "cgroup_mkdir",
            detail: "file"
        }
    );
}

/// What a decoder built before a kind existed does with that kind's events. The kind number
/// comes first: an unknown one is `InvalidKind` (the message goes to the DLQ, to be redriven
/// once the detector is upgraded), whatever its detail. And should the number be known but its
/// detail a `oneof` member the decoder lacks, proto3 skips the unknown field and the event has
/// no detail: `MissingDetail`, never a guess.
#[test]
fn a_decoder_older_than_a_kind_rejects_its_events_without_misreading_them() {
    // How this decoder reads the newest kinds: they round-trip.
    let mut env = minimal_batch();
    let b = batch_of(&mut env);
    b.kinds[0] = Kind::CompatSyscall as u32;
    b.details[0].detail = Some(D::CompatSyscall(pb::CompatSyscallInfo {
        nr: 5,
        name: Some(3),
        result: Some(3),
        from_64bit: true,
    }));
    assert!(decode(&seal(&env)).is_ok());

    // A kind from the future (the next kernel-family number), carrying a detail in a oneof
    // member this decoder does not know (field 15).
    let future_kind = 0x0402;
    assert!(Kind::from_u32(future_kind).is_none());
    let unknown_detail: &[u8] = &[0x7a, 0x02, 0x08, 0x01]; // field 15: {field 1: 1}
    let raw = batch_with_raw_detail(future_kind, unknown_detail);
    assert!(
        matches!(
            decode(&seal_bytes(&raw)),
            Err(WireError::Inconsistent(Inconsistency::InvalidKind(k))) if k == future_kind
        ),
        "{:?}",
        decode(&seal_bytes(&raw))
    );

    // A known kind whose detail is a oneof member this decoder does not know.
    let raw = batch_with_raw_detail(Kind::IoUring as u32, unknown_detail);
    assert!(
        matches!(
            decode(&seal_bytes(&raw)),
            Err(WireError::Inconsistent(Inconsistency::MissingDetail))
        ),
        "{:?}",
        decode(&seal_bytes(&raw))
    );
}

/// The minimal batch with one event of `kind` whose `EventDetails` is `detail`'s raw bytes.
fn batch_with_raw_detail(kind: u32, detail: &[u8]) -> Vec<u8> {
    let mut env = minimal_batch();
    let b = batch_of(&mut env);
    b.kinds[0] = kind;
    b.details.clear();
    let mut batch = b.encode_to_vec();
    // EventBatch.details (field 11, length-delimited).
    batch.push(0x5a);
    prost::encoding::encode_varint(detail.len() as u64, &mut batch);
    batch.extend_from_slice(detail);
    env.body = None;
    let mut raw = env.encode_to_vec();
    // Envelope.batch (field 2, length-delimited).
    raw.push(0x12);
    prost::encoding::encode_varint(batch.len() as u64, &mut raw);
    raw.extend_from_slice(&batch);
    raw
}
