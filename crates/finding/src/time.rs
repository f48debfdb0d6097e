//! Finding timestamps on the wire.

use std::fmt;

use peregrine_event::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A finding timestamp: rendered as ISO-8601 in UTC with milliseconds (`2026-11-24T17:00:00.123Z`),
/// the form GuardDuty uses for `createdAt`, `updatedAt`, `eventFirstSeen` and `eventLastSeen`.
/// It holds millisecond precision (sub-millisecond digits are dropped on construction), so a
/// finding read back from JSON equals the one written and comparisons agree with the wire.
///
/// Reading is lenient: any RFC 3339 string, or a number of seconds since the epoch, because the
/// GuardDuty REST API renders shapes typed `timestamp` (process `startTime`, `modifiedAt`) as
/// epoch seconds while the SDK samples use strings (reference §2.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoTime(Timestamp);

const NANOS_PER_MILLI: i64 = 1_000_000;

impl IsoTime {
    /// Rounds down to the millisecond.
    pub const fn new(t: Timestamp) -> Self {
        let ns = t.unix_nanos();
        IsoTime(Timestamp::from_unix_nanos(
            ns - ns.rem_euclid(NANOS_PER_MILLI),
        ))
    }

    pub const fn timestamp(self) -> Timestamp {
        self.0
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0.unix_nanos()
    }
}

impl From<Timestamp> for IsoTime {
    fn from(t: Timestamp) -> Self {
        IsoTime::new(t)
    }
}

impl fmt::Display for IsoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_millis())
    }
}

impl Serialize for IsoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_millis())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTime {
    Text(Timestamp),
    EpochSeconds(f64),
}

impl<'de> Deserialize<'de> for IsoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawTime::deserialize(d)? {
            RawTime::Text(t) => Ok(IsoTime::new(t)),
            RawTime::EpochSeconds(secs) => {
                let ns = secs * 1e9;
                if ns.is_finite() && ns >= i64::MIN as f64 && ns <= i64::MAX as f64 {
                    // Truncation to whole nanoseconds is intended: the input has at most µs precision.
                    Ok(IsoTime::new(Timestamp::from_unix_nanos(ns as i64)))
                } else {
                    Err(serde::de::Error::custom("epoch timestamp out of range"))
                }
            }
        }
    }
}
