//! SipHash-2-4 (Aumasson and Bernstein, <https://www.aumasson.jp/siphash/siphash.pdf>), fed one
//! 64-bit little-endian word at a time so that an eBPF program can run it in a bounded loop.
//!
//! The eBPF programs hash each path argument of a file syscall at entry and again at exit, under a
//! key drawn for that one syscall, to see whether the caller rewrote the buffer in between
//! ([`crate::PATH_CHANGED`]). The caller chooses both strings, so the hash must be keyed: with a
//! fixed, public function, a decoy of the same hash is easy to build. The key never leaves the
//! kernel. It lives here, rather than in the eBPF crate, so that it is tested against the
//! reference implementation.

/// The state after some whole words. [`SipHasher24::finish`] takes the tail.
#[derive(Clone, Copy, Debug)]
pub struct SipHasher24 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl SipHasher24 {
    #[inline(always)]
    pub const fn new(k0: u64, k1: u64) -> Self {
        SipHasher24 {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// Absorbs eight bytes of input, read little-endian.
    #[inline(always)]
    pub fn word(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    /// The hash of `len` bytes whose whole words went through [`word`](Self::word) and whose
    /// last `len % 8` bytes are the low bytes of `tail` (read little-endian, the rest zero; see
    /// [`tail_mask`]).
    #[inline(always)]
    pub fn finish(mut self, tail: u64, len: u64) -> u64 {
        let b = tail | (len << 56);
        self.v3 ^= b;
        self.round();
        self.round();
        self.v0 ^= b;
        self.v2 ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// The mask keeping the first `len % 8` bytes of a little-endian word.
#[inline(always)]
pub const fn tail_mask(len: u64) -> u64 {
    let bits = (len & 7) * 8;
    // `1 << 0` minus one is the empty mask; a shift by 64 never happens.
    (1u64 << bits) - 1
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn words(bytes: &[u8], k0: u64, k1: u64) -> u64 {
        let mut h = SipHasher24::new(k0, k1);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        // The tail as the eBPF programs read it: a whole word past the string, masked.
        let mut last = [0xa5u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        let tail = u64::from_le_bytes(last) & tail_mask(bytes.len() as u64);
        h.finish(tail, bytes.len() as u64)
    }

    #[test]
    #[allow(deprecated)] // core's SipHasher is the reference SipHash-2-4
    fn matches_the_reference_siphash_2_4() {
        use core::hash::{Hasher, SipHasher};
        let keys = [
            (0, 0),
            (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
            (u64::MAX, 42),
        ];
        let input: Vec<u8> = (0..=255u8).cycle().take(4100).collect();
        for (k0, k1) in keys {
            for len in (0..64).chain([255, 256, 257, 4095, 4096, 4100]) {
                let bytes = &input[..len];
                let mut reference = SipHasher::new_with_keys(k0, k1);
                reference.write(bytes);
                assert_eq!(words(bytes, k0, k1), reference.finish(), "len {len}");
            }
        }
    }

    #[test]
    fn the_paper_test_vector() {
        // Appendix A: key 00..0f, message 00..0e.
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(
            words(&msg, 0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
            0xa129_ca61_49be_45e5
        );
    }

    #[test]
    fn tail_masks() {
        assert_eq!(tail_mask(0), 0);
        assert_eq!(tail_mask(8), 0);
        assert_eq!(tail_mask(1), 0xff);
        assert_eq!(tail_mask(7), 0x00ff_ffff_ffff_ffff);
    }
}
