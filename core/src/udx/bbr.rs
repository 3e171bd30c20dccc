//! BBR v1 congestion control as libudx runs it (adapted there from Linux `tcp_bbr.c`):
//! bandwidth from delivery-rate samples through a max filter over 10 round trips, minimum RTT
//! over 10 s, and the STARTUP / DRAIN / PROBE_BW / PROBE_RTT cycle. Random loss does not
//! shrink its model, which is the point: the window follows measured bandwidth × delay.
//!
//! Not carried over from libudx: the ack-aggregation allowance (`extra_acked`), which only
//! matters with stretched or batched ACKs, and undo of spurious cwnd reductions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rate::Sample;

/// libudx's initial window, in packets.
pub(crate) const INITIAL_CWND: u32 = 10;
/// Upper bound, in packets, so a peer advertising a huge window cannot make us hold
/// unbounded data in flight.
pub(crate) const MAX_CWND: u32 = 8192;
/// BBR never goes below this window (also the PROBE_RTT window).
const MIN_CWND: u32 = 4;
/// 2/ln 2: the smallest gain that doubles the sending rate every round in STARTUP.
const HIGH_GAIN: f64 = 2.885_39;
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
const CWND_GAIN: f64 = 2.0;
/// PROBE_BW pacing gains: probe up, drain what probing queued, then cruise.
const PACING_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Pace slightly under the estimate so our own queue drains.
const PACING_MARGIN: f64 = 0.99;
/// Round trips the max-bandwidth filter remembers (one PROBE_BW cycle plus two).
const BW_FILTER_ROUNDS: u64 = PACING_GAINS.len() as u64 + 2;
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// libudx measures RTT in whole milliseconds and counts a 0 ms sample as 1 ms. Without the
/// same floor a loopback or LAN min-RTT of tens of microseconds shrinks the BDP, and with it
/// the window, to the 4-packet minimum although scheduling delays between the two processes
/// are far longer than that.
const MIN_RTT_FLOOR: Duration = Duration::from_millis(1);
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// STARTUP ends after this many rounds without 25% bandwidth growth.
const FULL_BW_THRESH: f64 = 1.25;
const FULL_BW_COUNT: u32 = 3;
/// Where libudx starts the PROBE_BW cycle (Linux picks at random; libudx fixes it).
const PROBE_BW_START: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// Loss state as BBR sees it (Linux's `ca_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LossState {
    Open,
    Recovery,
    /// After an RTO, until the episode ends.
    Loss,
}

/// Maximum over the last [`BW_FILTER_ROUNDS`] rounds: a monotone deque of (round, value).
#[derive(Debug, Clone, Default)]
struct MaxFilter {
    entries: VecDeque<(u64, f64)>,
}

impl MaxFilter {
    fn update(&mut self, round: u64, value: f64) {
        while self.entries.back().is_some_and(|&(_, v)| v <= value) {
            self.entries.pop_back();
        }
        self.entries.push_back((round, value));
        self.expire(round);
    }

    fn expire(&mut self, round: u64) {
        while self
            .entries
            .front()
            .is_some_and(|&(r, _)| r + BW_FILTER_ROUNDS <= round)
        {
            self.entries.pop_front();
        }
    }

    fn get(&self) -> f64 {
        self.entries.front().map_or(0.0, |&(_, v)| v)
    }
}

/// What one ACK told the sender.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckInfo {
    pub(crate) now: Instant,
    /// Packets newly delivered (cumulatively or by SACK).
    pub(crate) acked: u32,
    /// Packets newly marked lost while processing it.
    pub(crate) losses: u32,
    pub(crate) sample: Option<Sample>,
    /// RTT of the newest delivered packet, when trustworthy.
    pub(crate) rtt: Option<Duration>,
    /// The stream's total delivered count after this ACK.
    pub(crate) delivered: u64,
    /// Packets in flight after this ACK.
    pub(crate) inflight: u32,
    /// A loss episode (RACK or RTO) is under way.
    pub(crate) in_recovery: bool,
}

/// BBR state for one stream.
#[derive(Debug, Clone)]
pub(crate) struct Bbr {
    mode: Mode,
    cwnd: u32,
    prior_cwnd: u32,
    /// Bytes per second.
    pacing_rate: f64,
    max_payload: usize,
    /// Packets per second.
    bw: MaxFilter,
    round: u64,
    next_round_delivered: u64,
    round_start: bool,
    min_rtt: Option<Duration>,
    /// When `min_rtt` was last set (None until the first ACK).
    min_rtt_stamp: Option<Instant>,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    idle_restart: bool,
    full_bw: f64,
    full_bw_count: u32,
    full_bw_reached: bool,
    cycle_index: usize,
    cycle_stamp: Option<Instant>,
    pacing_gain: f64,
    cwnd_gain: f64,
    loss_state: LossState,
    packet_conservation: bool,
    has_seen_rtt: bool,
}

impl Bbr {
    pub(crate) fn new(max_payload: usize) -> Self {
        let mut b = Bbr {
            mode: Mode::Startup,
            cwnd: INITIAL_CWND,
            prior_cwnd: 0,
            pacing_rate: 0.0,
            max_payload: max_payload.max(1),
            bw: MaxFilter::default(),
            round: 0,
            next_round_delivered: 0,
            round_start: false,
            min_rtt: None,
            min_rtt_stamp: None,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            idle_restart: false,
            full_bw: 0.0,
            full_bw_count: 0,
            full_bw_reached: false,
            cycle_index: 0,
            cycle_stamp: None,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            loss_state: LossState::Open,
            packet_conservation: false,
            has_seen_rtt: false,
        };
        b.init_pacing_rate(None);
        b
    }

    /// Congestion window, in packets.
    pub(crate) fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// Pacing rate in bytes per second.
    pub(crate) fn pacing_rate(&self) -> f64 {
        self.pacing_rate
    }

    /// Bottleneck bandwidth estimate, in bytes per second.
    pub(crate) fn bandwidth(&self) -> f64 {
        self.bw.get() * self.max_payload as f64
    }

    /// Before bandwidth samples exist, pace the initial window over one SRTT (1 ms before
    /// any RTT sample, as libudx does), at the high gain.
    fn init_pacing_rate(&mut self, srtt: Option<Duration>) {
        let rtt = match srtt.filter(|s| !s.is_zero()) {
            Some(s) => {
                self.has_seen_rtt = true;
                s
            }
            None => Duration::from_millis(1),
        };
        let bw = self.cwnd as f64 / rtt.as_secs_f64();
        self.pacing_rate = self.rate_for(bw, HIGH_GAIN);
    }

    fn rate_for(&self, bw: f64, gain: f64) -> f64 {
        (bw * self.max_payload as f64 * gain * PACING_MARGIN).max(1.0)
    }

    /// A packet is about to leave with nothing in flight.
    pub(crate) fn on_transmit_start(&mut self, now: Instant, app_limited: bool) {
        if !app_limited {
            return;
        }
        self.idle_restart = true;
        match self.mode {
            Mode::ProbeBw => self.set_pacing_rate(1.0, None),
            Mode::ProbeRtt => self.check_probe_rtt_done(now),
            _ => {}
        }
    }

    /// The retransmission timer fired with `inflight` packets still counted in flight.
    pub(crate) fn on_rto(&mut self, inflight: u32) {
        self.save_cwnd();
        self.loss_state = LossState::Loss;
        self.full_bw = 0.0;
        self.round_start = true;
        self.cwnd = inflight + 1;
    }

    /// Processes one ACK; returns true if the sender should mark itself app-limited
    /// (PROBE_RTT holds inflight down on purpose, so its samples must not lower the model).
    pub(crate) fn on_ack(&mut self, a: &AckInfo, srtt: Option<Duration>) -> bool {
        self.update_bw(a);
        self.update_cycle_phase(a);
        self.check_full_bw_reached(a);
        self.check_drain(a);
        let app_limited = self.update_min_rtt(a);
        self.update_gains();
        self.set_pacing_rate(self.pacing_gain, srtt);
        self.set_cwnd(a);
        app_limited
    }

    fn bdp(&self, gain: f64) -> u32 {
        match self.min_rtt {
            // Without an RTT we cannot size a BDP; libudx holds the initial window.
            None => INITIAL_CWND,
            Some(m) => (self.bw.get() * m.as_secs_f64() * gain) as u32,
        }
    }

    fn update_bw(&mut self, a: &AckInfo) {
        self.round_start = false;
        let Some(s) = a.sample else {
            return;
        };
        if s.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = a.delivered;
            self.round += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        self.bw.expire(self.round);
        let bw = s.delivered as f64 / s.interval.as_secs_f64();
        if !s.app_limited || bw >= self.bw.get() {
            self.bw.update(self.round, bw);
        }
    }

    fn update_cycle_phase(&mut self, a: &AckInfo) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let full_length = self
            .min_rtt
            .zip(self.cycle_stamp)
            .is_some_and(|(m, c)| a.now.saturating_duration_since(c) > m);
        let next = if self.pacing_gain > 1.0 {
            full_length && (a.losses > 0 || a.inflight >= self.bdp(self.pacing_gain))
        } else if self.pacing_gain < 1.0 {
            full_length || a.inflight <= self.bdp(1.0)
        } else {
            full_length
        };
        if next {
            self.advance_cycle(a.now);
        }
    }

    fn advance_cycle(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % PACING_GAINS.len();
        self.cycle_stamp = Some(now);
    }

    fn check_full_bw_reached(&mut self, a: &AckInfo) {
        if self.full_bw_reached || !self.round_start || a.sample.is_some_and(|s| s.app_limited) {
            return;
        }
        if self.bw.get() >= self.full_bw * FULL_BW_THRESH {
            self.full_bw = self.bw.get();
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_COUNT;
    }

    fn check_drain(&mut self, a: &AckInfo) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
        }
        if self.mode == Mode::Drain && a.inflight <= self.bdp(1.0) {
            self.enter_probe_bw(a.now);
        }
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        self.cycle_index = PROBE_BW_START;
        self.advance_cycle(now);
    }

    fn reset_mode(&mut self, now: Instant) {
        if self.full_bw_reached {
            self.enter_probe_bw(now);
        } else {
            self.mode = Mode::Startup;
        }
    }

    fn save_cwnd(&mut self) {
        if self.loss_state == LossState::Open && self.mode != Mode::ProbeRtt {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    fn check_probe_rtt_done(&mut self, now: Instant) {
        if self.probe_rtt_done.is_none_or(|d| now <= d) {
            return;
        }
        self.min_rtt_stamp = Some(now);
        self.cwnd = self.cwnd.max(self.prior_cwnd);
        self.reset_mode(now);
    }

    fn update_min_rtt(&mut self, a: &AckInfo) -> bool {
        let stamp = *self.min_rtt_stamp.get_or_insert(a.now);
        let expired = a.now > stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = a.rtt {
            if self.min_rtt.is_none_or(|m| rtt < m) || expired {
                self.min_rtt = Some(rtt.max(MIN_RTT_FLOOR));
                self.min_rtt_stamp = Some(a.now);
            }
        }
        if expired && !self.idle_restart && self.mode != Mode::ProbeRtt {
            self.mode = Mode::ProbeRtt;
            self.save_cwnd();
            self.probe_rtt_done = None;
        }
        let mut app_limited = false;
        if self.mode == Mode::ProbeRtt {
            app_limited = true;
            if self.probe_rtt_done.is_none() && a.inflight <= MIN_CWND {
                self.probe_rtt_done = Some(a.now + PROBE_RTT_DURATION);
                self.probe_rtt_round_done = false;
                self.next_round_delivered = a.delivered;
            } else if self.probe_rtt_done.is_some() {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done {
                    self.check_probe_rtt_done(a.now);
                }
            }
        }
        if a.sample.is_some_and(|s| s.delivered > 0) {
            self.idle_restart = false;
        }
        app_limited
    }

    fn update_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.mode {
            // libudx (like Linux) uses the high gain for the STARTUP and DRAIN windows.
            Mode::Startup => (HIGH_GAIN, HIGH_GAIN),
            Mode::Drain => (DRAIN_GAIN, HIGH_GAIN),
            Mode::ProbeBw => (PACING_GAINS[self.cycle_index], CWND_GAIN),
            Mode::ProbeRtt => (1.0, 1.0),
        };
    }

    fn set_pacing_rate(&mut self, gain: f64, srtt: Option<Duration>) {
        if !self.has_seen_rtt && srtt.is_some() {
            self.init_pacing_rate(srtt);
        }
        let rate = self.rate_for(self.bw.get(), gain);
        // Until STARTUP has found the pipe, never slow down on a low early sample.
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// Packet conservation for the first round of recovery, restoring the saved window when
    /// the episode ends; returns the window to use and whether conservation decided it.
    fn recover_or_restore(&mut self, a: &AckInfo) -> (u32, bool) {
        let mut cwnd = self.cwnd;
        if a.losses > 0 {
            cwnd = cwnd.saturating_sub(a.losses).max(1);
        }
        let state = match (a.in_recovery, self.loss_state) {
            (false, _) => LossState::Open,
            (true, LossState::Loss) => LossState::Loss,
            (true, _) => LossState::Recovery,
        };
        if state == LossState::Recovery && self.loss_state != LossState::Recovery {
            self.save_cwnd();
            self.packet_conservation = true;
            self.next_round_delivered = a.delivered;
            cwnd = a.inflight + a.acked;
        } else if self.loss_state >= LossState::Recovery && state == LossState::Open {
            cwnd = cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.loss_state = state;
        if self.packet_conservation {
            return (cwnd.max(a.inflight + a.acked), true);
        }
        (cwnd, false)
    }

    fn set_cwnd(&mut self, a: &AckInfo) {
        if a.acked > 0 {
            let (mut cwnd, conserving) = self.recover_or_restore(a);
            if !conserving {
                let target = self.bdp(self.cwnd_gain);
                if self.full_bw_reached {
                    cwnd = (cwnd + a.acked).min(target);
                } else if cwnd < target || a.delivered < INITIAL_CWND as u64 {
                    cwnd += a.acked;
                }
                cwnd = cwnd.max(MIN_CWND);
            }
            self.cwnd = cwnd.min(MAX_CWND);
        }
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(MIN_CWND);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_filter_forgets_after_ten_rounds() {
        let mut f = MaxFilter::default();
        f.update(1, 100.0);
        f.update(2, 50.0);
        assert_eq!(f.get(), 100.0);
        f.expire(10);
        assert_eq!(f.get(), 100.0);
        f.expire(11);
        assert_eq!(f.get(), 50.0);
        f.update(12, 70.0);
        assert_eq!(f.get(), 70.0);
    }

    /// A fixed-rate path: 1000 packets/s, 20 ms RTT (BDP 20 packets). STARTUP ends, DRAIN
    /// passes, and PROBE_BW settles on cwnd = 2 × BDP with pacing near the path rate.
    #[test]
    fn converges_on_a_fixed_pipe() {
        let t0 = Instant::now();
        let mut b = Bbr::new(1000);
        let rtt = Duration::from_millis(20);
        let mut delivered = 0u64;
        let mut now = t0;
        for _ in 0..2000 {
            now += Duration::from_millis(1);
            delivered += 1;
            let a = AckInfo {
                now,
                acked: 1,
                losses: 0,
                sample: Some(Sample {
                    delivered: 20,
                    interval: rtt,
                    prior_delivered: delivered.saturating_sub(20),
                    app_limited: false,
                }),
                rtt: Some(rtt),
                delivered,
                inflight: 20,
                in_recovery: false,
            };
            b.on_ack(&a, Some(rtt));
        }
        assert_eq!(b.mode, Mode::ProbeBw);
        assert_eq!(b.cwnd(), 40);
        assert!((b.bandwidth() - 1_000_000.0).abs() < 1.0);
        let r = b.pacing_rate();
        assert!(r > 0.7e6 && r < 1.3e6, "{r}");
    }
}
