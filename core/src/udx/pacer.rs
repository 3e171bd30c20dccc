//! Spaces data packets at the congestion controller's pacing rate.
//!
//! libudx refills a token bucket every millisecond; the equivalent here is a next-departure
//! time that may lag `now` by at most one millisecond, so at most a millisecond's worth of
//! packets leaves in a burst after an idle spell.

use std::time::{Duration, Instant};

/// The largest burst, as time at the pacing rate.
const BURST: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Default)]
pub(crate) struct Pacer {
    next: Option<Instant>,
}

impl Pacer {
    /// When the next data packet may leave (None: now).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// `bytes` left at `now` at `rate` bytes per second.
    pub(crate) fn on_sent(&mut self, now: Instant, bytes: usize, rate: f64) {
        if rate <= 0.0 || !rate.is_finite() {
            return;
        }
        let interval = Duration::from_secs_f64(bytes as f64 / rate);
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let base = self.next.map_or(floor, |t| t.max(floor));
        self.next = Some(base + interval);
    }
}
