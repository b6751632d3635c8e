//! Per-path probe state (filled in with the probe state machine).

use std::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct PathProbe {
    pub next_send: Instant,
    pub last_answer: Option<Instant>,
}

impl PathProbe {
    pub fn new(now: Instant) -> Self {
        PathProbe {
            next_send: now,
            last_answer: None,
        }
    }
}
