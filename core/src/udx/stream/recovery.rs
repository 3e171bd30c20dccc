//! Acknowledgement processing and loss recovery: cumulative and selective ACKs, RTT and
//! delivery-rate samples for BBR, RACK loss detection, tail-loss probes and the RTO.

use super::*;

impl Stream {
    pub(super) fn process_ack(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = packet.header;
        // An ack beyond anything we sent is bogus: stop here, as libudx does.
        if diff(self.next_seq, h.ack) > 0 {
            self.stats.dropped += 1;
            return;
        }
        let ack_rel = diff(self.remote_acked, h.ack);
        if ack_rel >= 0 {
            let newer_seq = (h.seq.wrapping_sub(self.send_wl1) as i32) > 0;
            let same_seq_newer_ack =
                h.seq == self.send_wl1 && (h.ack.wrapping_sub(self.send_wl2) as i32) >= 0;
            if newer_seq || same_seq_newer_ack {
                self.send_rwnd = h.recv_window;
                self.send_wl1 = h.seq;
                self.send_wl2 = h.ack;
            }
        }

        let mut delivered = 0u32;
        self.ack_rtt = None;
        if ack_rel > 0 {
            for _ in 0..ack_rel {
                let Some(s) = self.outgoing.pop_front() else {
                    break;
                };
                let seq = self.remote_acked;
                self.remote_acked += 1;
                self.release(&s);
                if s.delivered {
                    self.sacked -= 1;
                } else {
                    delivered += 1;
                    self.on_delivered(now, seq, &s);
                }
            }
            self.rack.on_cumulative_ack(self.remote_acked);
            if self.tlp_end.is_some_and(|e| self.remote_acked > e) {
                self.tlp_end = None;
            }
        }

        for block in packet.sacks() {
            let start = diff(self.remote_acked, block.start);
            let end = diff(self.remote_acked, block.end);
            let limit = (self.next_seq - self.remote_acked) as i64;
            if start < 0 || start >= end || end > limit {
                self.stats.invalid_sacks += 1;
                continue;
            }
            for i in start..end {
                let seq = self.remote_acked + i as u64;
                let s = &mut self.outgoing[i as usize];
                if s.delivered {
                    continue;
                }
                s.delivered = true;
                self.sacked += 1;
                let (sent_at, transmits, lost, tx) = (s.sent_at, s.transmits, s.lost, s.tx);
                if !lost {
                    self.inflight -= 1;
                }
                delivered += 1;
                self.sample(now, seq, sent_at, transmits, lost, &tx);
            }
        }

        if delivered == 0 {
            return;
        }
        let all_acked = self.sacked == self.outgoing.len();
        self.rto_at = if all_acked {
            None
        } else {
            Some(now + self.rtt.rto())
        };
        let losses = self.detect_loss(now);
        let info = AckInfo {
            now,
            acked: delivered,
            losses,
            sample: self.rate.finish_ack(now, self.rtt.min()),
            rtt: self.ack_rtt,
            delivered: self.rate.delivered(),
            inflight: self.inflight,
            in_recovery: self.rack.in_recovery(),
        };
        if self.cc.on_ack(&info, self.rtt.srtt()) {
            self.rate.on_app_limited(self.inflight);
        }
        if ack_rel > 0 {
            self.arm_tlp(now);
        }
        self.update_probe(now);
    }

    pub(super) fn on_delivered(&mut self, now: Instant, seq: u64, s: &Sent) {
        if !s.lost {
            self.inflight -= 1;
        }
        self.sample(now, seq, s.sent_at, s.transmits, s.lost, &s.tx);
    }

    /// RTT sample (Karn: first transmissions only), RACK's most recent delivery, and
    /// spurious-loss evidence. `lost`: the packet is marked lost and waits to be resent.
    pub(super) fn sample(
        &mut self,
        now: Instant,
        seq: u64,
        sent_at: Instant,
        transmits: u32,
        lost: bool,
        tx: &TxState,
    ) {
        self.rate.on_delivered(tx, sent_at, seq);
        let rtt = now.saturating_duration_since(sent_at);
        let too_soon = transmits > 1 && self.rtt.min().is_some_and(|m| rtt < m);
        if lost || too_soon {
            // The original arrived after all: our reordering window was too tight.
            self.stats.spurious += 1;
            self.rack.on_spurious(self.remote_acked, self.next_seq);
        }
        if transmits == 1 {
            self.rtt.sample(rtt);
        } else if too_soon {
            // The ack of an earlier transmission: not evidence about this one.
            return;
        }
        self.rack.on_delivered(sent_at, seq, rtt);
        self.ack_rtt = Some(rtt);
    }

    /// RACK (RFC 8985 §6.2): a packet sent before the most recently delivered one is lost
    /// once a reordering window has passed beyond its expected delivery.
    /// Returns how many packets it newly marked lost.
    pub(super) fn detect_loss(&mut self, now: Instant) -> u32 {
        let Some(rack) = self.rack.latest() else {
            return 0;
        };
        let reo = self.rack.reorder_window(&self.rtt);
        let mut lost = 0u32;
        let mut wake: Option<Instant> = None;
        for i in 0..self.outgoing.len() {
            let seq = self.remote_acked + i as u64;
            let s = &mut self.outgoing[i];
            if s.delivered || s.lost {
                continue;
            }
            if (s.sent_at, seq) > rack {
                if s.transmits == 1 {
                    // First transmissions are in send order: nothing further qualifies.
                    break;
                }
                continue;
            }
            let deadline = s.sent_at + self.rack.rtt() + reo;
            if deadline <= now {
                s.lost = true;
                self.inflight -= 1;
                self.retransmit.push_back(seq);
                self.stats.fast_lost += 1;
                lost += 1;
            } else {
                wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
            }
        }
        self.reorder_at = wake;
        if lost > 0 {
            self.rack.on_loss(self.next_seq);
            // Recovery is under way; RACK and the RTO take it from here.
            self.tlp_at = None;
        }
        lost
    }

    /// (Re)schedules the tail-loss probe (RFC 8985 §7.2): only with data in flight, outside
    /// loss recovery, with no holes already reported (RACK covers those), and never later
    /// than the RTO.
    pub(super) fn arm_tlp(&mut self, now: Instant) {
        let outstanding = self.outgoing.len() - self.sacked;
        if outstanding == 0
            || self.sacked > 0
            || self.rack.in_recovery()
            || self.tlp_end.is_some()
            || !self.retransmit.is_empty()
        {
            self.tlp_at = None;
            return;
        }
        let mut at = now + rack::probe_timeout(self.rtt.srtt(), outstanding == 1);
        if let Some(rto) = self.rto_at {
            at = at.min(rto);
        }
        self.tlp_at = Some(at);
    }

    /// The probe timer fired (RFC 8985 §7.3): send one new packet if there is one, else
    /// resend the highest outstanding one, so that its ACK (or SACK) lets RACK find the
    /// losses at the tail instead of waiting for the RTO.
    pub(super) fn on_tlp(&mut self, now: Instant) {
        self.tlp_at = None;
        if self.sacked == self.outgoing.len() || self.tlp_end.is_some() {
            return;
        }
        let unsent = self.unsent() > 0 || (self.end_queued && !self.end_sent);
        if unsent && self.outgoing.len() < MAX_OUTSTANDING {
            self.tlp_end = Some(self.next_seq);
        } else {
            let i = self.outgoing.len() - 1;
            let s = &mut self.outgoing[i];
            if s.delivered || s.lost {
                return;
            }
            s.lost = true;
            self.inflight -= 1;
            let seq = self.remote_acked + i as u64;
            self.retransmit.push_back(seq);
            self.tlp_end = Some(seq);
        }
        self.probe_due = true;
        self.stats.tlp_probes += 1;
        self.rto_at = Some(now + self.rtt.rto());
    }

    pub(super) fn on_rto(&mut self, now: Instant) {
        self.rto_at = None;
        if self.sacked == self.outgoing.len() {
            return;
        }
        self.stats.rto_expiries += 1;
        self.tlp_at = None;
        self.tlp_end = None;
        let reo = self.rack.reorder_window(&self.rtt);
        for i in 0..self.outgoing.len() {
            let seq = self.remote_acked + i as u64;
            let s = &mut self.outgoing[i];
            if s.delivered || s.lost {
                continue;
            }
            let overdue = s.sent_at + self.rack.rtt() + reo <= now;
            if i == 0 || overdue {
                if s.rto_timeouts >= MAX_RTO_TIMEOUTS {
                    self.close(CloseReason::TimedOut);
                    return;
                }
                s.rto_timeouts += 1;
                s.lost = true;
                self.inflight -= 1;
                self.retransmit.push_back(seq);
            }
        }
        self.rack.on_loss(self.next_seq);
        self.cc.on_rto(self.inflight);
        // libudx re-arms at twice the RTO without doubling the RTO itself.
        self.rto_at = Some(now + self.rtt.rto() * 2);
    }

    pub(super) fn maybe_finish(&mut self) {
        // Our END counts as acknowledged only cumulatively: a SACKed END with data missing
        // below it is not the end of the stream.
        let end_acked = self.end_sent && self.remote_acked == self.next_seq;
        if self.closed.is_none() && end_acked && self.remote_ended {
            self.close(CloseReason::Ended);
        }
    }
}
