//! An encrypted connection: SecretStream framing over a UDX stream, as tokio
//! `AsyncRead` + `AsyncWrite`.
//!
//! The header frame goes out as soon as the connection exists (JS does the same), and
//! [`HyperDht::connect`](super::HyperDht::connect) and [`Server::accept`](super::Server::accept)
//! hand a connection out only once the peer's header has arrived ([`Connection::opened`],
//! JS's 'open'). Empty messages are keepalives: we send one after every
//! [`KEEPALIVE`] without writes, as hyperdht does, and never hand the peer's to the reader.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use crate::crypto::noise::HandshakeOutcome;
use crate::crypto::secretstream::{SecretStream, HEADER_LEN};
use crate::udx::{CloseReason, UdxSocket, UdxStream};

/// hyperdht's `connectionKeepAlive`.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// Plaintext bytes encrypted into one message; large enough to amortise the per-message
/// cost, small enough to keep the reader's latency low.
const CHUNK: usize = 64 * 1024;
/// Raw bytes read from the UDX stream at a time: one whole frame of [`CHUNK`] bytes.
const READ_CHUNK: usize = CHUNK + 3 + crate::crypto::secretstream::ABYTES;

/// The framing state, shared with the keepalive task: a frame is encrypted and queued in
/// the UDX stream under one lock, so frames never interleave.
struct Tx {
    crypto: SecretStream,
    /// Reused for each outgoing frame.
    frame: Vec<u8>,
}

impl Tx {
    /// Encrypts `data` as one message and queues the frame whole in `stream`.
    fn send(&mut self, data: &[u8], stream: &crate::udx::StreamWatch) -> io::Result<()> {
        self.crypto
            .encrypt_into(data, &mut self.frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        stream.write_whole(&self.frame)
    }
}

struct Shared {
    tx: Mutex<Tx>,
    /// Set by every write; the keepalive task clears it and only sends when it was clear.
    wrote: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tx> {
        self.tx.lock().expect("connection state poisoned")
    }
}

/// An authenticated, encrypted duplex stream to a peer.
///
/// Dropping it destroys the underlying stream; for a graceful close, `shutdown()` (sends
/// END after everything written) and then [`Connection::closed`].
pub struct Connection {
    stream: UdxStream,
    shared: Arc<Shared>,
    /// Decrypted messages not yet read, and how far into the first one reads got.
    messages: VecDeque<Vec<u8>>,
    front_at: usize,
    raw: Box<[u8]>,
    outcome: HandshakeOutcome,
    public_key: [u8; 32],
    keepalive: Option<JoinHandle<()>>,
    /// The connection to the blind relay carrying this one, if relayed: it lives as long as
    /// this connection.
    relay: Option<Box<Connection>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field(
                "remote_public_key",
                &hex::encode(self.outcome.remote_public_key),
            )
            .field("is_initiator", &self.outcome.is_initiator)
            .field("stream", &self.stream.id())
            .finish()
    }
}

impl Connection {
    /// Wraps a connected UDX stream after a handshake; sends our header frame at once.
    pub(crate) fn new(stream: UdxStream, outcome: HandshakeOutcome, public_key: [u8; 32]) -> Self {
        let header: [u8; HEADER_LEN] = rand::random();
        let (crypto, first) = SecretStream::new(&outcome, header);
        // If the stream is already gone the reader finds out.
        let _ = stream.write_whole(&first);
        let shared = Arc::new(Shared {
            tx: Mutex::new(Tx {
                crypto,
                frame: Vec::new(),
            }),
            wrote: AtomicBool::new(true),
        });
        let keepalive = tokio::spawn(keepalive(shared.clone(), stream.watch()));
        Connection {
            stream,
            shared,
            messages: VecDeque::new(),
            front_at: 0,
            raw: vec![0u8; READ_CHUNK].into_boxed_slice(),
            outcome,
            public_key,
            keepalive: Some(keepalive),
            relay: None,
        }
    }

    /// Keeps the blind relay's connection open as long as this one.
    pub(crate) fn keep_relay(&mut self, relay: Connection) {
        self.relay = Some(Box::new(relay));
    }

    /// Whether the connection runs through a blind relay now (false once it moved to a
    /// direct path).
    pub fn is_relayed(&self) -> bool {
        self.relay.is_some() && self.stream.watch().is_relayed()
    }

    /// Waits until the connection runs on a direct path (at once if it never was relayed):
    /// a relayed connection moves when a holepunch completes after the relay won. Returns
    /// the peer's address there; fails if the connection closes first.
    pub async fn direct_path(&self) -> std::io::Result<SocketAddr> {
        self.stream.watch().direct().await
    }

    /// The peer's static public key, authenticated by the handshake.
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.outcome.remote_public_key
    }

    /// Our static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The Noise handshake hash: the same on both ends, unique to this connection.
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.outcome.hash
    }

    /// Whether we dialled.
    pub fn is_initiator(&self) -> bool {
        self.outcome.is_initiator
    }

    /// The peer's address on the path in use.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.stream.remote_addr()
    }

    /// The UDP socket the connection runs on.
    pub fn socket(&self) -> Option<UdxSocket> {
        self.stream.socket()
    }

    /// The UDX stream's counters.
    pub fn stats(&self) -> Option<crate::udx::Stats> {
        self.stream.stats()
    }

    /// Waits until the underlying stream has closed and says why
    /// ([`CloseReason::Ended`] after a clean close on both sides).
    pub async fn closed(&self) -> CloseReason {
        self.stream.closed().await
    }

    /// A handle that waits for the close without owning the connection.
    pub fn watch(&self) -> crate::udx::StreamWatch {
        self.stream.watch()
    }

    /// Aborts the connection at once (the peer sees a reset).
    pub fn destroy(&self) {
        self.stream.destroy();
    }
}

impl Connection {
    /// Reads one chunk of raw bytes and decrypts what it completes into `plain`. Ready(false)
    /// at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let want = self
            .shared
            .lock()
            .crypto
            .pending_frame_rest()
            .map_or(self.raw.len(), |n| n.min(self.raw.len()));
        let mut raw = ReadBuf::new(&mut self.raw[..want]);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut raw))?;
        if raw.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        let messages = self.shared.lock().crypto.decrypt(raw.filled());
        match messages {
            Ok(messages) => {
                // Empty messages are keepalives.
                self.messages
                    .extend(messages.into_iter().filter(|m| !m.is_empty()));
                Poll::Ready(Ok(true))
            }
            Err(e) => {
                // A frame that does not authenticate means the peer or the path is not who
                // the handshake said: nothing after it can be trusted.
                self.stream.destroy();
                Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
            }
        }
    }

    /// The next whole message the peer sent (what is left of it, if byte reads took part of
    /// it); `None` at the end of the stream. For message protocols such as Protomux, where
    /// every frame is one message.
    pub async fn read_message(&mut self) -> io::Result<Option<Vec<u8>>> {
        std::future::poll_fn(|cx| loop {
            if let Some(mut m) = self.messages.pop_front() {
                let at = std::mem::take(&mut self.front_at);
                return Poll::Ready(Ok(Some(m.split_off(at))));
            }
            if !ready!(self.poll_fill(cx))? {
                return Poll::Ready(Ok(None));
            }
        })
        .await
    }

    /// Sends `data` as one message (at most [`MAX_MESSAGE`](crate::crypto::secretstream::MAX_MESSAGE) bytes), after anything written
    /// before.
    pub async fn write_message(&mut self, data: &[u8]) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.poll_write_ready(cx)).await?;
        self.shared.lock().send(data, &self.stream.watch())?;
        self.shared.wrote.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the peer's header frame: proof that the other end of the stream holds the
    /// handshake's keys (JS's 'open'). Data that arrives with it stays readable.
    pub async fn opened(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            while !self.shared.lock().crypto.header_received() {
                if !ready!(self.poll_fill(cx))? {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(front) = this.messages.front() {
                let n = buf.remaining().min(front.len() - this.front_at);
                buf.put_slice(&front[this.front_at..this.front_at + n]);
                this.front_at += n;
                if this.front_at == front.len() {
                    this.messages.pop_front();
                    this.front_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if !ready!(this.poll_fill(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Room first, then the frame goes into the stream whole: a write that returned
        // leaves nothing behind in this connection, so no later flush is needed to send it
        // (an echo that writes and then only reads would otherwise hold its last frame).
        ready!(this.stream.poll_write_ready(cx))?;
        let n = data.len().min(CHUNK);
        this.shared.lock().send(&data[..n], &this.stream.watch())?;
        this.shared.wrote.store(true, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every written frame is already in the UDX stream, which sends on its own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(k) = this.keepalive.take() {
            k.abort();
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
    }
}

/// Sends an empty message after each idle [`KEEPALIVE`] until the stream closes.
async fn keepalive(shared: Arc<Shared>, stream: crate::udx::StreamWatch) {
    let mut tick = tokio::time::interval(KEEPALIVE);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stream.closed() => return,
        }
        if shared.wrote.swap(false, Ordering::Relaxed) {
            continue;
        }
        // Twenty bytes, queued whole even past the send buffer's bound: under the lock no
        // other frame can land inside it.
        if shared.lock().send(&[], &stream).is_err() {
            return;
        }
    }
}
