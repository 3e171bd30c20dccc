//! The send side: packetizing written bytes, the windows and pacer that gate each packet,
//! control packets (messages, heartbeats), and the choice of what leaves next.

use super::*;

/// A packet we sent that is not yet cumulatively acknowledged.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) flags: u8,
    /// Stream offset of the payload in the send buffer.
    pub(super) start: u64,
    /// Payload bytes (0 for END).
    pub(super) len: usize,
    pub(super) sent_at: Instant,
    pub(super) transmits: u32,
    pub(super) rto_timeouts: u32,
    /// Acknowledged by a SACK block (cumulative acks remove the entry).
    pub(super) delivered: bool,
    /// Delivery-rate state at the latest transmission.
    pub(super) tx: TxState,
    /// Waiting in the retransmit queue, so not counted in flight.
    pub(super) lost: bool,
}

/// Packets other than data and pure ACKs, in the order they were asked for.
#[derive(Debug)]
pub(super) enum Control {
    Message(Vec<u8>),
    Heartbeat,
    /// Built when asked for: the stream is dead afterwards, so its state is final.
    Raw(Vec<u8>),
}

impl Stream {
    pub(super) fn header(&mut self, remote_id: u32, flags: u8) -> Header {
        let window = self.window();
        self.last_window = window;
        Header {
            flags,
            data_offset: 0,
            stream_id: remote_id,
            recv_window: window,
            seq: self.next_seq as u32,
            ack: self.ack as u32,
        }
    }

    /// Packets the peer's window allows in flight (retransmissions ignore it).
    pub(super) fn send_window(&self) -> u32 {
        let rwnd = self.send_rwnd as usize / self.config.max_payload.max(1);
        self.cc.cwnd().min(rwnd.min(u32::MAX as usize) as u32)
    }

    /// Whether a new (never sent) packet may leave. Besides the windows on packets in flight,
    /// the whole span from the cumulative ack to the new packet must fit the peer's window:
    /// SACKed and lost packets still occupy its buffer (or will, once resent), and a receiver
    /// drops what does not fit.
    pub(super) fn new_data_allowed(&self) -> bool {
        let rwnd = self.send_rwnd as usize / self.config.max_payload.max(1);
        self.inflight < self.send_window() && self.outgoing.len() < rwnd.min(MAX_OUTSTANDING)
    }

    pub(super) fn data_ready(&self) -> bool {
        if self.inflight >= self.cc.cwnd() {
            return false;
        }
        if !self.retransmit.is_empty() {
            return true;
        }
        let unsent = self.unsent() > 0 || (self.end_queued && !self.end_sent);
        unsent && self.new_data_allowed()
    }

    /// Appends the next due datagram to `out`; false when nothing is due.
    pub(super) fn next_packet(&mut self, now: Instant, remote_id: u32, out: &mut Vec<u8>) -> bool {
        if self.closed.is_none() {
            self.update_probe(now);
        }
        if let Some(c) = self.control.pop_front() {
            match c {
                Control::Raw(b) => out.extend_from_slice(&b),
                Control::Heartbeat => {
                    let h = self.header(remote_id, HEARTBEAT);
                    packet::encode_into(&h, &[], &[], out);
                }
                Control::Message(m) => {
                    let h = self.header(remote_id, MESSAGE);
                    packet::encode_into(&h, &[], &m, out);
                }
            }
            return true;
        }
        if self.closed.is_none() && self.next_data(now, remote_id, out) {
            // The data packet carries our cumulative ack; only SACK blocks need a pure ACK.
            if self.ooo.is_empty() {
                self.ack_owed = false;
            }
            return true;
        }
        if std::mem::take(&mut self.ack_owed) {
            let sacks = self.sack_blocks();
            let h = self.header(remote_id, 0);
            packet::encode_into(&h, &sacks, &[], out);
            return true;
        }
        false
    }

    /// Appends a retransmission or a new DATA/END packet when the windows and the pacer let
    /// one leave now.
    pub(super) fn next_data(&mut self, now: Instant, remote_id: u32, out: &mut Vec<u8>) -> bool {
        // A tail-loss probe goes out whatever the window and pacer say.
        let probe = std::mem::take(&mut self.probe_due);
        if !probe && (self.pacer.next().is_some_and(|t| t > now) || !self.data_ready()) {
            return false;
        }
        while let Some(seq) = self.retransmit.pop_front() {
            if seq < self.remote_acked {
                continue;
            }
            let i = (seq - self.remote_acked) as usize;
            let Some(s) = self.outgoing.get(i) else {
                continue;
            };
            if s.delivered || !s.lost {
                continue;
            }
            let (flags, start, len) = (s.flags, s.start, s.len);
            let tx = self.rate.on_send(now, self.inflight == 0);
            let s = &mut self.outgoing[i];
            s.lost = false;
            s.transmits += 1;
            s.sent_at = now;
            s.tx = tx;
            // Retransmissions carry the current ack and window (libudx a9af5de).
            let mut h = self.header(remote_id, flags);
            h.seq = seq as u32;
            h.encode_into(out);
            self.append_payload(start, len, out);
            let wire = packet::HEADER_LEN + len;
            self.inflight += 1;
            self.stats.retransmits += 1;
            self.sent_data(now, wire);
            return true;
        }
        if !probe && !self.new_data_allowed() || self.outgoing.len() >= MAX_OUTSTANDING {
            return false;
        }
        let flags = if self.unsent() > 0 {
            DATA
        } else if self.end_queued && !self.end_sent {
            self.end_sent = true;
            END
        } else {
            if self.inflight < self.cc.cwnd() && self.retransmit.is_empty() {
                // Nothing to send and room to send it: bandwidth samples taken now say
                // more about the application than about the path.
                self.rate.on_app_limited(self.inflight);
            }
            return false;
        };
        if self.inflight == 0 {
            self.cc.on_transmit_start(now, self.rate.is_app_limited());
        }
        let tx = self.rate.on_send(now, self.inflight == 0);
        let h = self.header(remote_id, flags);
        let (start, len) = if flags == DATA {
            (self.send_next, self.unsent().min(self.config.max_payload))
        } else {
            (self.send_next, 0)
        };
        h.encode_into(out);
        self.append_payload(start, len, out);
        self.send_next += len as u64;
        if len > 0 && self.write_blocked && self.unsent() <= self.config.send_buffer / 2 {
            self.write_blocked = false;
            self.push_event(Event::Writable);
        }
        self.sent_data(now, packet::HEADER_LEN + len);
        self.outgoing.push_back(Sent {
            tx,
            flags,
            start,
            len,
            sent_at: now,
            transmits: 1,
            rto_timeouts: 0,
            delivered: false,
            lost: false,
        });
        self.next_seq += 1;
        self.inflight += 1;
        if !probe {
            self.arm_tlp(now);
        }
        true
    }

    /// Written bytes not yet packetized.
    pub(super) fn unsent(&self) -> usize {
        (self.send_base + self.send_buf.len() as u64 - self.send_next) as usize
    }

    /// Copies `len` payload bytes at stream offset `start` from the send buffer to `out`.
    pub(super) fn append_payload(&self, start: u64, len: usize, out: &mut Vec<u8>) {
        let at = (start - self.send_base) as usize;
        let (a, b) = self.send_buf.as_slices();
        let end = at + len;
        if at < a.len() {
            out.extend_from_slice(&a[at..end.min(a.len())]);
        }
        if end > a.len() {
            out.extend_from_slice(&b[at.saturating_sub(a.len())..end - a.len()]);
        }
    }

    /// A packet left the window for good: its payload leaves the send buffer.
    pub(super) fn release(&mut self, s: &Sent) {
        let end = s.start + s.len as u64;
        let n = (end.saturating_sub(self.send_base) as usize).min(self.send_buf.len());
        self.send_buf.drain(..n);
        self.send_base += n as u64;
    }

    /// Bookkeeping shared by first transmissions and retransmissions of `wire` bytes.
    pub(super) fn sent_data(&mut self, now: Instant, wire: usize) {
        // Pace by what goes on the wire, header included.
        self.pacer.on_sent(now, wire, self.cc.pacing_rate());
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
        self.probe_at = None;
    }

    /// Window probing: data waits, nothing is in flight (so no ACK is coming) and the peer's
    /// window lets no new packet out. Not only a zero window: one smaller than a packet, or
    /// one the buffered span already fills, blocks us just the same, and only the peer's
    /// answer to a probe tells us it opened.
    pub(super) fn update_probe(&mut self, now: Instant) {
        let waiting = self.unsent() > 0 || (self.end_queued && !self.end_sent);
        let blocked = self.send_window() == 0 || !self.new_data_allowed();
        let shut = blocked && self.outgoing.is_empty() && waiting;
        if !shut {
            self.probe_at = None;
        } else if self.probe_at.is_none() {
            self.heartbeat();
            self.probe_at = Some(now + self.rtt.rto());
        }
    }
}
