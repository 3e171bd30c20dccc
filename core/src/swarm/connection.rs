//! The connection the application gets: the network's stream, which the swarm can still
//! close (a duplicate, a suspend), and which tells the swarm when the application drops it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use super::network::{Closed, SecureStream};

struct Slot<S> {
    stream: Option<S>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

pub(crate) struct Shared<S> {
    slot: Mutex<Slot<S>>,
    read: AtomicU64,
    written: AtomicU64,
    /// When it opened, and the stream's keepalive interval if it has one.
    opened: Instant,
    keepalive: Option<Duration>,
}

impl<S: SecureStream> Shared<S> {
    pub fn new(stream: S) -> Arc<Self> {
        let keepalive = stream.keepalive();
        Arc::new(Shared {
            opened: Instant::now(),
            keepalive,
            slot: Mutex::new(Slot {
                stream: Some(stream),
                read_waker: None,
                write_waker: None,
            }),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
        })
    }
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Slot<S>> {
        // A panic while polling leaves the stream in an unknown state; closing is all that
        // is left to do with it, and that still works.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether messages went both ways, so the remote has certainly been using this
    /// connection. JS counts its encrypted messages, keepalives included; a stream with
    /// keepalives has sent and received one by the time an interval has passed.
    pub fn is_established(&self) -> bool {
        let bytes =
            self.read.load(Ordering::Relaxed) > 0 && self.written.load(Ordering::Relaxed) > 0;
        bytes || self.keepalive.is_some_and(|k| self.opened.elapsed() >= k)
    }

    pub fn with_stream<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.lock().stream.as_ref().map(f)
    }

    /// Closes the stream under the application's feet; its pending reads and writes fail.
    pub fn close(&self) {
        let (stream, wakers) = {
            let mut slot = self.lock();
            let wakers = [slot.read_waker.take(), slot.write_waker.take()];
            (slot.stream.take(), wakers)
        };
        drop(stream);
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

/// A connection to a peer, from [`Swarm::accept`](super::Swarm::accept). Reads and writes
/// go straight to the network's encrypted stream. Dropping it closes the connection; the
/// swarm may also close it (a duplicate of another one, [`Swarm::suspend`](super::Swarm::suspend),
/// [`Swarm::destroy`](super::Swarm::destroy)), after which reads and writes fail with
/// `ConnectionAborted`.
pub struct Connection<S> {
    shared: Arc<Shared<S>>,
    id: u64,
    remote_public_key: [u8; 32],
    is_initiator: bool,
    closed: mpsc::UnboundedSender<u64>,
}

impl<S> std::fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("is_initiator", &self.is_initiator)
            .finish()
    }
}

impl<S> Connection<S> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        id: u64,
        remote_public_key: [u8; 32],
        is_initiator: bool,
        closed: mpsc::UnboundedSender<u64>,
    ) -> Self {
        Connection {
            shared,
            id,
            remote_public_key,
            is_initiator,
            closed,
        }
    }

    /// The peer's public key.
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.remote_public_key
    }

    /// Whether we dialled it.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Whether the swarm has not closed it.
    pub fn is_open(&self) -> bool {
        self.shared.lock().stream.is_some()
    }

    /// Runs `f` on the underlying stream, if still open (to reach its own methods).
    pub fn with_stream<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.shared.with_stream(f)
    }
}

impl<S: SecureStream> Connection<S> {
    /// Resolves once the connection has closed underneath (after a clean close on both
    /// sides, a reset, or the swarm closing it). Wait for it after `shutdown()` so what was
    /// written is delivered before dropping.
    pub fn closed(&self) -> Closed {
        match self.shared.with_stream(|s| s.closed()) {
            Some(closed) => closed,
            None => Box::pin(std::future::ready(())),
        }
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the swarm")
}

impl<S: AsyncRead + Unpin> AsyncRead for Connection<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut slot = self.shared.lock();
        let Some(stream) = slot.stream.as_mut() else {
            return Poll::Ready(Err(aborted()));
        };
        let before = buf.filled().len();
        let r = Pin::new(stream).poll_read(cx, buf);
        match &r {
            Poll::Pending => slot.read_waker = Some(cx.waker().clone()),
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                self.shared.read.fetch_add(n, Ordering::Relaxed);
            }
            Poll::Ready(Err(_)) => {}
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut slot = self.shared.lock();
        let Some(stream) = slot.stream.as_mut() else {
            return Poll::Ready(Err(aborted()));
        };
        let r = Pin::new(stream).poll_write(cx, buf);
        match &r {
            Poll::Pending => slot.write_waker = Some(cx.waker().clone()),
            Poll::Ready(Ok(n)) => {
                self.shared.written.fetch_add(*n as u64, Ordering::Relaxed);
            }
            Poll::Ready(Err(_)) => {}
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slot = self.shared.lock();
        let Some(stream) = slot.stream.as_mut() else {
            return Poll::Ready(Err(aborted()));
        };
        let r = Pin::new(stream).poll_flush(cx);
        if r.is_pending() {
            slot.write_waker = Some(cx.waker().clone());
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slot = self.shared.lock();
        let Some(stream) = slot.stream.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let r = Pin::new(stream).poll_shutdown(cx);
        if r.is_pending() {
            slot.write_waker = Some(cx.waker().clone());
        }
        r
    }
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        self.shared.close();
        // The swarm may be gone already; then nobody needs to know.
        let _ = self.closed.send(self.id);
    }
}
