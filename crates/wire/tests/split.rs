//! Splitting: every body fits, sequence numbers are consecutive, nothing is lost or duplicated,
//! and an event that cannot fit even alone is reported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::sync::Arc;

use peregrine_event::{Detail, Event, FileInfo, Kind, Timestamp};
use peregrine_testkit::coverage::*;
use peregrine_wire::{
    BatchEncoder, EncodedMessage, EncoderConfig, Limits, Message, WireError, decode_with_limits,
};

/// Incompressible text of `n` characters (a xorshift stream over 64 symbols).
fn noise(seed: u64, n: usize) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(x % 64) as usize],
            )
        })
        .collect()
}

/// A distinct process per event, each with ~`argv_bytes` of unique argv.
fn large_events(n: usize, argv_bytes: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut p = shell();
            p.pid = 10_000 + i as u32; // `bare` puts the event on the main thread: tid == pid
            p.argv = vec![
                "python".into(),
                "-c".into(),
                noise(i as u64 + 1, argv_bytes),
            ];
            let mut e = bare(Kind::Open, i as i64 * 1_000, p, Some(pod()));
            e.detail = Detail::File(FileInfo {
                path: format!("/tmp/{}", noise(i as u64 + 99, 20)),
                ..FileInfo::default()
            });
            e
        })
        .collect()
}

/// An encoder whose messages must fit `limits`.
fn encoder_within(limits: &Limits) -> BatchEncoder {
    let cfg = EncoderConfig {
        limits: limits.clone(),
        ..EncoderConfig::default()
    };
    BatchEncoder::new(identity(), cfg).unwrap()
}

fn check_split(
    messages: &[EncodedMessage],
    first_seq: u64,
    max_body: usize,
    limits: &Limits,
    input: &[Event],
) {
    let mut all = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        assert!(
            m.body.len() <= max_body,
            "message {i}: {} > {max_body}",
            m.body.len()
        );
        assert_eq!(m.sequence, first_seq + i as u64);
        let Message::Batch { header, events } = decode_with_limits(&m.body, limits).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(header.sequence, m.sequence);
        assert_eq!(events.len(), m.event_count);
        assert!(!events.is_empty());
        all.extend(events);
    }
    // In order, nothing lost, nothing duplicated.
    assert_eq!(all.len(), input.len());
    assert!(all == input);
}

#[test]
fn large_batches_split_into_fitting_messages() {
    let max = 64 * 1024;
    let cfg = EncoderConfig {
        max_body_bytes: max,
        ..EncoderConfig::default()
    };
    let limits = cfg.limits.clone();
    let mut enc = BatchEncoder::new(identity(), cfg)
        .unwrap()
        .with_next_sequence(1000);
    let events = large_events(600, 2_000); // ~1.6 MB of base64 in all
    for e in events.clone() {
        enc.push(e).unwrap();
    }
    let messages = enc.flush(Timestamp::from_unix_nanos(T0)).unwrap();
    assert!(messages.len() >= 8, "{} messages", messages.len());
    check_split(&messages, 1000, max, &limits, &events);
    assert_eq!(enc.next_sequence(), 1000 + messages.len() as u64);
    // Splitting is not wasteful: messages are mostly full.
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    assert!(
        total / messages.len() > max * 7 / 10,
        "average {} bytes",
        total / messages.len()
    );
}

#[test]
fn default_limits_split_a_huge_batch() {
    // ~3 MB of unique argv in 1 MB messages.
    let events = large_events(1_500, 4_000);
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    let messages = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    assert!(messages.len() >= 3, "{}", messages.len());
    check_split(&messages, 0, 1_000_000, &Limits::default(), &events);
}

#[test]
fn count_and_size_limits_split_too() {
    // Highly compressible events: the body limit never binds, the decoder's caps do.
    let events: Vec<Event> = (0..5_000)
        .map(|i| bare(Kind::Exit, i, shell(), None))
        .collect();
    let limits = Limits {
        max_events: 700,
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut enc = encoder_within(&limits);
    let messages = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    assert_eq!(messages.len(), 8); // ceil(5000 / 700)
    assert!(messages.iter().all(|m| m.event_count <= 700));
    check_split(&messages, 0, 1_000_000, &limits, &events);

    let limits = Limits {
        max_decompressed_bytes: 16 * 1024,
        ..Limits::default()
    };
    let mut enc = encoder_within(&limits);
    let messages = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    assert!(messages.iter().all(|m| m.raw_bytes <= 16 * 1024));
    check_split(&messages, 0, 1_000_000, &limits, &events);
}

#[test]
fn an_event_too_large_for_any_message_is_reported() {
    let mut enc = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
    let big = large_events(1, 1_200_000).remove(0);
    let err = enc.push(big.clone()).unwrap_err();
    match &err {
        WireError::EventTooLarge {
            index: 0,
            kind: "open",
            pid: 10_000,
            reason,
        } => {
            assert!(reason.contains("body bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("cannot fit"));
    assert_eq!(enc.pending(), 0, "the event must not be queued");

    // Through encode(): all or nothing, the index says which event, no sequence consumed.
    let mut events = large_events(5, 100);
    events.insert(3, big);
    let err = enc
        .encode(&events, Timestamp::from_unix_nanos(T0))
        .unwrap_err();
    assert!(
        matches!(err, WireError::EventTooLarge { index: 3, .. }),
        "{err:?}"
    );
    assert_eq!(enc.next_sequence(), 0);
    // Dropping it makes progress.
    events.remove(3);
    let messages = enc.encode(&events, Timestamp::from_unix_nanos(T0)).unwrap();
    check_split(&messages, 0, 1_000_000, &Limits::default(), &events);
}

#[test]
fn an_event_over_a_count_limit_is_reported() {
    // 50 argv words where the decoder accepts at most 40 strings per message.
    let cfg = EncoderConfig {
        limits: Limits {
            max_strings: 40,
            ..Limits::default()
        },
        ..EncoderConfig::default()
    };
    let mut enc = BatchEncoder::new(identity(), cfg).unwrap();
    let mut e = bare(Kind::Exit, 0, shell(), None);
    Arc::make_mut(&mut e.process).argv = (0..50).map(|i| format!("arg{i}")).collect();
    let err = enc.push(e).unwrap_err();
    assert!(
        matches!(&err, WireError::EventTooLarge { reason, .. } if reason.contains("strings")),
        "{err:?}"
    );
}
