//! A cheap hasher for the maps on the forwarding path, whose keys rtcd
//! assigns itself: session keys (a counter) and m-line ids.
//!
//! The standard SipHash costs ~180 instructions per lookup, and forwarding
//! does several per copy of a packet (the subscriber's session, its
//! m-line, each poll of its str0m instance): ~4 % of the worker's
//! instructions. Keys a remote peer picks (addresses, ufrags, SSRCs) stay
//! in SipHash maps, so nobody outside can aim collisions at these.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by something rtcd chose.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-rotate hashing (as in Firefox's and rustc's `FxHasher`).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn consecutive_keys_fill_distinct_buckets() {
        let build = BuildHasherDefault::<FastHasher>::default();
        // A table of 1024 buckets indexes by the low 10 bits: consecutive
        // session keys must not collide there (multiplying by an odd
        // constant is a bijection on the low bits).
        let mut low: Vec<u64> = (1..=1024u64).map(|k| build.hash_one(k) & 1023).collect();
        low.sort_unstable();
        low.dedup();
        assert_eq!(low.len(), 1024);
        // hashbrown tags each bucket with the top 7 bits: they must vary too.
        let mut top: Vec<u64> = (1..=1024u64).map(|k| build.hash_one(k) >> 57).collect();
        top.sort_unstable();
        top.dedup();
        assert!(top.len() > 100, "only {} distinct tags", top.len());
    }

    #[test]
    fn byte_keys_hash_every_byte() {
        let build = BuildHasherDefault::<FastHasher>::default();
        let a = build.hash_one("0123456789a");
        let b = build.hash_one("0123456789b");
        let c = build.hash_one("0123456789");
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut m: FastMap<String, u32> = FastMap::default();
        for i in 0..1000 {
            m.insert(format!("mid{i}"), i);
        }
        assert!((0..1000).all(|i| m[&format!("mid{i}")] == i));
    }
}
