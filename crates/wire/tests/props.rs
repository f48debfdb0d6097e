//! Property tests: random events round-trip exactly; random, truncated and corrupted input
//! never panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use peregrine_event::{Event, Timestamp};
use peregrine_testkit::coverage::*;
use peregrine_testkit::strategies::*;
use peregrine_testkit::wire::{seal_bytes, unseal};
use peregrine_wire::{BatchEncoder, EncoderConfig, Message, decode};
use proptest::prelude::*;

fn encode_all(events: &[Event], cfg: EncoderConfig) -> Vec<String> {
    let mut enc = BatchEncoder::new(identity(), cfg).unwrap();
    enc.encode(events, Timestamp::from_unix_nanos(T0))
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect()
}

fn decode_all(bodies: &[String]) -> Vec<Event> {
    let mut out = Vec::new();
    for b in bodies {
        match decode(b).unwrap() {
            Message::Batch { events, .. } => out.extend(events),
            Message::Heartbeat { .. } => panic!("heartbeat"),
        }
    }
    out
}

proptest! {
    #[test]
    fn random_events_round_trip(events in batch_s(24)) {
        let bodies = encode_all(&events, EncoderConfig::default());
        prop_assert_eq!(decode_all(&bodies), events);
    }

    #[test]
    fn random_events_round_trip_when_split(events in batch_s(24)) {
        // A tiny body limit forces splits at arbitrary places.
        let cfg = EncoderConfig { max_body_bytes: 4096, ..EncoderConfig::default() };
        let mut enc = BatchEncoder::new(identity(), cfg).unwrap();
        let mut kept = Vec::new();
        for e in events {
            // An event refused by push must really be too large, and one accepted must flush.
            if enc.push(e.clone()).is_ok() {
                kept.push(e);
            }
        }
        let messages = enc.flush(Timestamp::from_unix_nanos(T0)).unwrap();
        for (i, m) in messages.iter().enumerate() {
            prop_assert!(m.body.len() <= 4096);
            prop_assert_eq!(m.sequence, i as u64);
        }
        let bodies: Vec<String> = messages.into_iter().map(|m| m.body).collect();
        prop_assert_eq!(decode_all(&bodies), kept);
    }

    #[test]
    fn random_strings_are_rejected(s in "(?s).{0,400}") {
        prop_assert!(decode(&s).is_err());
    }

    #[test]
    fn random_base64_is_rejected(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(decode(&STANDARD.encode(&bytes)).is_err());
    }

    #[test]
    fn random_protobuf_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        // Random bytes behind valid framing reach the protobuf and validation layers.
        let _ = decode(&seal_bytes(&bytes));
        // Also behind a valid header, so that the body is looked at.
        let mut raw = vec![0x0a, 0x02, 0x08, 0x01];
        raw.extend_from_slice(&bytes);
        let _ = decode(&seal_bytes(&raw));
    }

    #[test]
    fn truncated_and_flipped_messages_never_panic(
        events in batch_s(12),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0..8u8), 1..4),
    ) {
        let bodies = encode_all(&events, EncoderConfig::default());
        let Some(body) = bodies.first() else { return Ok(()) };
        // Truncated text (may cut a multi-byte boundary only in ASCII, so always valid str).
        let _ = decode(&body[..cut.index(body.len())]);
        // Bit flips in the protobuf (the interesting layer: the checksum-free part).
        let raw = unseal(body);
        let mut flipped = raw.clone();
        for (at, bit) in &flips {
            let i = at.index(flipped.len());
            flipped[i] ^= 1 << bit;
        }
        let _ = decode(&seal_bytes(&flipped));
        // Truncated protobuf.
        let _ = decode(&seal_bytes(&raw[..cut.index(raw.len())]));
        // Bit flips in the compressed stream.
        let mut compressed = STANDARD.decode(body).unwrap();
        for (at, bit) in &flips {
            let i = at.index(compressed.len());
            compressed[i] ^= 1 << bit;
        }
        let _ = decode(&STANDARD.encode(&compressed));
    }

    #[test]
    fn push_refuses_only_what_cannot_fit(
        events in batch_s(6),
        sizes in prop::collection::vec(0..9000usize, 6),
        seed in any::<u64>(),
    ) {
        // Big, poorly compressible argv around the 4 KiB body limit: push either refuses an
        // event (and then, alone, it is at or near the limit) or accepts it (and then flush
        // succeeds, whatever header it gets). This checks push's cheap size bound and its
        // headroom against the real encoder.
        let cfg = EncoderConfig { max_body_bytes: 4096, ..EncoderConfig::default() };
        let mut enc = BatchEncoder::new(identity(), cfg.clone()).unwrap();
        let mut alone = BatchEncoder::new(identity(), EncoderConfig::default()).unwrap();
        let headroom = enc.push_headroom();
        let mut x = seed | 1;
        let mut kept = Vec::new();
        for (mut e, n) in events.into_iter().zip(sizes) {
            let word: String = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'!' + (x >> 58) as u8)
                })
                .collect();
            Arc::make_mut(&mut e.process).argv.push(word);
            match enc.push(e.clone()) {
                Ok(()) => kept.push(e),
                Err(err) => {
                    let is_too_large = matches!(err, peregrine_wire::WireError::EventTooLarge { .. });
                    prop_assert!(is_too_large, "{:?}", err);
                    // Refused only if, alone, it is within the headroom of the limit or over it.
                    let m = alone.encode(&[e], Timestamp::from_unix_nanos(i64::MIN)).unwrap();
                    prop_assert!(m[0].body.len() > 4096 - headroom - 64, "{} bytes", m[0].body.len());
                }
            }
        }
        let messages = enc.flush(Timestamp::from_unix_nanos(T0)).unwrap();
        prop_assert!(messages.iter().all(|m| m.body.len() <= 4096));
        let bodies: Vec<String> = messages.into_iter().map(|m| m.body).collect();
        prop_assert_eq!(decode_all(&bodies), kept);
    }
}
