//! A read-only hash set of strings for `in` and `eq`, optionally ASCII-case-insensitive.
//!
//! Built once when a rule compiles, then only looked up. The hash is FxHash-style (fast on
//! short keys) with a final avalanche step. A fast, unkeyed hash is safe here because event
//! data can only look entries up, never add them: no input can lengthen a bucket, so there is
//! no hash-flooding to defend against. Case-insensitive lookups fold case while hashing and
//! comparing, so they allocate nothing.

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hash of `bytes`, folding ASCII case when `fold` is set.
pub(crate) fn hash_bytes(bytes: &[u8], fold: bool) -> u64 {
    let mut h: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if let Some(arr) = chunk.first_chunk::<8>() {
            let arr = if fold {
                arr.map(|b| b.to_ascii_lowercase())
            } else {
                *arr
            };
            h = (h.rotate_left(5) ^ u64::from_le_bytes(arr)).wrapping_mul(SEED);
        }
    }
    let mut tail = [0u8; 8];
    for (t, b) in tail.iter_mut().zip(chunks.remainder()) {
        *t = if fold { b.to_ascii_lowercase() } else { *b };
    }
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(SEED);
    h = (h.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(SEED);
    // murmur3's fmix64: Fx leaves the low bits (the bucket index) poorly mixed.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// [`std::hash::Hasher`] over [`hash_bytes`]'s mixing, for integer and IP sets.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(SEED);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(SEED);
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
}

/// At or below this many entries a linear scan beats hashing.
const LINEAR_MAX: usize = 4;

#[derive(Clone, Debug)]
pub(crate) struct StrSet {
    ignore_case: bool,
    /// Every entry, in first-seen order; searched linearly when the set is small.
    items: Vec<Box<str>>,
    /// `buckets.len()` is a power of two (or zero for a small set); entries hold their hash so
    /// a lookup compares strings only on a full hash match.
    buckets: Vec<Vec<(u64, usize)>>,
    /// Bit `n` is set when some entry is `n` bytes long (bit 63: 63 bytes or more), so most
    /// misses are rejected without hashing the subject.
    lengths: u64,
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl StrSet {
    pub(crate) fn new<I: IntoIterator<Item = String>>(values: I, ignore_case: bool) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::new();
        for v in values {
            let key = if ignore_case {
                v.to_ascii_lowercase()
            } else {
                v.clone()
            };
            if seen.insert(key) {
                items.push(v.into_boxed_str());
            }
        }
        let mut buckets = Vec::new();
        if items.len() > LINEAR_MAX {
            let n = (items.len() * 2).next_power_of_two();
            buckets = vec![Vec::new(); n];
            let mask = n - 1;
            for (i, item) in items.iter().enumerate() {
                let h = hash_bytes(item.as_bytes(), ignore_case);
                if let Some(b) = buckets.get_mut(h as usize & mask) {
                    b.push((h, i));
                }
            }
        }
        let lengths = items.iter().fold(0, |acc, i| acc | length_bit(i.len()));
        StrSet {
            ignore_case,
            items,
            buckets,
            lengths,
        }
    }

    fn eq(&self, a: &str, b: &str) -> bool {
        if self.ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    fn find_linear(&self, s: &str) -> Option<&str> {
        self.items
            .iter()
            .map(|b| &**b)
            .find(|item| self.eq(item, s))
    }

    /// The entry equal to `s`, if any.
    #[inline]
    pub(crate) fn find(&self, s: &str) -> Option<&str> {
        // ASCII case folding never changes a length.
        if self.lengths & length_bit(s.len()) == 0 {
            return None;
        }
        if self.buckets.is_empty() {
            return self.find_linear(s);
        }
        let h = hash_bytes(s.as_bytes(), self.ignore_case);
        let bucket = self.buckets.get(h as usize & (self.buckets.len() - 1))?;
        bucket
            .iter()
            .filter(|(eh, _)| *eh == h)
            .filter_map(|(_, i)| self.items.get(*i))
            .map(|b| &**b)
            .find(|item| self.eq(item, s))
    }

    #[inline]
    pub(crate) fn contains(&self, s: &str) -> bool {
        self.find(s).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_sets_agree() {
        for n in [0usize, 1, 3, 4, 5, 17, 1000] {
            let values: Vec<String> = (0..n).map(|i| format!("value-{i}")).collect();
            let set = StrSet::new(values.clone(), false);
            for v in &values {
                assert!(set.contains(v), "{n}: {v}");
            }
            assert!(!set.contains("value-"));
            assert!(!set.contains(&format!("value-{n}")));
            assert!(!set.contains("VALUE-0"));
        }
    }

    #[test]
    fn case_folding() {
        let values: Vec<String> = ["XMRig", "PhoenixMiner", "a", "b", "c", "d"]
            .map(String::from)
            .into();
        let set = StrSet::new(values, true);
        assert_eq!(set.find("xmrig"), Some("XMRig"));
        assert!(set.contains("PHOENIXMINER"));
        assert!(!set.contains("phoenixminer2"));
        let strict = StrSet::new(vec!["XMRig".to_owned()], false);
        assert!(!strict.contains("xmrig"));
    }

    #[test]
    fn hash_folds_only_when_asked() {
        assert_eq!(
            hash_bytes(b"Hello-World-Long", true),
            hash_bytes(b"hello-world-long", true)
        );
        assert_ne!(hash_bytes(b"Hello", false), hash_bytes(b"hello", false));
        assert_ne!(hash_bytes(b"a", false), hash_bytes(b"a\0", false));
    }
}
