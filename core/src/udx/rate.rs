//! Delivery-rate sampling (the scheme of Linux `tcp_rate.c`, which libudx follows): every
//! packet remembers how much had been delivered when it left; when it is acknowledged, the
//! data delivered since, over the longer of the send and ack intervals, is a bandwidth sample.

use std::time::{Duration, Instant};

/// Delivery state stamped on a packet each time it is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxState {
    delivered: u64,
    delivered_time: Instant,
    first_tx_time: Instant,
    app_limited: bool,
}

/// One ack's bandwidth sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Packets delivered over `interval`.
    pub(crate) delivered: u64,
    pub(crate) interval: Duration,
    /// The stream's delivered count when the sampled packet left: round-trip counting.
    pub(crate) prior_delivered: u64,
    /// The sender ran out of data during the interval, so the sample may understate the path.
    pub(crate) app_limited: bool,
}

/// What the newest acknowledged packet of the current ack said when it left.
#[derive(Debug, Clone, Copy)]
struct Prior {
    delivered: u64,
    delivered_time: Instant,
    app_limited: bool,
    order: (Instant, u64),
    send_interval: Duration,
}

/// Per-stream sampler state.
#[derive(Debug, Clone)]
pub(crate) struct Rate {
    delivered: u64,
    delivered_time: Option<Instant>,
    first_tx_time: Option<Instant>,
    /// Nonzero while app-limited: the delivered count after which the bubble is gone.
    app_limited_until: u64,
    prior: Option<Prior>,
    delivered_this_ack: bool,
}

impl Rate {
    pub(crate) fn new() -> Self {
        Rate {
            delivered: 0,
            delivered_time: None,
            first_tx_time: None,
            app_limited_until: 0,
            prior: None,
            delivered_this_ack: false,
        }
    }

    /// Packets delivered so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// True while an app-limited bubble is in flight.
    pub(crate) fn is_app_limited(&self) -> bool {
        self.app_limited_until != 0
    }

    /// A packet (new or retransmitted) leaves at `now`; `idle` when nothing was in flight,
    /// which restarts the intervals so idle time does not count as slow delivery.
    pub(crate) fn on_send(&mut self, now: Instant, idle: bool) -> TxState {
        if idle || self.first_tx_time.is_none() {
            self.first_tx_time = Some(now);
            self.delivered_time = Some(now);
        }
        TxState {
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_tx_time: self.first_tx_time.unwrap_or(now),
            app_limited: self.app_limited_until != 0,
        }
    }

    /// The sender has less than a packet to send and room in the window: mark the data now
    /// in flight as an app-limited bubble.
    pub(crate) fn on_app_limited(&mut self, inflight: u32) {
        self.app_limited_until = (self.delivered + inflight as u64).max(1);
    }

    /// One packet, sent at `sent_at` with sequence `seq`, was newly delivered.
    pub(crate) fn on_delivered(&mut self, tx: &TxState, sent_at: Instant, seq: u64) {
        self.delivered += 1;
        self.delivered_this_ack = true;
        if self.prior.is_none_or(|p| (sent_at, seq) > p.order) {
            self.prior = Some(Prior {
                delivered: tx.delivered,
                delivered_time: tx.delivered_time,
                app_limited: tx.app_limited,
                order: (sent_at, seq),
                send_interval: sent_at.saturating_duration_since(tx.first_tx_time),
            });
            self.first_tx_time = Some(sent_at);
        }
    }

    /// Ends one ack: the sample it yields, if trustworthy. Intervals shorter than the
    /// minimum RTT are artefacts of ack compression and are discarded.
    pub(crate) fn finish_ack(&mut self, now: Instant, min_rtt: Option<Duration>) -> Option<Sample> {
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        if std::mem::take(&mut self.delivered_this_ack) {
            self.delivered_time = Some(now);
        }
        let p = self.prior.take()?;
        let ack_interval = now.saturating_duration_since(p.delivered_time);
        let interval = p.send_interval.max(ack_interval);
        if interval.is_zero() || min_rtt.is_some_and(|m| interval < m) {
            return None;
        }
        Some(Sample {
            delivered: self.delivered - p.delivered,
            interval,
            prior_delivered: p.delivered,
            app_limited: p.app_limited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_flight_samples_the_send_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut r = Rate::new();
        // Ten packets one ms apart, each acked 20 ms after it left.
        let txs: Vec<_> = (0..10).map(|i| r.on_send(t0 + ms * i, i == 0)).collect();
        let mut last = None;
        for (i, tx) in txs.iter().enumerate() {
            let now = t0 + ms * (i as u32 + 20);
            r.on_delivered(tx, t0 + ms * i as u32, i as u64);
            last = r.finish_ack(now, Some(ms * 20));
        }
        let s = last.expect("last ack yields a sample");
        assert_eq!(s.delivered, 10);
        assert_eq!(s.interval, ms * 29);
        assert!(!s.app_limited);
    }
}
