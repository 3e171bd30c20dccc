//! Congestion window and pacing.
//!
//! Interim choice: a NewReno-style window in packets (slow start, additive increase, one
//! halving per loss episode, collapse to one packet on RTO) with a pacing rate derived from
//! it. libudx runs BBRv1; the window algorithm has no wire visibility, so swapping this for
//! BBR later changes performance only, not compatibility.

use std::time::{Duration, Instant};

/// libudx's initial window, in packets.
pub(crate) const INITIAL_CWND: u32 = 10;
/// Upper bound, in packets, so a peer advertising a huge window cannot make us hold
/// unbounded data in flight.
pub(crate) const MAX_CWND: u32 = 8192;
/// libudx's initial slow-start threshold.
const INITIAL_SSTHRESH: u32 = 0xFFFF;
/// Bursts the pacer lets through after an idle period.
const PACING_BURST: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub(crate) struct Congestion {
    cwnd: u32,
    ssthresh: u32,
    /// Packets acknowledged since the last additive increase.
    acked_in_ca: u32,
    /// While `Some`, losses belong to the episode that ends when this seq is acknowledged.
    recovery_until: Option<u64>,
    /// Earliest time the next data packet may leave.
    pace_next: Option<Instant>,
}

impl Congestion {
    pub(crate) fn new() -> Self {
        Congestion {
            cwnd: INITIAL_CWND,
            ssthresh: INITIAL_SSTHRESH,
            acked_in_ca: 0,
            recovery_until: None,
            pace_next: None,
        }
    }

    pub(crate) fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// `n` packets newly delivered; `acked` is the cumulative ack (unwrapped).
    pub(crate) fn on_delivered(&mut self, n: u32, acked: u64) {
        if let Some(until) = self.recovery_until {
            if acked >= until {
                self.recovery_until = None;
            } else {
                return;
            }
        }
        for _ in 0..n {
            if self.cwnd < self.ssthresh {
                self.cwnd += 1;
            } else {
                self.acked_in_ca += 1;
                if self.acked_in_ca >= self.cwnd {
                    self.acked_in_ca = 0;
                    self.cwnd += 1;
                }
            }
        }
        self.cwnd = self.cwnd.min(MAX_CWND);
    }

    /// A loss was detected by reordering (RACK); halves once per episode.
    pub(crate) fn on_loss(&mut self, next_seq: u64) {
        if self.recovery_until.is_some() {
            return;
        }
        self.ssthresh = (self.cwnd / 2).max(2);
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
        self.recovery_until = Some(next_seq);
    }

    /// The retransmission timer fired.
    pub(crate) fn on_rto(&mut self, next_seq: u64) {
        if self.recovery_until.is_none() {
            self.ssthresh = (self.cwnd / 2).max(2);
        }
        self.cwnd = 1;
        self.acked_in_ca = 0;
        self.recovery_until = Some(next_seq);
    }

    /// When a data packet may be sent (None: now).
    pub(crate) fn pace_at(&self) -> Option<Instant> {
        self.pace_next
    }

    /// Records that `bytes` of data left at `now`, spacing the next packet at the pacing rate
    /// (cwnd per SRTT, times 2 in slow start and 1.25 after, so pacing never caps the window).
    pub(crate) fn on_sent(&mut self, now: Instant, bytes: usize, srtt: Option<Duration>) {
        let Some(srtt) = srtt.filter(|s| !s.is_zero()) else {
            return;
        };
        let gain = if self.cwnd < self.ssthresh { 2.0 } else { 1.25 };
        let rate = self.cwnd as f64 * 1152.0 * gain / srtt.as_secs_f64();
        let interval = Duration::from_secs_f64(bytes as f64 / rate);
        let floor = now.checked_sub(PACING_BURST).unwrap_or(now);
        let base = self.pace_next.map_or(floor, |t| t.max(floor));
        self.pace_next = Some(base + interval);
    }
}
