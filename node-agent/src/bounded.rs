//! A least-recently-used cache bounded in bytes as well as in entries.
//!
//! A count bound alone means nothing when entries hold attacker-sized strings (a 4 KiB cwd, an
//! 8 KiB argv, a 4 KiB `LD_LIBRARY_PATH` per process): 32768 processes could then hold over a
//! GiB. Each entry is weighed when it goes in and again whenever it is changed in place, so the
//! running total is exact for what [`HeapBytes`] counts and is never recomputed by walking the
//! cache. Entries go least recently used first, whichever bound is reached; evictions are
//! counted by the bound that caused them.

use std::{hash::Hash, mem::size_of, num::NonZeroUsize, sync::Arc};

use lru::LruCache;

/// Bytes a value owns on the heap (string and vector buffers), not counting itself.
pub trait HeapBytes {
    fn heap_bytes(&self) -> usize;
}

impl HeapBytes for String {
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

/// A `str` is its own bytes: an `Arc<str>` or `Box<str>` counts them as the pointee's size.
impl HeapBytes for str {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl<T: HeapBytes> HeapBytes for Option<T> {
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, HeapBytes::heap_bytes)
    }
}

impl<T: HeapBytes> HeapBytes for Vec<T> {
    fn heap_bytes(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(HeapBytes::heap_bytes).sum::<usize>()
    }
}

/// What the elements own (the elements themselves are the pointee's size).
impl<T: HeapBytes> HeapBytes for [T] {
    fn heap_bytes(&self) -> usize {
        self.iter().map(HeapBytes::heap_bytes).sum::<usize>()
    }
}

/// Counted in full by every holder: an overestimate when shared, never an underestimate.
impl<T: HeapBytes + ?Sized> HeapBytes for Arc<T> {
    fn heap_bytes(&self) -> usize {
        // The two reference counts plus the value.
        2 * size_of::<usize>() + size_of_val(&**self) + (**self).heap_bytes()
    }
}

macro_rules! no_heap {
    ($($t:ty),*) => { $(impl HeapBytes for $t { fn heap_bytes(&self) -> usize { 0 } })* };
}
no_heap!(u32, u64);

impl<A: HeapBytes, B: HeapBytes> HeapBytes for (A, B) {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes()
    }
}

/// What the cache's own structures cost per entry beyond the key and value: the list node's
/// two links and the hash table's slot and control byte, rounded up.
const NODE_OVERHEAD: usize = 4 * size_of::<usize>();

/// Evictions so far, by the bound that caused them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    pub count: u64,
    pub bytes: u64,
}

impl Evictions {
    pub fn total(&self) -> u64 {
        self.count + self.bytes
    }
}

impl std::ops::Add for Evictions {
    type Output = Evictions;
    fn add(self, o: Evictions) -> Evictions {
        Evictions {
            count: self.count + o.count,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// One cache's size and bounds, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub capacity: usize,
    pub bytes: usize,
    pub max_bytes: usize,
    pub evictions: Evictions,
}

impl std::ops::Add for CacheStats {
    type Output = CacheStats;
    fn add(self, o: CacheStats) -> CacheStats {
        CacheStats {
            entries: self.entries + o.entries,
            capacity: self.capacity + o.capacity,
            bytes: self.bytes + o.bytes,
            max_bytes: self.max_bytes + o.max_bytes,
            evictions: self.evictions + o.evictions,
        }
    }
}

pub struct BoundedLru<K: Hash + Eq, V> {
    map: LruCache<K, V>,
    bytes: usize,
    max_bytes: usize,
    evictions: Evictions,
}

impl<K: Hash + Eq + HeapBytes, V: HeapBytes> BoundedLru<K, V> {
    /// At most `capacity` entries (at least 1) and `max_bytes` bytes, except that the entry
    /// last inserted or changed always stays, however large.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        BoundedLru {
            map: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            bytes: 0,
            max_bytes,
            evictions: Evictions::default(),
        }
    }

    /// The cost of one entry.
    pub fn weigh(k: &K, v: &V) -> usize {
        NODE_OVERHEAD + size_of::<K>() + size_of::<V>() + k.heap_bytes() + v.heap_bytes()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.map.cap().get()
    }

    /// Bytes the entries weigh now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.len(),
            capacity: self.capacity(),
            bytes: self.bytes,
            max_bytes: self.max_bytes,
            evictions: self.evictions,
        }
    }

    /// Inserts or replaces, then evicts what the bounds require.
    pub fn put(&mut self, k: K, v: V) {
        self.bytes += Self::weigh(&k, &v);
        let replacing = self.map.contains(&k);
        // `push` hands back the replaced entry (same key) or the one evicted for the count.
        if let Some((old_k, old_v)) = self.map.push(k, v) {
            self.bytes = self.bytes.saturating_sub(Self::weigh(&old_k, &old_v));
            if !replacing {
                self.evictions.count += 1;
            }
        }
        self.enforce_bytes();
    }

    /// Changes an entry in place (marking it most recently used when `promote`, or when it
    /// grows), keeping the byte count exact: the entry is weighed before and after.
    pub fn update<R>(&mut self, k: &K, promote: bool, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let v = if promote {
            self.map.get_mut(k)?
        } else {
            self.map.peek_mut(k)?
        };
        let before = v.heap_bytes();
        let r = f(v);
        let after = v.heap_bytes();
        self.bytes = (self.bytes + after).saturating_sub(before);
        if after > before {
            // A grown entry is in use: it must not be the one evicted to make room for it.
            self.map.promote(k);
            self.enforce_bytes();
        }
        Some(r)
    }

    fn enforce_bytes(&mut self) {
        while self.bytes > self.max_bytes && self.map.len() > 1 {
            let Some((k, v)) = self.map.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(Self::weigh(&k, &v));
            self.evictions.bytes += 1;
        }
    }

    pub fn pop(&mut self, k: &K) -> Option<V> {
        let (k, v) = self.map.pop_entry(k)?;
        self.bytes = self.bytes.saturating_sub(Self::weigh(&k, &v));
        Some(v)
    }

    pub fn get(&mut self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub fn peek(&self, k: &K) -> Option<&V> {
        self.map.peek(k)
    }

    pub fn contains(&self, k: &K) -> bool {
        self.map.contains(k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// The weight of every entry, summed afresh (tests check the running total against it).
    #[cfg(test)]
    pub fn recount(&self) -> usize {
        self.map.iter().map(|(k, v)| Self::weigh(k, v)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_by_count_and_by_bytes_and_counts_each() {
        let mut c: BoundedLru<u32, String> = BoundedLru::new(4, 1 << 20);
        for i in 0..6 {
            c.put(i, "x".into());
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.evictions(), Evictions { count: 2, bytes: 0 });
        assert_eq!(c.bytes(), c.recount());

        let mut c: BoundedLru<u32, String> = BoundedLru::new(100, 10_000);
        for i in 0..10 {
            c.put(i, "y".repeat(4096));
        }
        assert!(c.bytes() <= 10_000, "{}", c.bytes());
        assert_eq!(c.len(), 2);
        assert_eq!(c.evictions(), Evictions { count: 0, bytes: 8 });
        assert_eq!(c.bytes(), c.recount());
        // The oldest went first.
        assert!(c.peek(&9).is_some() && c.peek(&8).is_some() && c.peek(&7).is_none());
    }

    #[test]
    fn replacing_updating_and_removing_keep_the_count_exact() {
        let mut c: BoundedLru<u32, String> = BoundedLru::new(8, 1 << 20);
        c.put(1, "a".repeat(100));
        c.put(1, "b".repeat(1000));
        assert_eq!(c.len(), 1);
        assert_eq!(c.evictions().total(), 0, "a replacement is not an eviction");
        assert_eq!(c.bytes(), c.recount());
        c.update(&1, true, |v| *v = "c".repeat(5000));
        assert_eq!(c.bytes(), c.recount());
        c.update(&1, false, |v| *v = String::new());
        assert_eq!(c.bytes(), c.recount());
        c.put(2, "d".into());
        c.pop(&1);
        assert_eq!(c.bytes(), c.recount());
        c.pop(&2);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn growing_an_entry_in_place_evicts_others_but_not_it() {
        let mut c: BoundedLru<u32, String> = BoundedLru::new(8, 3000);
        c.put(1, "a".repeat(1000));
        c.put(2, "b".repeat(1000));
        c.update(&1, false, |v| *v = "c".repeat(8000));
        assert_eq!(c.len(), 1);
        assert!(c.peek(&1).is_some());
        assert_eq!(c.evictions().bytes, 1);
        assert_eq!(c.bytes(), c.recount());
    }
}
