//! Hash functions: FNV-1a-32 for bucketing (shared bit for bit with the other
//! SDKs) and a fast non-cryptographic hasher for the engine's own lookup maps.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a 32-bit offset basis.
pub const FNV_OFFSET: u32 = 0x811c_9dc5;
/// FNV-1a 32-bit prime.
pub const FNV_PRIME: u32 = 0x0100_0193;

/// Streaming FNV-1a-32. Because FNV has no finalisation step, the running
/// state *is* the hash of everything fed so far; the engine relies on this to
/// precompute the state after `flagKey + ":"` once at compile time and to
/// derive the fraction hash by continuing from the bucket hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a32(pub u32);

impl Default for Fnv1a32 {
    fn default() -> Self {
        Fnv1a32(FNV_OFFSET)
    }
}

impl Fnv1a32 {
    /// Feeds bytes into the hash.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }

    /// Returns a copy fed with `bytes`, leaving `self` untouched.
    #[inline]
    pub fn with(mut self, bytes: &[u8]) -> Self {
        self.update(bytes);
        self
    }

    /// The hash of everything fed so far.
    #[inline]
    pub fn finish(self) -> u32 {
        self.0
    }
}

/// Lets numbers be hashed through their `Display` text without allocating a
/// `String` first.
impl fmt::Write for Fnv1a32 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.update(s.as_bytes());
        Ok(())
    }
}

/// FNV-1a-32 of a whole string (convenience for tests and tools).
pub fn fnv1a32(input: &str) -> u32 {
    Fnv1a32::default().with(input.as_bytes()).finish()
}

/// The Fx hash (as used inside rustc): a multiply-rotate hash that is several
/// times faster than SipHash on short keys such as flag keys and attribute
/// names. It is not DoS resistant, which is acceptable here because the maps
/// it backs are filled by administrators (flag definitions) or hold one
/// request's attributes; lookups of hostile keys cannot degrade them.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

/// Reads 1–7 trailing bytes into a word with fixed-size loads: copying a
/// variable-length slice would call `memcpy`, which costs more than the
/// whole hash of a short key. Overlapping reads are fine because the length
/// is mixed in by the caller.
#[inline]
fn tail(rest: &[u8]) -> u64 {
    let n = rest.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
        u64::from(lo) | (u64::from(hi) << 32)
    } else {
        u64::from(rest[0]) | (u64::from(rest[n / 2]) << 8) | (u64::from(rest[n - 1]) << 16)
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Mix the length in so "a" and "a\0" differ.
            self.add(tail(rest) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The last multiply leaves the low bits (which hashbrown uses to pick
        // a bucket) depending only on the low bits of the input; rotating
        // brings the well-mixed high bits down (as rustc-hash 2 does).
        self.hash.rotate_left(26)
    }
}

/// `BuildHasher` for [`FxHasher`], usable with `HashMap::with_hasher`.
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn fnv_matches_reference_vector() {
        // Shared with the TypeScript and Go SDKs.
        let h = fnv1a32("new-checkout-flow:user-42");
        assert_eq!(h, 4_236_282_073);
        assert_eq!(h % 100, 73);
    }

    #[test]
    fn fnv_of_empty_is_offset_basis() {
        assert_eq!(fnv1a32(""), FNV_OFFSET);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut h = Fnv1a32::default().with(b"flag:");
        write!(h, "{}", 42).unwrap();
        assert_eq!(h.finish(), fnv1a32("flag:42"));
    }

    #[test]
    fn fx_distinguishes_short_keys() {
        let hash = |s: &str| {
            let mut h = FxHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_ne!(hash("a"), hash("a\0"));
        assert_ne!(hash("role"), hash("plan"));
    }
}
