//! RACK-TLP bookkeeping (RFC 8985) that does not need the packet list: the most recently sent
//! delivered packet, the adaptive reordering window and loss-episode boundaries, plus the
//! tail-loss probe timeout.
//!
//! We have no DSACK (UDX does not carry it), so the window widens on the evidence we do have:
//! a packet we had marked lost is acknowledged before its retransmission left, or so soon
//! after it that the acknowledgement must be for the original.

use std::time::{Duration, Instant};

use super::rtt::Rtt;

/// Loss recoveries a widened window survives before it shrinks back (RFC 8985 §6.2.4).
const REO_WND_PERSIST: u32 = 16;
/// The window is capped by SRTT anyway; this only keeps the multiplier from overflowing.
const REO_WND_MULT_MAX: u32 = 64;
/// Added to the probe timeout when one packet is in flight, for the peer's delayed ACK
/// (libudx's `UDX_TLP_MAX_ACK_DELAY`).
const TLP_MAX_ACK_DELAY: Duration = Duration::from_millis(2);
/// Probe timeout before any RTT sample.
const TLP_INITIAL: Duration = Duration::from_secs(1);

/// RACK's per-stream state.
#[derive(Debug, Clone)]
pub(crate) struct Rack {
    /// (send time, seq) of the most recently sent packet known delivered.
    latest: Option<(Instant, u64)>,
    /// RTT measured on that packet.
    rtt: Duration,
    /// The reordering window is `mult` quarters of the minimum RTT.
    mult: u32,
    /// Recoveries left before `mult` resets to 1.
    persist: u32,
    /// Widening happens at most once per round trip: not again until this seq is acked.
    widen_guard: u64,
    /// During a loss episode, the seq whose cumulative ack ends it.
    recovery_until: Option<u64>,
}

impl Rack {
    pub(crate) fn new() -> Self {
        Rack {
            latest: None,
            rtt: Duration::ZERO,
            mult: 1,
            persist: 0,
            widen_guard: 0,
            recovery_until: None,
        }
    }

    /// The most recently sent delivered packet, if any.
    pub(crate) fn latest(&self) -> Option<(Instant, u64)> {
        self.latest
    }

    /// RTT of [`Rack::latest`].
    pub(crate) fn rtt(&self) -> Duration {
        self.rtt
    }

    /// A delivery whose RTT is trustworthy (RFC 8985 §6.2 step 2).
    pub(crate) fn on_delivered(&mut self, sent_at: Instant, seq: u64, rtt: Duration) {
        if self.latest.is_none_or(|l| (sent_at, seq) > l) {
            self.latest = Some((sent_at, seq));
            self.rtt = rtt;
        }
    }

    /// min(mult · minRTT/4, SRTT); zero before any sample.
    pub(crate) fn reorder_window(&self, rtt: &Rtt) -> Duration {
        match (rtt.min(), rtt.srtt()) {
            (Some(m), Some(s)) => (m / 4 * self.mult).min(s),
            _ => Duration::ZERO,
        }
    }

    /// Current multiplier.
    #[cfg(test)]
    pub(crate) fn multiplier(&self) -> u32 {
        self.mult
    }

    /// A loss mark turned out wrong. `acked` is the cumulative ack, `next_seq` the next
    /// sequence number we would send.
    pub(crate) fn on_spurious(&mut self, acked: u64, next_seq: u64) {
        if acked < self.widen_guard {
            return;
        }
        self.mult = (self.mult + 1).min(REO_WND_MULT_MAX);
        self.persist = REO_WND_PERSIST;
        self.widen_guard = next_seq;
    }

    /// Losses were detected; returns true if this starts a new episode.
    pub(crate) fn on_loss(&mut self, next_seq: u64) -> bool {
        if self.recovery_until.is_some() {
            return false;
        }
        self.recovery_until = Some(next_seq);
        true
    }

    /// The cumulative ack advanced to `acked`; ends the loss episode it completes.
    pub(crate) fn on_cumulative_ack(&mut self, acked: u64) {
        if self.recovery_until.is_some_and(|u| acked >= u) {
            self.recovery_until = None;
            if self.persist > 0 {
                self.persist -= 1;
                if self.persist == 0 {
                    self.mult = 1;
                }
            }
        }
    }

    /// True during a loss episode.
    pub(crate) fn in_recovery(&self) -> bool {
        self.recovery_until.is_some()
    }
}

/// RFC 8985 §7.2's probe timeout: 2·SRTT, plus the peer's worst ACK delay when a single
/// packet is in flight (no second packet would trigger an immediate ACK).
pub(crate) fn probe_timeout(srtt: Option<Duration>, single_in_flight: bool) -> Duration {
    match srtt {
        None => TLP_INITIAL,
        Some(s) if single_in_flight => s * 2 + TLP_MAX_ACK_DELAY,
        Some(s) => s * 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_widens_once_per_round_and_shrinks_after_16_recoveries() {
        let mut rtt = Rtt::new();
        rtt.sample(Duration::from_millis(40));
        let mut r = Rack::new();
        assert_eq!(r.reorder_window(&rtt), Duration::from_millis(10));
        r.on_spurious(100, 200);
        r.on_spurious(150, 210); // same round trip: ignored
        assert_eq!(r.multiplier(), 2);
        assert_eq!(r.reorder_window(&rtt), Duration::from_millis(20));
        r.on_spurious(200, 300);
        // Capped by SRTT.
        assert_eq!(r.reorder_window(&rtt), Duration::from_millis(30));
        for i in 0..REO_WND_PERSIST as u64 {
            assert_eq!(r.multiplier(), 3);
            assert!(r.on_loss(1000 + i));
            assert!(!r.on_loss(2000));
            r.on_cumulative_ack(1000 + i);
        }
        assert_eq!(r.multiplier(), 1);
    }

    #[test]
    fn probe_timeout_follows_srtt() {
        assert_eq!(probe_timeout(None, true), TLP_INITIAL);
        let s = Duration::from_millis(20);
        assert_eq!(probe_timeout(Some(s), false), Duration::from_millis(40));
        assert_eq!(probe_timeout(Some(s), true), Duration::from_millis(42));
    }
}
