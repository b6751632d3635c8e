//! The engine's randomness: a seed given at construction, stretched with SplitMix64
//! (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014). Values
//! are session-index bases and probe epochs, which must differ between instances, not
//! be secret: WireGuard's secrets come from boringtun's own generator.

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A 24-bit session index base, as boringtun's `Tunn::new` takes it.
    pub(crate) fn session_index(&mut self) -> u32 {
        (self.next_u64() >> 40) as u32
    }
}
