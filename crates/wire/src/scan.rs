//! A minimal protobuf wire-format walker, run on the decompressed payload before prost
//! decodes it. It reads the schema version (so that a newer message is refused before its
//! content is interpreted) and counts the repeated entries that prost would allocate, so that
//! a small payload of empty entries cannot make prost allocate hundreds of bytes per wire byte.
//! See <https://protobuf.dev/programming-guides/encoding/>.

use crate::WireError;

/// What the pre-scan found. Counts sum over every occurrence of a field, as proto merging
/// does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Whether `Envelope.header` occurs at all.
    pub has_header: bool,
    /// `Envelope.header.schema_version`, last occurrence wins (proto3 merge semantics).
    pub schema_version: u64,
    pub strings: usize,
    pub ancestors: usize,
    pub processes: usize,
    pub containers: usize,
    /// Entries of `EventBatch.details`.
    pub events: usize,
    /// Entries of the longest event column (`kinds` .. `container_refs`), packed or not.
    pub longest_column: usize,
    pub probes: usize,
    /// Entries of `Heartbeat.blinding`.
    pub blinding: usize,
}

fn malformed(reason: &str) -> WireError {
    WireError::Protobuf(format!("malformed wire data: {reason}"))
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf
            .split_first()
            .ok_or_else(|| malformed("truncated varint"))?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

fn skip(buf: &mut &[u8], n: usize) -> Result<(), WireError> {
    match buf.get(n..) {
        Some(rest) => {
            *buf = rest;
            Ok(())
        }
        None => Err(malformed("truncated fixed-width field")),
    }
}

/// A field's value, as far as the walker cares.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// Calls `f(field_number, value)` for every field of one message.
fn walk<'a>(
    mut buf: &'a [u8],
    mut f: impl FnMut(u64, Value<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    while !buf.is_empty() {
        let key = read_varint(&mut buf)?;
        let field = key >> 3;
        if field == 0 {
            return Err(malformed("field number 0"));
        }
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut buf)?),
            1 => {
                skip(&mut buf, 8)?;
                Value::Other
            }
            2 => {
                let len = usize::try_from(read_varint(&mut buf)?)
                    .map_err(|_| malformed("length overflows usize"))?;
                let data = buf
                    .get(..len)
                    .ok_or_else(|| malformed("length-delimited field runs past the end"))?;
                skip(&mut buf, len)?;
                Value::Bytes(data)
            }
            5 => {
                skip(&mut buf, 4)?;
                Value::Other
            }
            // Groups (3, 4) are deprecated and never used by this schema.
            _ => return Err(malformed("unsupported wire type")),
        };
        f(field, value)?;
    }
    Ok(())
}

/// Scans an encoded `Envelope`.
pub(crate) fn scan(envelope: &[u8]) -> Result<Scan, WireError> {
    let mut s = Scan::default();
    walk(envelope, |field, value| {
        let Value::Bytes(body) = value else {
            return Ok(());
        };
        match field {
            // Envelope.header → Header.schema_version (field 1, varint).
            1 => {
                s.has_header = true;
                walk(body, |f, v| {
                    if let (1, Value::Varint(version)) = (f, v) {
                        s.schema_version = version;
                    }
                    Ok(())
                })
            }
            // Envelope.batch → the repeated tables and the event columns.
            2 => {
                let mut columns = [0usize; 5];
                walk(body, |f, v| {
                    match (f, v) {
                        (2, Value::Bytes(_)) => s.strings += 1,
                        (3, Value::Bytes(_)) => s.ancestors += 1,
                        (4, Value::Bytes(_)) => s.processes += 1,
                        (5, Value::Bytes(_)) => s.containers += 1,
                        (11, Value::Bytes(_)) => s.events += 1,
                        (6..=10, v) => {
                            // Packed: one varint ends at every byte below 0x80. Unpacked
                            // elements (which decoders must also accept) come one by one.
                            let n = match v {
                                Value::Bytes(packed) => {
                                    packed.iter().filter(|b| **b < 0x80).count()
                                }
                                Value::Varint(_) | Value::Other => 1,
                            };
                            if let Some(c) =
                                usize::try_from(f - 6).ok().and_then(|i| columns.get_mut(i))
                            {
                                *c += n;
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
                s.longest_column = s.longest_column.max(columns.into_iter().max().unwrap_or(0));
                Ok(())
            }
            // Envelope.heartbeat → probes and blinding reasons.
            3 => walk(body, |f, v| {
                match (f, v) {
                    (2, Value::Bytes(_)) => s.probes += 1,
                    (13, Value::Bytes(_)) => s.blinding += 1,
                    _ => {}
                }
                Ok(())
            }),
            _ => Ok(()),
        }
    })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_truncation() {
        let mut b: &[u8] = &[0xac, 0x02, 0x01];
        assert_eq!(read_varint(&mut b).unwrap(), 300);
        assert_eq!(b, &[0x01]);
        let mut t: &[u8] = &[0x80, 0x80];
        assert!(read_varint(&mut t).is_err());
        let mut long: &[u8] = &[0xff; 11];
        assert!(read_varint(&mut long).is_err());
    }

    #[test]
    fn counts_repeated_entries_across_occurrences() {
        // header{schema_version: 7}, batch{details: [{}, {}]},
        // batch{details: [{}], strings: [""], kinds: packed [256, 512, 1], tid_deltas: 1, 2}
        let bytes = [
            0x0a, 0x02, 0x08, 0x07, // header
            0x12, 0x04, 0x5a, 0x00, 0x5a, 0x00, // batch
            0x12, 0x0f, 0x5a, 0x00, 0x12, 0x00, // batch again (merged)
            0x32, 0x05, 0x80, 0x02, 0x80, 0x04, 0x01, // packed kinds
            0x48, 0x01, 0x48, 0x02, // unpacked tid_deltas
        ];
        let s = scan(&bytes).unwrap();
        assert!(s.has_header);
        assert_eq!(s.schema_version, 7);
        assert_eq!(s.events, 3);
        assert_eq!(s.strings, 1);
        assert_eq!(s.longest_column, 3);
    }

    #[test]
    fn rejects_groups_and_overlong_lengths() {
        assert!(scan(&[0x0b]).is_err()); // field 1, start group
        assert!(scan(&[0x12, 0x05, 0x00]).is_err());
        assert!(scan(&[0x00]).is_err()); // field 0
    }
}
