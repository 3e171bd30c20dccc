//! Tokio driver: one UDP socket carrying many UDX streams.
//!
//! A single task per socket owns the receive loop and every stream's timers; streams are
//! [`Stream`] state machines in a map keyed by their local id (bytes 4..8 of each UDX
//! datagram). Application handles ([`UdxStream`]) only touch the state machine under a lock
//! and poke the task. Datagrams that are not for a known stream (dht-rpc messages, 1-byte
//! holepunch probes, UDX packets for an id nobody registered) go to a caller-provided bounded
//! channel, so dht-rpc can share the socket.
//!
//! Each wake-up services every stream on the socket. Hyperswarm keeps tens of connections per
//! socket, so a scan is cheaper than the bookkeeping a timer wheel would need; revisit if
//! sockets ever carry thousands of streams.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::packet;
use super::stream::{CloseReason, Config, Event, Stream, Transmit};

/// Largest datagram we accept (libudx's MTU ceiling is 1500; leave room for odd peers).
const RECV_BUF: usize = 2048;
/// Datagrams read per wake-up before the streams are serviced, so ACKs are acted on promptly.
const RECV_BATCH: usize = 64;
/// Datagrams one stream may send per wake-up, so one busy stream cannot starve the receive
/// side (the task comes straight back when a stream still had more).
const SEND_BATCH: usize = 64;
/// How long the task sleeps when no stream has a timer (it is woken earlier by any event).
const IDLE: Duration = Duration::from_secs(3600);

/// A datagram that was not for a registered stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddr,
    /// The whole datagram.
    pub payload: Vec<u8>,
}

/// One stream as the task sees it.
struct Slot {
    stream: Stream,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// False once the [`UdxStream`] is dropped: the slot goes when the stream has closed and
    /// sent its last packet.
    attached: bool,
}

#[derive(Default)]
struct State {
    streams: HashMap<u32, Slot>,
    /// Datagrams dropped because the unrouted channel was full or closed.
    unrouted_dropped: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Pokes the task after an application call that may have made something sendable.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a state machine mid-update; nothing sensible
        // can continue from that, so propagate it.
        self.state.lock().expect("udx socket state poisoned")
    }
}

/// A UDP socket driving UDX streams. Dropping it stops the task; streams on it stop moving.
pub struct UdxSocket {
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdxSocket {
    /// Binds `addr` and starts the socket's task. Datagrams not for a registered stream are
    /// offered to `unrouted` (and dropped, counted, if it is full).
    pub async fn bind(addr: SocketAddr, unrouted: mpsc::Sender<Datagram>) -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local_addr = socket.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        let task = tokio::spawn(run(shared.clone(), socket.clone(), unrouted));
        Ok(UdxSocket {
            shared,
            socket,
            local_addr,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends a raw datagram on the shared socket (dht-rpc messages, holepunch probes).
    pub async fn send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(payload, to).await
    }

    /// Datagrams dropped because the unrouted channel was full or closed.
    pub fn unrouted_dropped(&self) -> u64 {
        self.shared.lock().unrouted_dropped
    }

    /// Opens a stream with local id `local_id` to the peer's stream `remote_id` at `remote`.
    /// Fails with `AddrInUse` if `local_id` is taken on this socket.
    pub fn connect(
        &self,
        local_id: u32,
        remote_id: u32,
        remote: SocketAddr,
        config: Config,
    ) -> io::Result<UdxStream> {
        let mut state = self.shared.lock();
        if state.streams.contains_key(&local_id) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "stream id in use on this socket",
            ));
        }
        let mut stream = Stream::new(local_id, config);
        stream.connect(remote_id, remote);
        state.streams.insert(
            local_id,
            Slot {
                stream,
                reader: None,
                writer: None,
                attached: true,
            },
        );
        drop(state);
        self.shared.wake.notify_one();
        Ok(UdxStream {
            shared: self.shared.clone(),
            id: local_id,
        })
    }
}

impl Drop for UdxSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The socket's task.
async fn run(shared: Arc<Shared>, socket: Arc<UdpSocket>, unrouted: mpsc::Sender<Datagram>) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut out: Vec<Transmit> = Vec::new();
    let mut busy = false;
    loop {
        let mut received: Option<(usize, SocketAddr)> = None;
        if !busy {
            let deadline = next_deadline(&shared);
            tokio::select! {
                // Errors here are ICMP reports (port unreachable) on some platforms; they say
                // nothing a stream's own timers will not find out.
                r = socket.recv_from(&mut buf) => received = r.ok(),
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
        let now = Instant::now();
        {
            let mut state = shared.lock();
            let mut batch = 0;
            loop {
                if let Some((n, from)) = received.take() {
                    route(&mut state, &unrouted, now, &buf[..n], from);
                }
                batch += 1;
                if batch >= RECV_BATCH {
                    break;
                }
                match socket.try_recv_from(&mut buf) {
                    Ok(got) => received = Some(got),
                    Err(_) => break,
                }
            }
            busy = service(&mut state, now, &mut out);
        }
        for t in out.drain(..) {
            // A failed send is a lost packet; the stream retransmits.
            let _ = socket.send_to(&t.payload, t.dest).await;
        }
        if busy {
            // Let the application tasks run between bursts.
            tokio::task::yield_now().await;
        }
    }
}

fn next_deadline(shared: &Shared) -> Instant {
    let state = shared.lock();
    let far = Instant::now() + IDLE;
    state
        .streams
        .values()
        .filter_map(|s| s.stream.poll_timeout())
        .min()
        .map_or(far, |t| t.min(far))
}

fn route(
    state: &mut State,
    unrouted: &mpsc::Sender<Datagram>,
    now: Instant,
    bytes: &[u8],
    from: SocketAddr,
) {
    if packet::is_udx(bytes) {
        if let Some(slot) = packet::stream_id(bytes).and_then(|id| state.streams.get_mut(&id)) {
            slot.stream.handle_datagram(now, bytes);
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

/// Runs due timers, collects what each stream sends and wakes handles. Returns true when
/// some stream hit [`SEND_BATCH`] and has more to send right away.
fn service(state: &mut State, now: Instant, out: &mut Vec<Transmit>) -> bool {
    let mut busy = false;
    state.streams.retain(|_, slot| {
        let s = &mut slot.stream;
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        let mut sent = 0;
        while sent < SEND_BATCH {
            match s.poll_transmit(now) {
                Some(t) => out.push(t),
                None => break,
            }
            sent += 1;
        }
        busy |= sent == SEND_BATCH;
        while let Some(e) = s.poll_event() {
            match e {
                Event::Readable | Event::RemoteEnded => wake(&mut slot.reader),
                Event::Writable => wake(&mut slot.writer),
                Event::Closed(_) => {
                    wake(&mut slot.reader);
                    wake(&mut slot.writer);
                }
                // Unreliable messages have no consumer on this API yet.
                Event::Message(_) => {}
            }
        }
        slot.attached || s.is_closed().is_none() || sent > 0
    });
    busy
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// A UDX stream on a [`UdxSocket`], as tokio `AsyncRead` + `AsyncWrite`. Reads end (0 bytes)
/// once the peer's END is delivered; `shutdown` sends our END after the written data.
/// Dropping the handle destroys a stream that has not closed.
pub struct UdxStream {
    shared: Arc<Shared>,
    id: u32,
}

impl UdxStream {
    /// Our stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Why the stream closed, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared
            .lock()
            .streams
            .get(&self.id)
            .and_then(|s| s.stream.is_closed())
    }

    /// The stream's counters.
    pub fn stats(&self) -> Option<super::Stats> {
        self.shared
            .lock()
            .streams
            .get(&self.id)
            .map(|s| s.stream.stats())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> io::Result<R> {
        let mut state = self.shared.lock();
        let slot = state
            .streams
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        Ok(f(slot))
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
        let r = self.with(|slot| {
            let n = slot.stream.read(buf.initialize_unfilled());
            if n > 0 {
                buf.advance(n);
                return Poll::Ready(Ok(true));
            }
            if slot.stream.is_read_finished() {
                return Poll::Ready(Ok(false));
            }
            match slot.stream.is_closed() {
                Some(CloseReason::Ended) => Poll::Ready(Ok(false)),
                Some(r) => Poll::Ready(Err(closed_error(r))),
                None => {
                    slot.reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })?;
        if let Poll::Ready(Ok(true)) = r {
            // Reading frees receive buffer; the stream may owe the peer a window update.
            self.shared.wake.notify_one();
        }
        r.map_ok(|_| ())
    }
}

impl AsyncWrite for UdxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.with(|slot| {
            if let Some(r) = slot.stream.is_closed() {
                return Poll::Ready(Err(closed_error(r)));
            }
            let n = slot.stream.write(data);
            if n > 0 || data.is_empty() {
                return Poll::Ready(Ok(n));
            }
            if slot.stream.is_write_ended() {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            }
            slot.writer = Some(cx.waker().clone());
            Poll::Pending
        })?;
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.shared.wake.notify_one();
            }
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already the task's to send; there is no user-space buffer here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|slot| slot.stream.end())?;
        self.shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for UdxStream {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(slot) = state.streams.get_mut(&self.id) {
            slot.attached = false;
            if slot.stream.is_closed().is_none() {
                slot.stream.destroy();
            }
        }
        drop(state);
        self.shared.wake.notify_one();
    }
}
