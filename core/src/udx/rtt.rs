//! Round-trip time estimation (RFC 6298) with libudx's limits and outlier clamp.

use std::time::Duration;

/// libudx never lets the RTO fall below one second.
pub(crate) const RTO_MIN: Duration = Duration::from_millis(1000);
/// Nor rise above 30 seconds.
pub(crate) const RTO_MAX: Duration = Duration::from_secs(30);
/// Samples above this (and above SRTT + 5·RTTVAR) are treated as process suspension.
const OUTLIER: Duration = Duration::from_secs(5);

/// SRTT, RTTVAR, RTO and the smallest RTT seen.
#[derive(Debug, Clone)]
pub(crate) struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    min: Option<Duration>,
}

impl Rtt {
    pub(crate) fn new() -> Self {
        Rtt {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: RTO_MIN,
            min: None,
        }
    }

    /// Feeds one sample from a packet that was sent exactly once (Karn's rule is the
    /// caller's job).
    pub(crate) fn sample(&mut self, rtt: Duration) {
        let rtt = match self.srtt {
            None => rtt.min(RTO_MAX),
            Some(srtt) => {
                let threshold = srtt + self.rttvar * 5;
                if rtt > threshold && rtt > OUTLIER {
                    threshold.min(RTO_MAX)
                } else {
                    rtt
                }
            }
        };
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + self.rttvar * 4).clamp(RTO_MIN, RTO_MAX);
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
    }

    /// Smoothed RTT, once a sample exists.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Current retransmission timeout.
    pub(crate) fn rto(&self) -> Duration {
        self.rto
    }

    /// Smallest sample so far.
    pub(crate) fn min(&self) -> Option<Duration> {
        self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298_with_floor_and_clamp() {
        let mut r = Rtt::new();
        assert_eq!(r.rto(), RTO_MIN);
        r.sample(Duration::from_millis(100));
        assert_eq!(r.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(r.rto(), RTO_MIN);
        r.sample(Duration::from_millis(2000));
        // rttvar = 50*3/4 + 1900/4 = 512.5; srtt = 87.5 + 250 = 337.5
        assert_eq!(r.srtt(), Some(Duration::from_micros(337_500)));
        assert!(r.rto() > Duration::from_secs(2));
        // A 60 s sample is clamped to SRTT + 5·RTTVAR.
        r.sample(Duration::from_secs(60));
        assert!(r.srtt().unwrap() < Duration::from_secs(1));
        assert!(r.rto() <= RTO_MAX);
    }
}
