//! A sliding window of counters already seen, as in WireGuard's replay protection:
//! a bitmap covering the `BITS` counters below the highest seen.

/// Why a counter was refused by [`Window::check_and_mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Inside the window and already marked.
    Duplicate,
    /// Below the window: cannot tell, so treated as a replay.
    TooOld,
}

/// `WORDS` × 64 counters wide.
#[derive(Debug, Clone)]
pub struct Window<const WORDS: usize> {
    /// One more than the highest counter marked.
    top: u64,
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for Window<WORDS> {
    fn default() -> Self {
        Self {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

impl<const WORDS: usize> Window<WORDS> {
    /// How many counters below the highest the window remembers.
    pub const BITS: u64 = WORDS as u64 * 64;

    /// One more than the highest counter marked (0 when none).
    pub fn top(&self) -> u64 {
        self.top
    }

    fn bit(c: u64) -> (usize, u64) {
        let i = c % Self::BITS;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether [`check_and_mark`](Self::check_and_mark) would accept `c`.
    pub fn would_accept(&self, c: u64) -> bool {
        if c == u64::MAX {
            return false;
        }
        if c >= self.top {
            return true;
        }
        if c.saturating_add(Self::BITS) < self.top {
            return false;
        }
        let (w, b) = Self::bit(c);
        self.bits[w] & b == 0
    }

    /// Marks `c` as seen, or says why it cannot be.
    /// The largest counter, `u64::MAX`, is refused (its successor does not exist;
    /// WireGuard stops far earlier, at 2^60).
    pub fn check_and_mark(&mut self, c: u64) -> Result<(), Seen> {
        if c == u64::MAX {
            return Err(Seen::TooOld);
        }
        if c >= self.top {
            if c - self.top >= Self::BITS {
                self.bits = [0; WORDS];
            } else {
                for x in self.top..c {
                    let (w, b) = Self::bit(x);
                    self.bits[w] &= !b;
                }
            }
            let (w, b) = Self::bit(c);
            self.bits[w] |= b;
            self.top = c + 1;
            return Ok(());
        }
        if c.saturating_add(Self::BITS) < self.top {
            return Err(Seen::TooOld);
        }
        let (w, b) = Self::bit(c);
        if self.bits[w] & b != 0 {
            return Err(Seen::Duplicate);
        }
        self.bits[w] |= b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_counter_once_within_the_window() {
        let mut w = Window::<2>::default();
        assert_eq!(w.check_and_mark(5), Ok(()));
        assert_eq!(w.check_and_mark(5), Err(Seen::Duplicate));
        assert_eq!(w.check_and_mark(3), Ok(()));
        assert_eq!(w.check_and_mark(3), Err(Seen::Duplicate));
        assert_eq!(w.check_and_mark(200), Ok(()));
        // The window is now 73..=200.
        assert_eq!(w.check_and_mark(72), Err(Seen::TooOld));
        assert_eq!(w.check_and_mark(71), Err(Seen::TooOld));
        assert_eq!(w.check_and_mark(73), Ok(()));
        // A bit reused by the advancing window starts clear.
        assert_eq!(w.check_and_mark(133), Ok(()));
        assert_eq!(w.check_and_mark(u64::MAX - 1), Ok(()));
        assert_eq!(w.check_and_mark(u64::MAX - 1), Err(Seen::Duplicate));
        assert_eq!(w.check_and_mark(u64::MAX), Err(Seen::TooOld));
    }
}
