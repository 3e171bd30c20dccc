//! [`ConnectionHandle`]: an encrypted connection as a host language sees it — read a chunk,
//! write a chunk, end, destroy — with reads and writes usable at the same time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{watch, Mutex};

use crate::error::{Error, ErrorCode, Result};
use crate::runtime::{run, runtime};

/// Largest chunk one [`ConnectionHandle::read`] returns.
pub const MAX_READ: usize = 64 * 1024;

/// How long [`ConnectionHandle::release`] waits for a clean close.
pub const LINGER: Duration = Duration::from_secs(10);

/// Any stream a connection handle can wrap (a swarm's connection, a DHT connection).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

type Boxed = Box<dyn Stream>;

/// A connection to a peer. Reads and writes may be in flight together; [`destroy`]
/// aborts both at once.
///
/// [`destroy`]: ConnectionHandle::destroy
pub struct ConnectionHandle {
    reader: Mutex<Option<ReadHalf<Boxed>>>,
    writer: Mutex<Option<WriteHalf<Boxed>>>,
    closed: watch::Sender<bool>,
    /// Set once the stream underneath has closed, whoever closed it.
    gone: watch::Sender<bool>,
    remote_public_key: [u8; 32],
    handshake_hash: Vec<u8>,
    is_initiator: bool,
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("remote_public_key", &hex::encode(self.remote_public_key))
            .field("is_initiator", &self.is_initiator)
            .finish()
    }
}

impl ConnectionHandle {
    /// Wraps `stream`, with what the handshake established. `gone` resolves once the
    /// stream underneath has closed (reset, ended both ways, or closed by the swarm), so
    /// hosts learn of it without reading.
    pub fn new(
        stream: impl Stream,
        remote_public_key: [u8; 32],
        handshake_hash: Vec<u8>,
        is_initiator: bool,
        gone: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) -> Self {
        let (r, w) = tokio::io::split(Box::new(stream) as Boxed);
        let gone_tx = watch::channel(false).0;
        if let Some(fut) = gone {
            let tx = gone_tx.clone();
            runtime().spawn(async move {
                fut.await;
                tx.send_replace(true);
            });
        }
        ConnectionHandle {
            reader: Mutex::new(Some(r)),
            writer: Mutex::new(Some(w)),
            closed: watch::channel(false).0,
            gone: gone_tx,
            remote_public_key,
            handshake_hash,
            is_initiator,
        }
    }

    /// The peer's public key, proven by the handshake.
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.remote_public_key
    }

    /// The Noise handshake hash: the same on both ends, unique to this connection.
    pub fn handshake_hash(&self) -> &[u8] {
        &self.handshake_hash
    }

    /// Whether we dialled.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Whether [`destroy`](Self::destroy) was called.
    pub fn is_destroyed(&self) -> bool {
        *self.closed.borrow()
    }

    /// The next chunk the peer sent (at most `max` bytes, at most [`MAX_READ`]); `None` at
    /// the end of the stream. Fails with `ERR_CONNECTION_CLOSED` once destroyed (by us or
    /// by the swarm underneath).
    async fn read_here(&self, max: usize) -> Result<Option<Vec<u8>>> {
        let max = max.clamp(1, MAX_READ);
        let mut closed = self.closed.subscribe();
        let mut guard = self.reader.lock().await;
        let Some(r) = guard.as_mut() else {
            return Err(Error::closed());
        };
        let mut buf = vec![0u8; max];
        let n = tokio::select! {
            n = r.read(&mut buf) => n,
            _ = closed.wait_for(|c| *c) => {
                *guard = None;
                return Err(Error::closed());
            }
        };
        match n {
            Ok(0) => Ok(None),
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e) => {
                *guard = None;
                Err(io_error(e))
            }
        }
    }

    /// Writes all of `data`; returns once the stream took it (the stream's own buffer
    /// is the backpressure).
    async fn write_here(&self, data: &[u8]) -> Result<()> {
        let mut closed = self.closed.subscribe();
        let mut guard = self.writer.lock().await;
        let Some(w) = guard.as_mut() else {
            return Err(Error::closed());
        };
        let res = tokio::select! {
            res = w.write_all(data) => res,
            _ = closed.wait_for(|c| *c) => {
                *guard = None;
                return Err(Error::closed());
            }
        };
        res.map_err(|e| {
            *guard = None;
            io_error(e)
        })
    }

    /// Ends our side after everything written (the peer reads the end of the stream);
    /// reading goes on until the peer ends too.
    async fn end_here(&self) -> Result<()> {
        let mut closed = self.closed.subscribe();
        let mut guard = self.writer.lock().await;
        let Some(w) = guard.as_mut() else {
            return Err(Error::closed());
        };
        tokio::select! {
            res = w.shutdown() => res.map_err(io_error),
            _ = closed.wait_for(|c| *c) => Err(Error::closed()),
        }
    }

    /// [`read_here`](Self::read_here) on the binding's runtime, whatever executor awaits it.
    pub async fn read(self: &Arc<Self>, max: usize) -> Result<Option<Vec<u8>>> {
        let this = self.clone();
        run(async move { this.read_here(max).await }).await
    }

    /// [`write_here`](Self::write_here) on the binding's runtime.
    pub async fn write(self: &Arc<Self>, data: Vec<u8>) -> Result<()> {
        let this = self.clone();
        run(async move { this.write_here(&data).await }).await
    }

    /// [`end_here`](Self::end_here) on the binding's runtime.
    pub async fn end(self: &Arc<Self>) -> Result<()> {
        let this = self.clone();
        run(async move { this.end_here().await }).await
    }

    /// Resolves once the stream underneath has closed or [`destroy`](Self::destroy) was
    /// called, whichever comes first.
    pub async fn closed(self: &Arc<Self>) {
        let mut gone = self.gone.subscribe();
        let mut closed = self.closed.subscribe();
        let _ = run(async move {
            tokio::select! {
                _ = gone.wait_for(|g| *g) => {}
                _ = closed.wait_for(|c| *c) => {}
            }
            Ok(())
        })
        .await;
    }

    /// Closes the connection once the stream underneath has finished closing by itself
    /// (after both sides ended, the last acknowledgements still have to flow), or after
    /// [`LINGER`] at the latest. Dropping it at once would reset the peer mid-close.
    pub fn release(self: &Arc<Self>) {
        let this = self.clone();
        runtime().spawn(async move {
            let mut gone = this.gone.subscribe();
            let _ = tokio::time::timeout(LINGER, gone.wait_for(|g| *g)).await;
            this.destroy();
        });
    }

    /// Closes the connection now: reads and writes in flight fail with
    /// `ERR_CONNECTION_CLOSED`. Idempotent.
    pub fn destroy(&self) {
        self.closed.send_replace(true);
        // Halves not in use are dropped here; those in use are dropped by the call that
        // holds them once it sees the flag. The stream closes when both are gone.
        if let Ok(mut g) = self.reader.try_lock() {
            *g = None;
        }
        if let Ok(mut g) = self.writer.try_lock() {
            *g = None;
        }
    }
}

fn io_error(e: io::Error) -> Error {
    match e.kind() {
        // The swarm closed it underneath (a duplicate, suspend, destroy) or the peer reset it.
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => Error::new(ErrorCode::ConnectionClosed, e.to_string()),
        _ => Error::new(ErrorCode::Io, e.to_string()),
    }
}
