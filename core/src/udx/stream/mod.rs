//! One UDX stream as a sans-IO state machine.
//!
//! Sequence numbers count packets and wrap at 32 bits on the wire. Internally both directions
//! use unwrapped 64-bit counters that start at 2^32 + the wire value, so ordering is plain
//! integer comparison; a wire value is mapped to the counter nearest the reference point with
//! a signed 32-bit difference, which is how libudx compares them.
//!
//! This file holds the stream's state and public API; the halves of the machine live in
//! [`send`] (packetizing, windows, pacing, what leaves next), [`receive`] (reassembly, the
//! advertised window, the ACKs we owe) and [`recovery`] (ACK processing, RACK-TLP, RTO).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::bbr::{AckInfo, Bbr, MAX_CWND};
use super::pacer::Pacer;
use super::packet::{
    self, Header, Packet, SackBlock, DATA, DESTROY, END, HEARTBEAT, MAX_SACKS, MESSAGE,
};
use super::rack::{self, Rack};
use super::rate::{Rate, TxState};
use super::rtt::Rtt;

mod receive;
mod recovery;
mod send;

use receive::Pending;
use send::{Control, Sent};

/// Payload bytes per packet at libudx's fixed 1200-byte MTU over IPv4 (1200 − 20 IP − 8 UDP
/// − 20 UDX).
pub const DEFAULT_MAX_PAYLOAD: usize = 1152;
/// The stream fails with [`CloseReason::TimedOut`] when the RTO fires for a packet that has
/// already timed out this many times (libudx's `UDX_MAX_RTO_TIMEOUTS`).
pub const MAX_RTO_TIMEOUTS: u32 = 6;
/// What udx-native advertises, and what we assume the peer offers before it tells us.
const DEFAULT_WINDOW: usize = 4 * 1024 * 1024;
/// Packets ahead of the cumulative ack we are willing to buffer; also the distance libudx
/// scans when building SACKs.
const MAX_OOO_DISTANCE: u64 = 65536;
/// Out-of-order packets held at once, whatever their size (tiny hostile packets would
/// otherwise cost far more bookkeeping than payload).
const MAX_OOO_PACKETS: usize = 16384;
/// Sent-but-unacknowledged packets (including SACKed ones above a hole).
const MAX_OUTSTANDING: usize = 2 * MAX_CWND as usize;
/// Queued unreliable messages and probes.
const MAX_CONTROL: usize = 256;
/// Queued events; messages beyond this are dropped and counted.
const MAX_EVENTS: usize = 1024;
/// Internal counters start here so that mapping a wire value backwards never underflows.
const BASE: u64 = 1 << 32;

/// How a stream is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Receive buffer in bytes; the advertised window is what is free of it.
    pub recv_buffer: usize,
    /// Bytes [`Stream::write`] accepts beyond what is already packetized.
    pub send_buffer: usize,
    /// Payload bytes per DATA packet.
    pub max_payload: usize,
    /// Our first sequence number. Always 0 against libudx; other values exist to test
    /// wrap-around.
    pub initial_seq: u32,
    /// The peer's first sequence number (0 against libudx).
    pub initial_remote_seq: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            recv_buffer: DEFAULT_WINDOW,
            send_buffer: 1024 * 1024,
            max_payload: DEFAULT_MAX_PAYLOAD,
            initial_seq: 0,
            initial_remote_seq: 0,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: SocketAddr,
    /// The whole UDX packet.
    pub payload: Vec<u8>,
}

/// Why a stream closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides ended and every END was acknowledged.
    Ended,
    /// [`Stream::destroy`] was called.
    Destroyed,
    /// The peer sent DESTROY (libudx's ECONNRESET).
    Reset,
    /// A packet went unacknowledged through [`MAX_RTO_TIMEOUTS`] retransmission timeouts
    /// (ETIMEDOUT).
    TimedOut,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The receive buffer went from empty to non-empty; call [`Stream::read`].
    Readable,
    /// The send buffer drained after a short write; [`Stream::write`] accepts more.
    Writable,
    /// An unreliable MESSAGE arrived.
    Message(Vec<u8>),
    /// The peer's END was delivered: after the buffered bytes, the read side is finished.
    RemoteEnded,
    /// The stream is closed; see [`Stream::is_closed`] for what is still answered.
    Closed(CloseReason),
}

/// Why [`Stream::send_message`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Larger than one packet's payload.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// Too many messages are waiting to be sent.
    #[error("message queue full")]
    QueueFull,
    /// The stream is closed.
    #[error("stream closed")]
    Closed,
}

/// Counters, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to [`Stream::handle_datagram`].
    pub packets_rx: u64,
    /// Datagrams returned by [`Stream::poll_transmit`].
    pub packets_tx: u64,
    /// DATA/END packets sent again.
    pub retransmits: u64,
    /// Packets declared lost by RACK reordering detection (fast retransmit).
    pub fast_lost: u64,
    /// Retransmission timer expiries.
    pub rto_expiries: u64,
    /// Datagrams or payloads dropped: undecodable, wrong id, over a buffer bound, beyond the
    /// peer's END, or messages when the event queue was full.
    pub dropped: u64,
    /// DATA/END packets that were already received.
    pub duplicates: u64,
    /// SACK blocks that failed validation.
    pub invalid_sacks: u64,
    /// Loss marks shown wrong: the packet was acknowledged before its retransmission left, or
    /// so soon after that the acknowledgement must have been for the original. Each one
    /// widens RACK's reordering window (at most once per round trip).
    pub spurious: u64,
    /// Tail-loss probes sent (RFC 8985 §7).
    pub tlp_probes: u64,
}

/// One UDX stream. See the [module](super) documentation for how to drive it.
#[derive(Debug)]
pub struct Stream {
    config: Config,
    local_id: u32,
    remote: Option<(u32, SocketAddr)>,
    closed: Option<CloseReason>,
    stats: Stats,
    events: VecDeque<Event>,
    control: VecDeque<Control>,
    /// Something arrived that the peer must hear about (DATA, END, HEARTBEAT, a window that
    /// reopened). One pure ACK answers everything received since the last one; a DATA/END
    /// packet leaving first carries the same cumulative ack and settles it.
    ack_owed: bool,

    // Send side.
    /// Written bytes from the payload of the oldest unacknowledged packet on. Packets in
    /// flight are ranges of it, so a packet's payload is copied once, straight into the
    /// outgoing datagram, and a retransmission is rebuilt from the same bytes.
    send_buf: VecDeque<u8>,
    /// Stream offset of `send_buf[0]`.
    send_base: u64,
    /// Stream offset of the first byte not yet packetized.
    send_next: u64,
    write_blocked: bool,
    end_queued: bool,
    end_sent: bool,
    next_seq: u64,
    remote_acked: u64,
    /// Entry i is seq `remote_acked + i`.
    outgoing: VecDeque<Sent>,
    retransmit: VecDeque<u64>,
    inflight: u32,
    send_rwnd: u32,
    send_wl1: u32,
    send_wl2: u32,
    rtt: Rtt,
    cc: Bbr,
    pacer: Pacer,
    rate: Rate,
    /// RTT of the newest trustworthy delivery in the ACK being processed.
    ack_rtt: Option<Duration>,
    rack: Rack,
    /// Entries of `outgoing` acknowledged by SACK.
    sacked: usize,
    rto_at: Option<Instant>,
    reorder_at: Option<Instant>,
    probe_at: Option<Instant>,
    /// Tail-loss probe timer.
    tlp_at: Option<Instant>,
    /// While a probe is unanswered, its seq: no second probe until it is cumulatively acked.
    tlp_end: Option<u64>,
    /// The next data packet is a probe and may ignore the congestion window and pacing.
    probe_due: bool,

    // Receive side.
    ack: u64,
    recv_buf: VecDeque<u8>,
    ooo: BTreeMap<u64, Pending>,
    ooo_bytes: usize,
    remote_end: Option<u64>,
    remote_ended: bool,
    last_window: u32,
}

/// Signed distance from `reference` to the wire value, libudx's `seq_diff`.
fn diff(reference: u64, wire: u32) -> i64 {
    wire.wrapping_sub(reference as u32) as i32 as i64
}

/// The unwrapped counter nearest `reference` with these low 32 bits.
fn unwrap(reference: u64, wire: u32) -> u64 {
    (reference as i64 + diff(reference, wire)) as u64
}

impl Stream {
    /// A stream with local id `local_id`, not yet connected: packets it receives are processed,
    /// and answered once [`Stream::connect`] names the peer.
    pub fn new(local_id: u32, config: Config) -> Self {
        let next_seq = BASE + config.initial_seq as u64;
        let ack = BASE + config.initial_remote_seq as u64;
        Stream {
            local_id,
            remote: None,
            closed: None,
            stats: Stats::default(),
            events: VecDeque::new(),
            control: VecDeque::new(),
            ack_owed: false,
            send_buf: VecDeque::new(),
            send_base: 0,
            send_next: 0,
            write_blocked: false,
            end_queued: false,
            end_sent: false,
            next_seq,
            remote_acked: next_seq,
            outgoing: VecDeque::new(),
            retransmit: VecDeque::new(),
            inflight: 0,
            send_rwnd: DEFAULT_WINDOW as u32,
            send_wl1: config.initial_remote_seq,
            send_wl2: config.initial_seq,
            rtt: Rtt::new(),
            cc: Bbr::new(config.max_payload),
            pacer: Pacer::default(),
            rate: Rate::new(),
            ack_rtt: None,
            rack: Rack::new(),
            sacked: 0,
            rto_at: None,
            reorder_at: None,
            probe_at: None,
            tlp_at: None,
            tlp_end: None,
            probe_due: false,
            ack,
            recv_buf: VecDeque::new(),
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            remote_end: None,
            remote_ended: false,
            last_window: 0,
            config,
        }
    }

    /// Names the peer: its stream id (what goes at offset 4) and address. Calling it again
    /// moves the stream; packets already in flight are not re-addressed.
    pub fn connect(&mut self, remote_id: u32, remote_addr: SocketAddr) {
        self.remote = Some((remote_id, remote_addr));
    }

    /// A one-line summary of the flow-control state (windows, queues, timers), for
    /// diagnosing a transfer that stopped.
    pub fn diagnostics(&self) -> String {
        format!(
            "send_buf={} unsent={} outgoing={} inflight={} retransmit={} peer_rwnd={} cwnd={} \
             write_blocked={} end_queued={} end_sent={} rto_at={} probe_at={} tlp_at={} \
             probe_due={} | recv_buf={} ooo={} ooo_bytes={} last_window={} ack_owed={} \
             remote_end={:?} closed={:?} | {:?}",
            self.send_buf.len(),
            self.send_buf.len() as u64 - (self.send_next - self.send_base),
            self.outgoing.len(),
            self.inflight,
            self.retransmit.len(),
            self.send_rwnd,
            self.cc.cwnd(),
            self.write_blocked,
            self.end_queued,
            self.end_sent,
            self.rto_at.is_some(),
            self.probe_at.is_some(),
            self.tlp_at.is_some(),
            self.probe_due,
            self.recv_buf.len(),
            self.ooo.len(),
            self.ooo_bytes,
            self.last_window,
            self.ack_owed,
            self.remote_end,
            self.closed,
            self.stats,
        )
    }

    /// Our stream id: the one the peer writes at offset 4.
    pub fn local_id(&self) -> u32 {
        self.local_id
    }

    /// The peer's stream id, once connected.
    pub fn remote_id(&self) -> Option<u32> {
        self.remote.map(|r| r.0)
    }

    /// The peer's address, once connected.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote.map(|r| r.1)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Why the stream closed, if it has. A stream closed by [`CloseReason::Ended`] still
    /// acknowledges retransmitted DATA/END (in case our last ACK was lost); the driver decides
    /// how long to keep it around for that.
    pub fn is_closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Current congestion window, in packets.
    pub fn cwnd(&self) -> u32 {
        self.cc.cwnd()
    }

    /// BBR's bottleneck-bandwidth estimate, in payload bytes per second (0 before samples).
    pub fn bandwidth(&self) -> u64 {
        self.cc.bandwidth() as u64
    }

    /// Smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Bytes waiting to be packetized.
    pub fn send_buffered(&self) -> usize {
        self.unsent()
    }

    /// Bytes received in order and not yet read.
    pub fn recv_buffered(&self) -> usize {
        self.recv_buf.len()
    }

    /// Bytes held in out-of-order packets.
    pub fn out_of_order_bytes(&self) -> usize {
        self.ooo_bytes
    }

    /// Packets sent and not yet cumulatively acknowledged.
    pub fn outstanding(&self) -> usize {
        self.outgoing.len()
    }

    /// True once [`Stream::end`] was called: no more writes are accepted.
    pub fn is_write_ended(&self) -> bool {
        self.end_queued
    }

    /// True once the peer's END was delivered and every byte before it was read.
    pub fn is_read_finished(&self) -> bool {
        self.remote_ended && self.recv_buf.is_empty()
    }

    /// Queues bytes for sending; returns how many were accepted (fewer than offered when the
    /// send buffer is full: wait for [`Event::Writable`]). Nothing is accepted after
    /// [`Stream::end`] or close.
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.end_queued || self.closed.is_some() {
            return 0;
        }
        let room = self.config.send_buffer.saturating_sub(self.unsent());
        let n = room.min(data.len());
        self.send_buf.extend(&data[..n]);
        if n < data.len() {
            self.write_blocked = true;
        }
        n
    }

    /// Whether [`Stream::write`] would take at least one byte now. When it would not, the
    /// writer is owed a [`Event::Writable`] once the buffer drains, as after a short write.
    pub fn has_room(&mut self) -> bool {
        let room =
            !self.end_queued && self.closed.is_none() && self.unsent() < self.config.send_buffer;
        if !room {
            self.write_blocked = true;
        }
        room
    }

    /// Queues all of `data`, past the send buffer's bound if need be, and says whether it
    /// could (false once ended or closed). For framed writers that check [`Stream::has_room`]
    /// first: a frame whose cipher state has advanced must go out whole, and the bound is
    /// exceeded by less than one frame.
    pub fn write_whole(&mut self, data: &[u8]) -> bool {
        if self.end_queued || self.closed.is_some() {
            return false;
        }
        self.send_buf.extend(data);
        true
    }

    /// Ends our write side once everything written has been sent: an END packet follows the
    /// data, reliably.
    pub fn end(&mut self) {
        if self.closed.is_none() {
            self.end_queued = true;
        }
    }

    /// Aborts the stream: a single DESTROY packet (if connected), then closed.
    pub fn destroy(&mut self) {
        if self.closed.is_some() {
            return;
        }
        self.control.clear();
        self.ack_owed = false;
        if let Some((remote_id, _)) = self.remote {
            let h = self.header(remote_id, DESTROY);
            self.control
                .push_back(Control::Raw(packet::encode(&h, &[], &[])));
        }
        self.close(CloseReason::Destroyed);
    }

    /// Sends one unreliable MESSAGE (never retransmitted).
    pub fn send_message(&mut self, data: &[u8]) -> Result<(), MessageError> {
        if self.closed.is_some() {
            return Err(MessageError::Closed);
        }
        if data.len() > self.config.max_payload {
            return Err(MessageError::TooLarge(self.config.max_payload));
        }
        if self.control.len() >= MAX_CONTROL {
            return Err(MessageError::QueueFull);
        }
        self.control.push_back(Control::Message(data.to_vec()));
        Ok(())
    }

    /// Sends a HEARTBEAT; the peer answers with an ACK.
    pub fn heartbeat(&mut self) {
        if self.closed.is_none() && self.control.len() < MAX_CONTROL {
            self.control.push_back(Control::Heartbeat);
        }
    }

    /// Copies in-order received bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.recv_buf.len());
        let (a, b) = self.recv_buf.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.recv_buf.drain(..n);
        // A window we advertised as less than half the buffer is updated with a pure ACK as
        // soon as half is free again. Waiting for the sender instead can stall: libudx only
        // probes a window of exactly zero, and one smaller than a packet blocks it as well.
        let half = self.config.recv_buffer / 2;
        if n > 0
            && (self.last_window as usize) < half
            && self.window() as usize >= half
            && self.closed.is_none()
        {
            self.owe_ack();
        }
        n
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Stream::handle_timeout`] should next run (or a paced packet becomes sendable).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let mut t = [self.rto_at, self.reorder_at, self.probe_at, self.tlp_at]
            .into_iter()
            .flatten()
            .min();
        if let Some(pace) = self.pacer.next() {
            if self.data_ready() {
                t = Some(t.map_or(pace, |x| x.min(pace)));
            }
        }
        t
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.on_rto(now);
            if self.closed.is_some() {
                return;
            }
        }
        if self.reorder_at.is_some_and(|t| t <= now) {
            self.reorder_at = None;
            self.detect_loss(now);
        }
        if self.tlp_at.is_some_and(|t| t <= now) {
            self.on_tlp(now);
        }
        if self.probe_at.is_some_and(|t| t <= now) {
            // Zero-window probe: keep asking until the window opens.
            self.heartbeat();
            self.probe_at = Some(now + self.rtt.rto() * 2);
        }
    }

    /// The next datagram to send, if any is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let mut payload = Vec::new();
        let dest = self.poll_transmit_into(now, &mut payload)?;
        Some(Transmit { dest, payload })
    }

    /// [`Stream::poll_transmit`], appending the datagram to `out` instead of allocating one;
    /// returns its destination. A driver batching sends (GSO, `sendmmsg`) fills one buffer
    /// this way. Nothing is appended when it returns `None`.
    pub fn poll_transmit_into(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        let (remote_id, dest) = self.remote?;
        if !self.next_packet(now, remote_id, out) {
            return None;
        }
        self.stats.packets_tx += 1;
        Some(dest)
    }

    /// Processes one datagram addressed to this stream (the driver has already checked
    /// [`packet::is_udx`], routed by id and applied its firewall). Bad input is counted in
    /// [`Stats::dropped`], never fatal.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.stats.packets_rx += 1;
        let packet = match Packet::decode(bytes) {
            Ok(p) if p.header.stream_id == self.local_id => p,
            _ => {
                self.stats.dropped += 1;
                return;
            }
        };
        match self.closed {
            None | Some(CloseReason::Ended) => {}
            Some(_) => {
                self.stats.dropped += 1;
                return;
            }
        }
        let h = packet.header;
        if h.has(HEARTBEAT) {
            self.owe_ack();
            return;
        }

        if diff(self.ack, h.seq) >= 0 {
            let seq = unwrap(self.ack, h.seq);
            if h.has(DATA | END) {
                if self.closed.is_some() {
                    self.stats.duplicates += 1;
                } else {
                    self.receive(seq, h.flags, packet.payload);
                }
            }
            if h.has(DESTROY) && self.closed.is_none() {
                self.close(CloseReason::Reset);
                return;
            }
        } else if h.has(DATA | END) {
            self.stats.duplicates += 1;
        }

        if h.has(MESSAGE) && self.closed.is_none() {
            if self.events.len() < MAX_EVENTS {
                self.events
                    .push_back(Event::Message(packet.payload.to_vec()));
            } else {
                self.stats.dropped += 1;
            }
        }

        self.drain_in_order();

        if h.has(DATA | END) {
            self.owe_ack();
        }
        if self.closed.is_some() {
            return;
        }

        self.process_ack(now, &packet);
        self.maybe_finish();
    }

    fn close(&mut self, reason: CloseReason) {
        self.closed = Some(reason);
        self.rto_at = None;
        self.reorder_at = None;
        self.probe_at = None;
        self.tlp_at = None;
        self.probe_due = false;
        self.outgoing.clear();
        self.sacked = 0;
        self.retransmit.clear();
        self.send_buf.clear();
        self.send_base = self.send_next;
        self.ooo.clear();
        self.ooo_bytes = 0;
        self.inflight = 0;
        if reason != CloseReason::Ended {
            self.recv_buf.clear();
        }
        self.push_event(Event::Closed(reason));
    }

    fn push_event(&mut self, e: Event) {
        // State events are rare and edge-triggered; only messages can flood, and they are
        // bounded where they are queued. Keep state events even past the cap.
        self.events.push_back(e);
    }
}
