//! An encrypted connection: SecretStream framing over a UDX stream, as tokio
//! `AsyncRead` + `AsyncWrite`.
//!
//! The header frame goes out as soon as the connection exists (JS does the same); reads wait
//! for the peer's header. Empty messages are keepalives: we send one after every
//! [`KEEPALIVE`] without writes, as hyperdht does, and never hand the peer's to the reader.

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
/// Raw bytes read from the UDX stream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The framing state and ciphertext not yet taken by the UDX stream, shared with the
/// keepalive task so its frames never land inside another frame.
struct Tx {
    crypto: SecretStream,
    out: Vec<u8>,
    out_at: usize,
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
    plain: Vec<u8>,
    plain_at: usize,
    raw: Box<[u8]>,
    outcome: HandshakeOutcome,
    public_key: [u8; 32],
    keepalive: Option<JoinHandle<()>>,
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
        // A fresh stream's send buffer is empty, so the header always fits whole; if the
        // stream is already gone the reader finds out.
        let _ = stream.write_if_idle(&first);
        let shared = Arc::new(Shared {
            tx: Mutex::new(Tx {
                crypto,
                out: Vec::new(),
                out_at: 0,
            }),
            wrote: AtomicBool::new(true),
        });
        let keepalive = tokio::spawn(keepalive(shared.clone(), stream.watch()));
        Connection {
            stream,
            shared,
            plain: Vec::new(),
            plain_at: 0,
            raw: vec![0u8; READ_CHUNK].into_boxed_slice(),
            outcome,
            public_key,
            keepalive: Some(keepalive),
        }
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

    /// Pushes pending ciphertext into the UDX stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = self.shared.clone();
        let mut tx = shared.lock();
        while tx.out_at < tx.out.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &tx.out[tx.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            tx.out_at += n;
        }
        tx.out.clear();
        tx.out_at = 0;
        Poll::Ready(Ok(()))
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
            if this.plain_at < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_at);
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                return Poll::Ready(Ok(()));
            }
            this.plain.clear();
            this.plain_at = 0;
            let mut raw = ReadBuf::new(&mut this.raw);
            ready!(Pin::new(&mut this.stream).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            let messages = this.shared.lock().crypto.decrypt(raw.filled());
            match messages {
                Ok(messages) => {
                    for m in messages {
                        this.plain.extend_from_slice(&m);
                    }
                }
                Err(e) => {
                    // A frame that does not authenticate means the peer or the path is not
                    // who the handshake said: nothing after it can be trusted.
                    this.stream.destroy();
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
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
        ready!(this.poll_drain(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(CHUNK);
        {
            let mut tx = this.shared.lock();
            let frame = tx
                .crypto
                .encrypt(&data[..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            tx.out = frame;
            tx.out_at = 0;
        }
        this.shared.wrote.store(true, Ordering::Relaxed);
        // The bytes are ours now; whatever the stream does not take yet goes on the next
        // write or flush.
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
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
        let mut tx = shared.lock();
        if tx.out_at < tx.out.len() {
            continue;
        }
        let Ok(frame) = tx.crypto.encrypt(&[]) else {
            return;
        };
        // Only an idle stream gets one: the frame must not be cut in two, and a busy stream
        // needs no keepalive. The cipher state has advanced either way, so an unsent frame
        // would desynchronise the peer; keep it for the writer instead.
        match stream.write_if_idle(&frame) {
            Ok(true) => {}
            Ok(false) => {
                tx.out = frame;
                tx.out_at = 0;
            }
            Err(_) => return,
        }
    }
}
