use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// A wall-clock instant with nanosecond precision, serialised as RFC 3339 in UTC
/// (`2026-11-24T17:00:00.123456789Z`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_nanos(ns: i64) -> Self {
        Timestamp(ns)
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        let ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp(i64::try_from(ns).unwrap_or(i64::MAX))
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339 with milliseconds, the form GuardDuty uses for `createdAt`/`updatedAt`.
    pub fn to_rfc3339_millis(self) -> String {
        let dt = self.datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.datetime().format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let dt = OffsetDateTime::parse(&s, &Rfc3339).map_err(D::Error::custom)?;
        i64::try_from(dt.unix_timestamp_nanos())
            .map(Timestamp)
            .map_err(|_| D::Error::custom("timestamp out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_nanoseconds() {
        let t = Timestamp::from_unix_nanos(1_764_000_000_123_456_789);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, "\"2025-11-24T16:00:00.123456789Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&s).unwrap(), t);
        assert_eq!(t.to_rfc3339_millis(), "2025-11-24T16:00:00.123Z");
    }
}
