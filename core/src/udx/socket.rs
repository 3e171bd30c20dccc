//! Tokio driver: a UDX instance ([`Udx`]) with any number of UDP sockets carrying its streams.
//!
//! As in libudx, the stream table belongs to the instance, not to a socket: a stream packet is
//! accepted on any socket of the instance, which is how an unconnected stream learns where its
//! peer is (a holepunched socket, a relay, the DHT socket) and how a live stream moves from
//! one path to another. Each socket has one task that owns its receive loop and services the
//! streams bound to it; application handles ([`UdxStream`]) only touch the state machine
//! under the instance's lock and poke the task of the stream's socket.
//!
//! Datagrams that are not for a live stream (dht-rpc messages, 1-byte holepunch probes, UDX
//! packets for an unknown id) go to the socket's bounded "unrouted" channel, so dht-rpc and
//! the holepuncher can share the socket.
//!
//! Each wake-up services every stream bound to the socket. Hyperswarm keeps tens of
//! connections per node, so a scan is cheaper than the bookkeeping a timer wheel would need;
//! revisit if instances ever carry thousands of streams.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

use super::batch::{self, RecvBatch, SendBatch};
use super::packet;
use super::stream::{CloseReason, Config, Event, MessageError, Stream};

/// Datagrams read per wake-up before the streams are serviced, so ACKs are acted on promptly
/// and a stream owes at most one ACK per this many packets. One `recvmmsg` may overshoot it
/// by what fits its buffers (see [`batch`]).
const RECV_BATCH: usize = 256;
/// Datagrams one stream may send per wake-up, so one busy stream cannot starve the receive
/// side (the task comes straight back when a stream still had more).
const SEND_BATCH: usize = 64;
/// How long the task sleeps when no stream has a timer (it is woken earlier by any event).
const IDLE: Duration = Duration::from_secs(3600);
/// Packets a relay holds for a peer whose path is not known yet.
const HELD: usize = 16;
/// Unreliable messages held for a reader that is not reading; newer ones are dropped.
const MAX_MESSAGES: usize = 256;

/// A datagram that was not for a live stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddr,
    /// The whole datagram.
    pub payload: Vec<u8>,
}

/// One stream as the instance sees it.
struct Slot {
    stream: Stream,
    /// The socket the stream sends on; `None` until connected or accepted.
    socket: Option<UdxSocket>,
    /// When set, the first packet from anywhere connects the stream to its source, with this
    /// remote id (libudx's firewall hook accepting the packet).
    accept: Option<u32>,
    /// Packets from here never connect the stream by `accept`/`first_seen` (a blind
    /// relay's address: its packets are for the relayed path, which is connected
    /// explicitly once the pairing answers).
    accept_except: Option<SocketAddr>,
    /// For a stream on a relayed path: the first packet that comes from anywhere but the
    /// current remote and the relay moves the stream there, with this remote id (the peer
    /// found a direct path; hyperdht's upgrade from a blind relay).
    follow: Option<(u32, SocketAddr)>,
    /// Where the first packet of a stream without a socket and without `accept` came from,
    /// so a later [`UdxStream::accept_first`] can connect there at once.
    first_seen: Option<(UdxSocket, SocketAddr)>,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// A relaying stream (blind relay): its packets are not processed but forwarded as they
    /// are to this stream of the instance, under that stream's remote id.
    relay_to: Option<u32>,
    /// Relayed packets for this stream's peer that came before the peer's first packet
    /// gave the stream a path (at most [`HELD`]); sent on as soon as it has one, so the
    /// first side's opening packets do not wait for a retransmission timeout.
    held: Vec<Vec<u8>>,
    /// Woken when the stream gets a socket or closes.
    watchers: Vec<Waker>,
    messages: VecDeque<Vec<u8>>,
    message_reader: Option<Waker>,
    /// False once the [`UdxStream`] is dropped: the slot goes when the stream has closed and
    /// sent its last packet.
    attached: bool,
}

impl Slot {
    fn wake_all(&mut self) {
        wake(&mut self.reader);
        wake(&mut self.writer);
        wake(&mut self.message_reader);
        for w in self.watchers.drain(..) {
            w.wake();
        }
    }

    fn poke(&self) {
        if let Some(s) = &self.socket {
            s.inner.wake.notify_one();
        }
    }
}

#[derive(Default)]
struct State {
    streams: HashMap<u32, Slot>,
    /// Datagrams dropped because an unrouted channel was full or closed.
    unrouted_dropped: u64,
    /// Unreliable messages dropped because the reader fell behind.
    messages_dropped: u64,
}

struct Instance {
    state: Mutex<State>,
}

impl Instance {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a state machine mid-update; nothing sensible
        // can continue from that, so propagate it.
        self.state.lock().expect("udx state poisoned")
    }
}

/// A UDX instance: the stream table shared by all of its sockets. Cloning gives another
/// handle to the same instance.
#[derive(Clone)]
pub struct Udx {
    inner: Arc<Instance>,
}

impl Default for Udx {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Udx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udx")
            .field("streams", &self.inner.lock().streams.len())
            .finish()
    }
}

impl Udx {
    /// An instance with no sockets and no streams.
    pub fn new() -> Self {
        Udx {
            inner: Arc::new(Instance {
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Binds `addr` as a socket of this instance and starts its task. Datagrams not for a
    /// live stream are offered to `unrouted` (and dropped, counted, if it is full).
    pub async fn bind(
        &self,
        addr: SocketAddr,
        unrouted: mpsc::Sender<Datagram>,
    ) -> io::Result<UdxSocket> {
        let udp = UdpSocket::bind(addr).await?;
        self.start(udp, unrouted)
    }

    /// [`Udx::bind`] without waiting, for callers that cannot await (a request handler
    /// opening a holepunch socket). Must run inside a tokio runtime.
    pub fn bind_now(
        &self,
        addr: SocketAddr,
        unrouted: mpsc::Sender<Datagram>,
    ) -> io::Result<UdxSocket> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        self.start(UdpSocket::from_std(std)?, unrouted)
    }

    fn start(&self, udp: UdpSocket, unrouted: mpsc::Sender<Datagram>) -> io::Result<UdxSocket> {
        let udp = Arc::new(udp);
        let local_addr = udp.local_addr()?;
        static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(SocketInner {
            id,
            udp: udp.clone(),
            local_addr,
            wake: Notify::new(),
            task: OnceLock::new(),
        });
        // Spawned only once the handle exists: the task upgrades its weak reference on every
        // turn and ends when that fails.
        let task = tokio::spawn(run(
            self.inner.clone(),
            Arc::downgrade(&inner),
            id,
            udp,
            unrouted,
        ));
        let _ = inner.task.set(task.abort_handle());
        Ok(UdxSocket {
            udx: self.clone(),
            inner,
        })
    }

    /// A new stream with a random unused local id, not yet connected. Packets for it are
    /// processed on any socket of the instance; see [`UdxStream::accept_first`] and
    /// [`UdxStream::connect`].
    pub fn create_stream(&self, config: Config) -> UdxStream {
        let mut state = self.inner.lock();
        let id = loop {
            let id: u32 = rand::random();
            if !state.streams.contains_key(&id) {
                break id;
            }
        };
        state.streams.insert(id, Slot::new(Stream::new(id, config)));
        UdxStream {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Live (not yet removed) streams.
    pub fn stream_count(&self) -> usize {
        self.inner.lock().streams.len()
    }

    /// Datagrams dropped because an unrouted channel was full or closed.
    pub fn unrouted_dropped(&self) -> u64 {
        self.inner.lock().unrouted_dropped
    }

    /// Unreliable messages dropped because nobody read them in time.
    pub fn messages_dropped(&self) -> u64 {
        self.inner.lock().messages_dropped
    }
}

impl Slot {
    fn new(stream: Stream) -> Self {
        Slot {
            stream,
            socket: None,
            accept: None,
            accept_except: None,
            follow: None,
            first_seen: None,
            relay_to: None,
            held: Vec::new(),
            reader: None,
            writer: None,
            watchers: Vec::new(),
            messages: VecDeque::new(),
            message_reader: None,
            attached: true,
        }
    }
}

struct SocketInner {
    id: u64,
    udp: Arc<UdpSocket>,
    local_addr: SocketAddr,
    /// Pokes the task after an application call that may have made something sendable.
    wake: Notify,
    task: OnceLock<AbortHandle>,
}

impl Drop for SocketInner {
    fn drop(&mut self) {
        if let Some(t) = self.task.get() {
            t.abort();
        }
    }
}

/// A UDP socket of a [`Udx`] instance. Cloning gives another handle; the socket closes when
/// the last handle is dropped and no stream is connected through it.
#[derive(Clone)]
pub struct UdxSocket {
    udx: Udx,
    inner: Arc<SocketInner>,
}

impl std::fmt::Debug for UdxSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdxSocket")
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

impl PartialEq for UdxSocket {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for UdxSocket {}

impl UdxSocket {
    /// Binds `addr` as the only socket of a new instance (see [`Udx::bind`]).
    pub async fn bind(addr: SocketAddr, unrouted: mpsc::Sender<Datagram>) -> io::Result<Self> {
        Udx::new().bind(addr, unrouted).await
    }

    /// The instance this socket belongs to.
    pub fn udx(&self) -> &Udx {
        &self.udx
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Sends a raw datagram on the socket (dht-rpc messages, holepunch probes).
    pub async fn send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.inner.udp.send_to(payload, to).await
    }

    /// Sends a raw datagram if the socket can take it now (handlers that cannot await);
    /// a full socket buffer drops it, like any lost datagram.
    pub fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // Straight to the kernel, not through tokio's readiness: a socket bound a moment
        // ago has no writable event from the reactor yet, and tokio's `try_send_to` would
        // drop this datagram (a server's first reply from a fresh punch socket, lost one
        // time in two, cost its client a one-second resend).
        let fd = self.inner.udp.as_raw_fd();
        // SAFETY: `fd` stays open for the whole call (we hold the socket), and ManuallyDrop
        // keeps this borrowed view from closing it.
        let udp = std::mem::ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(fd) });
        udp.send_to(payload, to)
    }

    /// Sends a raw datagram with a one-off IP TTL (holepunching opens the local NAT mapping
    /// with packets that die before reaching the peer's NAT).
    pub async fn send_with_ttl(&self, payload: &[u8], to: SocketAddr, ttl: u32) -> io::Result<()> {
        let udp = &self.inner.udp;
        let old = udp.ttl()?;
        udp.set_ttl(ttl)?;
        let sent = udp.send_to(payload, to).await;
        udp.set_ttl(old)?;
        sent.map(|_| ())
    }

    /// Datagrams dropped because an unrouted channel was full or closed (instance-wide).
    pub fn unrouted_dropped(&self) -> u64 {
        self.udx.unrouted_dropped()
    }

    /// Opens a stream with local id `local_id` to the peer's stream `remote_id` at `remote`,
    /// through this socket. Fails with `AddrInUse` if `local_id` is taken in the instance.
    pub fn connect(
        &self,
        local_id: u32,
        remote_id: u32,
        remote: SocketAddr,
        config: Config,
    ) -> io::Result<UdxStream> {
        let mut state = self.udx.inner.lock();
        if state.streams.contains_key(&local_id) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "stream id in use on this instance",
            ));
        }
        let mut slot = Slot::new(Stream::new(local_id, config));
        slot.stream.connect(remote_id, remote);
        slot.socket = Some(self.clone());
        state.streams.insert(local_id, slot);
        drop(state);
        self.inner.wake.notify_one();
        Ok(UdxStream {
            inner: self.udx.inner.clone(),
            id: local_id,
        })
    }
}

/// A socket's task.
async fn run(
    inst: Arc<Instance>,
    me: Weak<SocketInner>,
    my_id: u64,
    udp: Arc<UdpSocket>,
    unrouted: mpsc::Sender<Datagram>,
) {
    let mut caps = batch::setup(&*udp);
    let mut rx = RecvBatch::new();
    let mut tx = SendBatch::default();
    let mut busy = false;
    loop {
        if !busy {
            let deadline = next_deadline(&inst, my_id);
            let Some(sock) = me.upgrade() else { return };
            tokio::select! {
                // Readiness only; the reads below find out what there is.
                _ = udp.readable() => {}
                _ = sock.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
        let now = Instant::now();
        // Dropped outside the lock: releasing the last handle of a socket aborts its task.
        let mut released: Vec<UdxSocket> = Vec::new();
        {
            let mut state = inst.lock();
            let here = Me {
                inst: &inst,
                socket: &me,
                id: my_id,
                unrouted: &unrouted,
            };
            let mut received = 0;
            while received < RECV_BATCH {
                // try_io skips the call when tokio has not seen the socket readable, and
                // clears readiness on WouldBlock. Other errors are ICMP reports (port
                // unreachable) on some platforms; a stream's own timers find those out.
                let r = udp.try_io(Interest::READABLE, || {
                    batch::recv_batch(&*udp, &mut rx, &caps)
                });
                if r.is_err() {
                    break;
                }
                received += rx.len().max(1);
                for (bytes, from) in rx.datagrams() {
                    route(&here, &mut state, now, bytes, from);
                }
            }
            busy = service(&mut state, my_id, now, &mut tx, &mut released);
        }
        drop(released);
        flush(&udp, &mut tx, &mut caps).await;
        if busy {
            // Let the application tasks run between bursts.
            tokio::task::yield_now().await;
        }
    }
}

/// Sends everything `tx` holds, one system call per run of datagrams to one destination,
/// waiting for the socket to be writable when its buffer is full.
async fn flush(udp: &UdpSocket, tx: &mut SendBatch, caps: &mut batch::Caps) {
    let mut i = 0;
    while i < tx.runs.len() {
        let run = tx.runs[i];
        let r = udp.try_io(Interest::WRITABLE, || {
            batch::send_run(udp, &tx.buf, &run, caps)
        });
        match r {
            Ok(n) if n >= run.count => i += 1,
            Ok(n) => {
                // The socket buffer filled part way: the rest waits for writability.
                let r = &mut tx.runs[i];
                r.start += n * r.segment;
                r.len -= n * r.segment;
                r.count -= n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if udp.writable().await.is_err() {
                    break;
                }
            }
            // A failed send is a lost packet; the stream retransmits.
            Err(_) => i += 1,
        }
    }
    tx.clear();
}

fn bound_to(slot: &Slot, socket: u64) -> bool {
    slot.socket.as_ref().is_some_and(|s| s.inner.id == socket)
}

fn next_deadline(inst: &Instance, socket: u64) -> Instant {
    let state = inst.lock();
    let far = Instant::now() + IDLE;
    state
        .streams
        .values()
        .filter(|s| bound_to(s, socket))
        .filter_map(|s| s.stream.poll_timeout())
        .min()
        .map_or(far, |t| t.min(far))
}

/// What a socket's task knows about its own socket.
struct Me<'a> {
    inst: &'a Arc<Instance>,
    socket: &'a Weak<SocketInner>,
    id: u64,
    unrouted: &'a mpsc::Sender<Datagram>,
}

fn route(me: &Me<'_>, state: &mut State, now: Instant, bytes: &[u8], from: SocketAddr) {
    let (inst, my_id, unrouted) = (me.inst, me.id, me.unrouted);
    if packet::is_udx(bytes) {
        let slot = packet::stream_id(bytes).and_then(|id| state.streams.get_mut(&id));
        // A stream destroyed before it ever had a socket is only waiting for its handle to
        // go; its packets are nobody's.
        if let Some(slot) = slot.filter(|s| s.stream.is_closed().is_none() || s.socket.is_some()) {
            if slot.socket.is_none() && slot.accept_except != Some(from) {
                if let Some(inner) = me.socket.upgrade() {
                    let here = UdxSocket {
                        udx: Udx {
                            inner: inst.clone(),
                        },
                        inner,
                    };
                    match slot.accept.take() {
                        Some(remote_id) => {
                            for mut held in std::mem::take(&mut slot.held) {
                                held[4..8].copy_from_slice(&remote_id.to_le_bytes());
                                let _ = here.try_send_to(&held, from);
                            }
                            slot.socket = Some(here);
                            slot.stream.connect(remote_id, from);
                            slot.wake_all();
                        }
                        None => {
                            if slot.first_seen.is_none() {
                                slot.first_seen = Some((here, from));
                            }
                        }
                    }
                }
            }
            if let Some((remote_id, relay)) = slot.follow {
                let moved = slot.socket.is_some()
                    && from != relay
                    && slot.stream.remote_addr() != Some(from);
                if let (true, Some(inner)) = (moved, me.socket.upgrade()) {
                    slot.socket = Some(UdxSocket {
                        udx: Udx {
                            inner: inst.clone(),
                        },
                        inner,
                    });
                    slot.stream.connect(remote_id, from);
                    slot.follow = None;
                    slot.wake_all();
                }
            }
            if let Some(dest) = slot.relay_to {
                if bytes[2] & packet::DESTROY != 0 {
                    slot.stream.destroy();
                    slot.wake_all();
                }
                forward(state, dest, bytes);
                return;
            }
            slot.stream.handle_datagram(now, bytes);
            if !bound_to(slot, my_id) {
                slot.poke();
            }
            return;
        }
    }
    let d = Datagram {
        from,
        payload: bytes.to_vec(),
    };
    if unrouted.try_send(d).is_err() {
        state.unrouted_dropped += 1;
    }
}

/// Sends a relayed packet on to stream `dest`: same bytes, with the id rewritten to the id
/// its peer knows it by. Held while `dest` has no path yet (up to [`HELD`]; beyond that
/// dropped, and the sender retransmits).
fn forward(state: &mut State, dest: u32, bytes: &[u8]) {
    let Some(d) = state.streams.get_mut(&dest) else {
        tracing::debug!(dest, "relay target gone");
        return;
    };
    let (Some(socket), Some(remote_id), Some(addr)) = (
        d.socket.as_ref(),
        d.stream.remote_id(),
        d.stream.remote_addr(),
    ) else {
        if d.held.len() < HELD {
            d.held.push(bytes.to_vec());
        } else {
            tracing::debug!(dest, "relay target has no path yet");
        }
        return;
    };
    let mut out = bytes.to_vec();
    out[4..8].copy_from_slice(&remote_id.to_le_bytes());
    // A full socket buffer loses the packet, as the network could.
    if let Err(e) = socket.try_send_to(&out, addr) {
        tracing::debug!(dest, %addr, error = %e, "relay send failed");
    }
    if bytes[2] & packet::DESTROY != 0 {
        d.stream.destroy();
        d.wake_all();
    }
}

/// Runs due timers of the streams bound to `socket`, collects what each sends and wakes
/// handles. Returns true when some stream hit [`SEND_BATCH`] and has more to send right away.
fn service(
    state: &mut State,
    socket: u64,
    now: Instant,
    tx: &mut SendBatch,
    released: &mut Vec<UdxSocket>,
) -> bool {
    let mut busy = false;
    let mut dropped_messages = 0;
    state.streams.retain(|_, slot| {
        if !bound_to(slot, socket) {
            return true;
        }
        let s = &mut slot.stream;
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        let mut sent = 0;
        while sent < SEND_BATCH {
            let start = tx.buf.len();
            match s.poll_transmit_into(now, &mut tx.buf) {
                Some(dest) => tx.commit(start, dest),
                None => break,
            }
            sent += 1;
        }
        busy |= sent == SEND_BATCH;
        while let Some(e) = slot.stream.poll_event() {
            match e {
                Event::Readable | Event::RemoteEnded => wake(&mut slot.reader),
                Event::Writable => wake(&mut slot.writer),
                Event::Closed(_) => slot.wake_all(),
                Event::Message(m) => {
                    if slot.messages.len() < MAX_MESSAGES {
                        slot.messages.push_back(m);
                        wake(&mut slot.message_reader);
                    } else {
                        dropped_messages += 1;
                    }
                }
            }
        }
        let keep = slot.attached || slot.stream.is_closed().is_none() || sent > 0;
        if !keep {
            released.extend(slot.socket.take());
        }
        keep
    });
    state.messages_dropped += dropped_messages;
    busy
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// A UDX stream of a [`Udx`] instance, as tokio `AsyncRead` + `AsyncWrite`. Reads end (0
/// bytes) once the peer's END is delivered; `shutdown` sends our END after the written data.
/// Dropping the handle destroys a stream that has not closed.
pub struct UdxStream {
    inner: Arc<Instance>,
    id: u32,
}

/// A second handle to a [`UdxStream`] that does not own it: it can wait for the close and
/// slip in small writes, and dropping it does nothing to the stream.
#[derive(Clone)]
pub struct StreamWatch {
    inner: Arc<Instance>,
    id: u32,
}

impl std::fmt::Debug for StreamWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWatch").field("id", &self.id).finish()
    }
}

impl StreamWatch {
    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> io::Result<R> {
        with_slot(&self.inner, self.id, f)
    }

    /// Waits until the stream has closed and says why.
    pub async fn closed(&self) -> CloseReason {
        poll_fn(|cx| {
            let r = self.with(|slot| match slot.stream.is_closed() {
                Some(r) => Poll::Ready(r),
                None => {
                    slot.watchers.push(cx.waker().clone());
                    Poll::Pending
                }
            });
            // A slot that is gone belonged to a stream that closed.
            r.unwrap_or(Poll::Ready(CloseReason::Destroyed))
        })
        .await
    }

    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// See [`UdxStream::accept_first`].
    pub fn accept_first(&self, remote_id: u32) -> io::Result<()> {
        self.with(|slot| {
            if slot.socket.is_some() {
                return;
            }
            match slot.first_seen.take() {
                Some((socket, from)) => {
                    slot.stream.connect(remote_id, from);
                    socket.inner.wake.notify_one();
                    slot.socket = Some(socket);
                    slot.wake_all();
                }
                None => slot.accept = Some(remote_id),
            }
        })
    }

    /// See [`UdxStream::remote_addr`].
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.with(|slot| slot.stream.remote_addr()).ok().flatten()
    }

    /// See [`UdxStream::socket`].
    pub fn socket(&self) -> Option<UdxSocket> {
        self.with(|slot| slot.socket.clone()).ok().flatten()
    }

    /// See [`UdxStream::connected`].
    pub async fn connected(&self) -> io::Result<SocketAddr> {
        self.path_where(|_| true).await
    }

    /// Waits until the stream has a path that `fits`, and returns the peer's address there.
    async fn path_where(&self, fits: impl Fn(&Slot) -> bool) -> io::Result<SocketAddr> {
        poll_fn(|cx| {
            self.with(|slot| {
                if slot.socket.is_some() && fits(slot) {
                    if let Some(addr) = slot.stream.remote_addr() {
                        return Poll::Ready(Ok(addr));
                    }
                }
                if let Some(r) = slot.stream.is_closed() {
                    return Poll::Ready(Err(closed_error(r)));
                }
                slot.watchers.push(cx.waker().clone());
                Poll::Pending
            })?
        })
        .await
    }

    /// The stream's flow-control state ([`Stream::diagnostics`](super::Stream::diagnostics))
    /// and which tasks wait on it, for diagnosing a transfer that stopped.
    pub fn diagnostics(&self) -> Option<String> {
        self.with(|s| {
            format!(
                "{} | reader_waiting={} writer_waiting={} socket={}",
                s.stream.diagnostics(),
                s.reader.is_some(),
                s.writer.is_some(),
                s.socket.is_some()
            )
        })
        .ok()
    }

    /// See [`UdxStream::connect`]. A stream that followed a relay stops doing so: this is
    /// its direct path.
    pub fn connect(
        &self,
        socket: &UdxSocket,
        remote_id: u32,
        remote: SocketAddr,
    ) -> io::Result<()> {
        self.connect_path(socket, remote_id, remote, None)
    }

    fn connect_path(
        &self,
        socket: &UdxSocket,
        remote_id: u32,
        remote: SocketAddr,
        follow: Option<(u32, SocketAddr)>,
    ) -> io::Result<()> {
        let old = self.with(|slot| {
            if let Some(r) = slot.stream.is_closed() {
                return Err(closed_error(r));
            }
            slot.stream.connect(remote_id, remote);
            slot.accept = None;
            slot.follow = follow;
            let old = slot.socket.replace(socket.clone());
            slot.wake_all();
            Ok(old)
        })??;
        socket.inner.wake.notify_one();
        if let Some(old) = old {
            old.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until the stream is connected on a direct path, not through a blind relay
    /// (connected by [`StreamWatch::connect`], by an accepted first packet, or moved off a
    /// relay by the peer), and returns the peer's address. Fails if the stream closes first.
    pub async fn direct(&self) -> io::Result<SocketAddr> {
        self.path_where(|slot| slot.follow.is_none()).await
    }

    /// Whether the stream is on a blind relay's path (and would follow the peer off it).
    pub fn is_relayed(&self) -> bool {
        self.with(|slot| slot.follow.is_some()).unwrap_or(false)
    }

    /// See [`UdxStream::relay_to`].
    pub fn relay_to(&self, dest: &StreamWatch) -> io::Result<()> {
        if !Arc::ptr_eq(&self.inner, &dest.inner) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "relay target belongs to another instance",
            ));
        }
        let dest = dest.id;
        self.with(|slot| slot.relay_to = Some(dest))
    }

    /// Waits until the stream has a direct path (connected or accepted, not through a
    /// blind relay) or has closed.
    pub async fn closed_or_direct(&self) {
        poll_fn(|cx| {
            let r = self.with(|slot| {
                let direct = slot.socket.is_some() && slot.follow.is_none();
                if direct || slot.stream.is_closed().is_some() {
                    Poll::Ready(())
                } else {
                    slot.watchers.push(cx.waker().clone());
                    Poll::Pending
                }
            });
            r.unwrap_or(Poll::Ready(()))
        })
        .await
    }

    /// Queues all of `data` at once (see [`Stream::write_whole`](super::Stream::write_whole)),
    /// past the send buffer's bound if need be: for a frame that must not be split, after
    /// [`UdxStream::poll_write_ready`] (or a small one, such as a keepalive, at any time).
    pub fn write_whole(&self, data: &[u8]) -> io::Result<()> {
        self.with(|slot| {
            if let Some(r) = slot.stream.is_closed() {
                return Err(closed_error(r));
            }
            if !slot.stream.write_whole(data) {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            slot.poke();
            Ok(())
        })?
    }
}

fn with_slot<R>(inst: &Instance, id: u32, f: impl FnOnce(&mut Slot) -> R) -> io::Result<R> {
    let mut state = inst.lock();
    let slot = state
        .streams
        .get_mut(&id)
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
    Ok(f(slot))
}

impl std::fmt::Debug for UdxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdxStream").field("id", &self.id).finish()
    }
}

impl UdxStream {
    /// Our stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Connects the stream through `socket` to the peer's stream `remote_id` at `remote`.
    /// On a connected stream this moves it to the new path (libudx's change-remote): bytes
    /// in flight are retransmitted there if they were lost on the old one.
    pub fn connect(
        &self,
        socket: &UdxSocket,
        remote_id: u32,
        remote: SocketAddr,
    ) -> io::Result<()> {
        self.watch().connect(socket, remote_id, remote)
    }

    /// Lets the first packet that arrives for this stream, on any socket of the instance,
    /// connect it to the packet's source with peer stream id `remote_id` (how a server
    /// learns which path a holepunch or relay opened).
    /// If a packet already came in, the stream connects to where it came from right away.
    pub fn accept_first(&self, remote_id: u32) -> io::Result<()> {
        self.watch().accept_first(remote_id)
    }

    /// Makes this stream a relay to `dest` (another stream of the same instance): packets
    /// that arrive for this stream are forwarded untouched to `dest`'s peer, under the id that
    /// peer knows `dest` by. Set it both ways to join two peers (a blind relay).
    pub fn relay_to(&self, dest: &StreamWatch) -> io::Result<()> {
        self.watch().relay_to(dest)
    }

    /// On a relayed stream: move to wherever a packet from somewhere other than the current
    /// remote and `relay` comes from, addressing the peer's stream `remote_id` there (the
    /// peer upgraded to a direct path).
    pub fn follow_direct(&self, remote_id: u32, relay: SocketAddr) -> io::Result<()> {
        self.with(|slot| slot.follow = Some((remote_id, relay)))
    }

    /// Connects the stream through a blind relay at `relay` (the relay's stream
    /// `relay_remote_id`) and follows the peer, whose stream is `peer_id`, to a direct path
    /// if its packets start coming from one (see [`UdxStream::follow_direct`]). Until then
    /// the stream does not count as directly connected ([`StreamWatch::direct`]).
    pub fn connect_relayed(
        &self,
        socket: &UdxSocket,
        relay_remote_id: u32,
        relay: SocketAddr,
        peer_id: u32,
    ) -> io::Result<()> {
        self.watch()
            .connect_path(socket, relay_remote_id, relay, Some((peer_id, relay)))
    }

    /// Packets from `addr` will not connect this stream through
    /// [`UdxStream::accept_first`] (JS's firewall hook ignoring the relay's traffic).
    pub fn accept_except(&self, addr: SocketAddr) -> io::Result<()> {
        self.with(|slot| slot.accept_except = Some(addr))
    }

    /// Ready once the send buffer has room (or the stream can no longer be written, which
    /// is an error).
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|slot| {
            if let Some(r) = slot.stream.is_closed() {
                return Poll::Ready(Err(closed_error(r)));
            }
            if slot.stream.is_write_ended() {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            }
            if slot.stream.has_room() {
                return Poll::Ready(Ok(()));
            }
            slot.writer = Some(cx.waker().clone());
            Poll::Pending
        })?
    }

    /// See [`StreamWatch::write_whole`].
    pub fn write_whole(&self, data: &[u8]) -> io::Result<()> {
        self.watch().write_whole(data)
    }

    /// The peer's address, once connected.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.watch().remote_addr()
    }

    /// The socket the stream sends on, once connected.
    pub fn socket(&self) -> Option<UdxSocket> {
        self.watch().socket()
    }

    /// Waits until the stream is connected (by [`UdxStream::connect`] or by the first packet
    /// after [`UdxStream::accept_first`]) and returns the peer's address. Fails if the stream
    /// closes first.
    pub async fn connected(&self) -> io::Result<SocketAddr> {
        self.watch().connected().await
    }

    /// Waits until the stream has closed and says why.
    pub async fn closed(&self) -> CloseReason {
        self.watch().closed().await
    }

    /// A non-owning handle to this stream.
    pub fn watch(&self) -> StreamWatch {
        StreamWatch {
            inner: self.inner.clone(),
            id: self.id,
        }
    }

    /// Why the stream closed, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.with(|s| s.stream.is_closed()).ok().flatten()
    }

    /// The stream's counters.
    pub fn stats(&self) -> Option<super::Stats> {
        self.with(|s| s.stream.stats()).ok()
    }

    /// See [`StreamWatch::diagnostics`].
    pub fn diagnostics(&self) -> Option<String> {
        self.watch().diagnostics()
    }

    /// Sends one unreliable MESSAGE packet.
    pub fn send_message(&self, data: &[u8]) -> Result<(), MessageError> {
        self.with(|slot| {
            let r = slot.stream.send_message(data);
            slot.poke();
            r
        })
        .map_err(|_| MessageError::Closed)?
    }

    /// The next unreliable MESSAGE from the peer; `None` once the stream has closed and every
    /// received message was taken.
    pub async fn recv_message(&self) -> Option<Vec<u8>> {
        poll_fn(|cx| {
            self.with(|slot| {
                if let Some(m) = slot.messages.pop_front() {
                    return Poll::Ready(Some(m));
                }
                if slot.stream.is_closed().is_some() {
                    return Poll::Ready(None);
                }
                slot.message_reader = Some(cx.waker().clone());
                Poll::Pending
            })
            .unwrap_or(Poll::Ready(None))
        })
        .await
    }

    /// Aborts the stream: one DESTROY to the peer, then closed.
    pub fn destroy(&self) {
        let _ = self.with(|slot| {
            slot.stream.destroy();
            slot.wake_all();
            slot.poke();
        });
    }

    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> io::Result<R> {
        with_slot(&self.inner, self.id, f)
    }
}

fn closed_error(reason: CloseReason) -> io::Error {
    match reason {
        CloseReason::Reset => io::Error::from(io::ErrorKind::ConnectionReset),
        CloseReason::TimedOut => io::Error::from(io::ErrorKind::TimedOut),
        CloseReason::Destroyed | CloseReason::Ended => io::Error::from(io::ErrorKind::NotConnected),
    }
}

impl AsyncRead for UdxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|slot| {
            let n = slot.stream.read(buf.initialize_unfilled());
            if n > 0 {
                buf.advance(n);
                // Reading frees receive buffer; the stream may owe the peer a window update.
                slot.poke();
                return Poll::Ready(Ok(()));
            }
            if slot.stream.is_read_finished() {
                return Poll::Ready(Ok(()));
            }
            match slot.stream.is_closed() {
                Some(CloseReason::Ended) => Poll::Ready(Ok(())),
                Some(r) => Poll::Ready(Err(closed_error(r))),
                None => {
                    slot.reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })?
    }
}

impl AsyncWrite for UdxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|slot| {
            if let Some(r) = slot.stream.is_closed() {
                return Poll::Ready(Err(closed_error(r)));
            }
            let n = slot.stream.write(data);
            if n > 0 {
                slot.poke();
            }
            if n > 0 || data.is_empty() {
                return Poll::Ready(Ok(n));
            }
            if slot.stream.is_write_ended() {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            }
            slot.writer = Some(cx.waker().clone());
            Poll::Pending
        })?
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already the task's to send; there is no user-space buffer here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|slot| {
            slot.stream.end();
            slot.poke();
        })?;
        Poll::Ready(Ok(()))
    }
}

impl Drop for UdxStream {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        let mut released = None;
        if let Some(slot) = state.streams.get_mut(&self.id) {
            slot.attached = false;
            if slot.stream.is_closed().is_none() {
                slot.stream.destroy();
            }
            slot.poke();
            if slot.socket.is_none() {
                // Nobody services a stream without a socket: it goes now.
                released = state.streams.remove(&self.id);
            }
        }
        drop(state);
        drop(released);
    }
}
