//! Hand-built wire messages, for tests of what the decoder refuses: envelopes framed as the
//! encoder frames them, headers, a minimal batch, and the way back from a body to protobuf.

use std::io::Read;

use base64::Engine;
use peregrine_event::Kind;
use peregrine_wire::pb;
use prost::Message as _;

use crate::coverage::T0;

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
        cluster_arn: String::new(),
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

/// The protobuf inside a body: base64, then zstd, undone.
pub fn unseal(body: &str) -> Vec<u8> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64");
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(compressed.as_slice())
        .and_then(|mut d| d.read_to_end(&mut raw))
        .expect("zstd");
    raw
}

/// The envelope of a body, as the encoder wrote it.
pub fn open_envelope(body: &str) -> pb::Envelope {
    pb::Envelope::decode(unseal(body).as_slice()).expect("an envelope")
}
