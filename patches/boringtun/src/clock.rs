// braid patch (see ../../PATCHES.md): lets the caller drive the noise state machine on its
// own clock, one thread at a time.

//! A per-thread clock override.
//!
//! Everything in `noise` reads time through `sleepyinstant::Instant::now()` (monotonic) and
//! the handshake's TAI64N stamp (wall clock). Inside [`with_clock`] both read the values the
//! caller gives instead, so a caller that passes `now` into its own state machine (sans-IO)
//! can run a `Tunn` on real or virtual time alike. Outside it, the system clocks are read as
//! before.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static NOW: Cell<Option<(Duration, Duration)>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's noise clocks reading `monotonic` (time since an origin the
/// caller keeps fixed for the lifetime of every `Tunn` it drives this way) and `wall` (time
/// since the Unix epoch, for handshake timestamps). Nests; the previous reading comes back
/// when `f` returns or unwinds.
pub fn with_clock<R>(monotonic: Duration, wall: Duration, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(Duration, Duration)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            NOW.with(|now| now.set(self.0));
        }
    }
    let _restore = Restore(NOW.with(|now| now.replace(Some((monotonic, wall)))));
    f()
}

/// The monotonic reading set by [`with_clock`] on this thread, if any.
pub(crate) fn monotonic() -> Option<Duration> {
    NOW.with(|now| now.get()).map(|(monotonic, _)| monotonic)
}

/// The wall-clock reading set by [`with_clock`] on this thread, if any.
pub(crate) fn wall() -> Option<Duration> {
    NOW.with(|now| now.get()).map(|(_, wall)| wall)
}
