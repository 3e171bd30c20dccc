//! `hyperswarm._native`: the pyo3 half of the `hyperswarm-rs` pip package. Thin classes
//! over `hyperswarm-bindings`; `hyperswarm/__init__.py` builds the asyncio API on top
//! (context managers, `async for`, callbacks on the loop's thread).
//!
//! Every async method returns an asyncio future (see [`bridge`]) whose Rust side runs on the
//! facade's one tokio runtime; runtime threads never enter Python. Cancelling the future
//! aborts the Rust task; reads are split into a wait (cancellable) and a synchronous take,
//! so no data is lost.

mod bridge;

use std::sync::Arc;

use bridge::awaitable;
use hyperswarm_bindings as b;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};
use std::sync::Mutex as StdMutex;

use tokio::sync::watch;

pyo3::create_exception!(
    hyperswarm,
    HyperswarmError,
    PyException,
    "Base class of every error the swarm raises; `code` is the stable `ERR_…` string."
);
pyo3::create_exception!(
    hyperswarm,
    InvalidTopicError,
    HyperswarmError,
    "A topic was not exactly 32 bytes."
);
pyo3::create_exception!(
    hyperswarm,
    InvalidKeyError,
    HyperswarmError,
    "A public key, secret key or seed had the wrong length or was not a valid key."
);
pyo3::create_exception!(
    hyperswarm,
    InvalidArgumentError,
    HyperswarmError,
    "Some other argument was out of range or malformed."
);
pyo3::create_exception!(
    hyperswarm,
    DestroyedError,
    HyperswarmError,
    "The swarm (or testnet) has been closed."
);
pyo3::create_exception!(
    hyperswarm,
    SessionDestroyedError,
    HyperswarmError,
    "The discovery session has been destroyed."
);
pyo3::create_exception!(
    hyperswarm,
    ConnectionClosedError,
    HyperswarmError,
    "The connection has been closed (by us, the peer or the swarm)."
);
pyo3::create_exception!(
    hyperswarm,
    BindError,
    HyperswarmError,
    "Binding a socket failed."
);
pyo3::create_exception!(
    hyperswarm,
    NetworkError,
    HyperswarmError,
    "The DHT or the connection underneath failed."
);
pyo3::create_exception!(
    hyperswarm,
    NoModeError,
    HyperswarmError,
    "A join asked for neither server nor client mode."
);
pyo3::create_exception!(
    hyperswarm,
    IoError,
    HyperswarmError,
    "Reading from or writing to a connection failed."
);
pyo3::create_exception!(
    hyperswarm,
    InternalError,
    HyperswarmError,
    "A bug in hyperswarm-rs (a task panicked)."
);

/// The facade's error as the Python exception class of its code.
fn err(e: b::Error) -> PyErr {
    use b::ErrorCode as C;
    let m = e.message;
    match e.code {
        C::InvalidTopic => InvalidTopicError::new_err(m),
        C::InvalidKey => InvalidKeyError::new_err(m),
        C::InvalidArgument => InvalidArgumentError::new_err(m),
        C::Destroyed => DestroyedError::new_err(m),
        C::SessionDestroyed => SessionDestroyedError::new_err(m),
        C::ConnectionClosed => ConnectionClosedError::new_err(m),
        C::Bind => BindError::new_err(m),
        C::Network => NetworkError::new_err(m),
        C::NoMode => NoModeError::new_err(m),
        C::Io => IoError::new_err(m),
        C::Internal => InternalError::new_err(m),
    }
}

fn invalid_argument(message: String) -> PyErr {
    err(b::Error::new(b::ErrorCode::InvalidArgument, message))
}

/// An Ed25519 identity: a 32-byte public key and its 64-byte secret key.
#[pyclass(module = "hyperswarm", name = "KeyPair", frozen, eq)]
#[derive(PartialEq, Eq)]
struct KeyPair {
    public_key: [u8; 32],
    secret_key: [u8; 64],
}

impl From<b::KeyPairBytes> for KeyPair {
    fn from(k: b::KeyPairBytes) -> Self {
        KeyPair {
            public_key: k.public_key,
            secret_key: k.secret_key,
        }
    }
}

#[pymethods]
impl KeyPair {
    /// The key pair whose 64-byte secret key (seed, then public key) is `secret_key`.
    #[new]
    fn new(secret_key: PyBackedBytes) -> PyResult<Self> {
        let kp = b::from_secret_key(&secret_key, None).map_err(err)?;
        Ok(KeyPair {
            public_key: kp.public_key(),
            secret_key: kp.secret_key(),
        })
    }

    /// The key pair derived from a 32-byte seed (JS `DHT.keyPair(seed)`).
    #[staticmethod]
    fn from_seed(seed: PyBackedBytes) -> PyResult<Self> {
        Ok(b::key_pair(Some(&seed)).map_err(err)?.into())
    }

    /// A fresh random key pair.
    #[staticmethod]
    fn generate() -> PyResult<Self> {
        Ok(b::key_pair(None).map_err(err)?.into())
    }

    /// 32 bytes.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.public_key)
    }

    /// 64 bytes.
    #[getter]
    fn secret_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.secret_key)
    }

    fn __repr__(&self) -> String {
        // Never the secret half.
        format!("KeyPair(public_key={})", hex(&self.public_key))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Starts a swarm; resolves to a `Swarm` once its DHT node is bound. `bootstrap` is a
/// list of `host:port` (None means the public HyperDHT bootstrap nodes).
#[pyfunction]
#[pyo3(signature = (*, bootstrap=None, secret_key=None, host=None, port=0,
    max_peers=None, max_client_connections=None, max_server_connections=None,
    max_parallel=None))]
#[allow(clippy::too_many_arguments)]
fn create_swarm<'py>(
    py: Python<'py>,
    bootstrap: Option<Vec<String>>,
    secret_key: Option<PyBackedBytes>,
    host: Option<String>,
    port: i64,
    max_peers: Option<u32>,
    max_client_connections: Option<u32>,
    max_server_connections: Option<u32>,
    max_parallel: Option<u32>,
) -> PyResult<Bound<'py, PyAny>> {
    let port = u16::try_from(port)
        .map_err(|_| invalid_argument(format!("port {port} is out of range (0..=65535)")))?;
    let settings = b::SwarmSettings {
        secret_key: secret_key.map(|k| k.to_vec()),
        seed: None,
        bootstrap,
        host,
        port,
        max_peers,
        max_client_connections,
        max_server_connections,
        max_parallel,
        firewall: None,
    };
    awaitable(py, async move {
        let inner = b::SwarmHandle::new(settings).await.map_err(err)?;
        Ok(Swarm { inner })
    })
}

/// A running swarm (see `hyperswarm.Hyperswarm` for the documented API).
#[pyclass(module = "hyperswarm._native", frozen)]
struct Swarm {
    inner: Arc<b::SwarmHandle>,
}

#[pymethods]
impl Swarm {
    /// Our identity.
    #[getter]
    fn key_pair(&self) -> KeyPair {
        self.inner.key_pair().clone().into()
    }

    /// Whether `destroy` was called.
    #[getter]
    fn destroyed(&self) -> bool {
        self.inner.is_destroyed()
    }

    /// Joins a topic; resolves to a `Discovery`.
    #[pyo3(signature = (topic, server, client, limit=None))]
    fn join<'py>(
        &self,
        py: Python<'py>,
        topic: PyBackedBytes,
        server: bool,
        client: bool,
        limit: Option<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // Argument errors surface when called, not when awaited.
        let topic = b_topic(&topic)?;
        let inner = self.inner.clone();
        awaitable(py, async move {
            let inner = inner
                .join(&topic, server, client, limit)
                .await
                .map_err(err)?;
            Ok(Discovery { inner })
        })
    }

    /// Leaves a topic; connections stay.
    fn leave<'py>(&self, py: Python<'py>, topic: PyBackedBytes) -> PyResult<Bound<'py, PyAny>> {
        let topic = b_topic(&topic)?;
        let inner = self.inner.clone();
        awaitable(py, async move { inner.leave(&topic).await.map_err(err) })
    }

    /// Waits for every topic's round and every queued peer.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.flush().await.map_err(err) })
    }

    /// Starts answering connections before any server join.
    fn listen<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.listen().await.map_err(err) })
    }

    /// Keeps a connection to a peer whatever the topics.
    fn join_peer(&self, public_key: PyBackedBytes) -> PyResult<()> {
        self.inner.join_peer(&public_key).map_err(err)
    }

    /// Stops insisting on a peer.
    fn leave_peer(&self, public_key: PyBackedBytes) -> PyResult<()> {
        self.inner.leave_peer(&public_key).map_err(err)
    }

    /// Bans (or with `banned=False` unbans) a peer.
    #[pyo3(signature = (public_key, banned=true))]
    fn ban(&self, public_key: PyBackedBytes, banned: bool) -> PyResult<()> {
        self.inner.ban(&public_key, banned).map_err(err)
    }

    /// Stops discovery and closes every connection until `resume`.
    fn suspend<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.suspend().await.map_err(err) })
    }

    /// Undoes `suspend`.
    fn resume<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.resume().await.map_err(err) })
    }

    /// The swarm's counters as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats().map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("connections", s.connections)?;
        d.set_item("client_connections", s.client_connections)?;
        d.set_item("server_connections", s.server_connections)?;
        d.set_item("connecting", s.connecting)?;
        d.set_item("queued", s.queued)?;
        d.set_item("peers", s.peers)?;
        d.set_item("banned_peers", s.banned_peers)?;
        Ok(d)
    }

    /// Leaves every topic and closes every connection and the DHT node. Idempotent.
    fn destroy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.destroy().await.map_err(err) })
    }

    /// The next connection as `(Connection, peer_info_dict)`, or `None` once destroyed.
    /// Counter updates in between are skipped.
    fn next_connection<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move {
            loop {
                match inner.next_event().await {
                    None => return Ok(None),
                    Some(b::SwarmEvent::Update(_)) => continue,
                    Some(b::SwarmEvent::Connection { connection, peer }) => {
                        return Ok(Some((Connection::new(connection), Peer(peer))));
                    }
                }
            }
        })
    }
}

fn b_topic(topic: &[u8]) -> PyResult<Vec<u8>> {
    // The facade checks too; checking here raises before an awaitable exists.
    if topic.len() != 32 {
        return Err(err(b::Error::new(
            b::ErrorCode::InvalidTopic,
            format!("a topic is 32 bytes, got {}", topic.len()),
        )));
    }
    Ok(topic.to_vec())
}

/// What the swarm knows about a peer, handed over as a dict.
struct Peer(b::PeerInfo);

impl<'py> IntoPyObject<'py> for Peer {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let p = self.0;
        let d = PyDict::new(py);
        d.set_item("public_key", PyBytes::new(py, &p.public_key))?;
        let topics: Vec<Bound<'py, PyBytes>> =
            p.topics.iter().map(|t| PyBytes::new(py, t)).collect();
        d.set_item("topics", topics)?;
        d.set_item("priority", p.priority as u8)?;
        d.set_item("banned", p.banned)?;
        d.set_item("explicit", p.explicit)?;
        d.set_item("client", p.client)?;
        d.set_item("attempts", p.attempts)?;
        Ok(d)
    }
}

/// A joined topic (JS `PeerDiscovery`).
#[pyclass(module = "hyperswarm", frozen)]
struct Discovery {
    inner: Arc<b::DiscoveryHandle>,
}

#[pymethods]
impl Discovery {
    /// The 32-byte topic.
    #[getter]
    fn topic<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.topic())
    }

    /// Waits for the topic's current announce/lookup round; `True` if it succeeded.
    fn flushed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.flushed().await.map_err(err) })
    }

    /// Announces / looks up again now, first switching the modes given.
    #[pyo3(signature = (server=None, client=None))]
    fn refresh<'py>(
        &self,
        py: Python<'py>,
        server: Option<bool>,
        client: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move {
            inner.refresh(server, client).await.map_err(err)
        })
    }

    /// Ends this session; the topic is left when it was the last one. Idempotent.
    fn destroy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.destroy().await.map_err(err) })
    }
}

/// What has been read from a connection and not handed to Python yet.
#[derive(Default)]
struct ReadState {
    leftover: Vec<u8>,
    eof: bool,
    error: Option<b::Error>,
    /// A read of the facade is in flight.
    reading: bool,
}

/// Reads on the runtime into a buffer that Python takes from synchronously. Only the
/// wait for data is awaited, and a cancelled wait loses nothing: data never sits in a
/// future that asyncio might cancel after it completed.
struct Reader {
    conn: Arc<b::ConnectionHandle>,
    state: StdMutex<ReadState>,
    /// Bumped whenever a read lands.
    landed: watch::Sender<u64>,
}

impl Reader {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ready(st: &ReadState) -> bool {
        !st.leftover.is_empty() || st.eof || st.error.is_some()
    }

    /// Starts a read unless one is in flight or something is waiting to be taken.
    fn start(self: &Arc<Self>, st: &mut ReadState) {
        if st.reading || Self::ready(st) {
            return;
        }
        st.reading = true;
        let this = self.clone();
        b::runtime().spawn(async move {
            let res = this.conn.read(b::MAX_READ).await;
            {
                let mut st = this.lock();
                st.reading = false;
                match res {
                    Ok(Some(chunk)) => st.leftover.extend_from_slice(&chunk),
                    Ok(None) => st.eof = true,
                    Err(e) => st.error = Some(e),
                }
            }
            this.landed.send_modify(|n| *n = n.wrapping_add(1));
        });
    }

    async fn readable(self: Arc<Self>) {
        // Subscribed before looking, so a read landing in between still wakes us.
        let mut landed = self.landed.subscribe();
        loop {
            {
                let mut st = self.lock();
                if Self::ready(&st) {
                    return;
                }
                self.start(&mut st);
            }
            if landed.changed().await.is_err() {
                return;
            }
        }
    }

    fn take(self: &Arc<Self>, n: usize) -> Result<Option<Vec<u8>>, b::Error> {
        let mut st = self.lock();
        if !st.leftover.is_empty() {
            let take = n.min(st.leftover.len());
            let rest = st.leftover.split_off(take);
            let out = std::mem::replace(&mut st.leftover, rest);
            // Read ahead while Python works on this chunk.
            self.start(&mut st);
            return Ok(Some(out));
        }
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        if st.eof {
            return Ok(Some(Vec::new()));
        }
        self.start(&mut st);
        Ok(None)
    }
}

/// An encrypted connection to a peer (see `hyperswarm.Connection`).
#[pyclass(module = "hyperswarm._native", frozen)]
struct Connection {
    inner: Arc<b::ConnectionHandle>,
    reader: Arc<Reader>,
}

impl Connection {
    fn new(inner: Arc<b::ConnectionHandle>) -> Self {
        let reader = Arc::new(Reader {
            conn: inner.clone(),
            state: StdMutex::default(),
            landed: watch::channel(0).0,
        });
        Connection { inner, reader }
    }
}

#[pymethods]
impl Connection {
    /// The peer's public key (32 bytes), proven by the handshake.
    #[getter]
    fn remote_public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.remote_public_key())
    }

    /// The Noise handshake hash: the same on both ends.
    #[getter]
    fn handshake_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.handshake_hash())
    }

    /// Whether we dialled.
    #[getter]
    fn is_initiator(&self) -> bool {
        self.inner.is_initiator()
    }

    /// Up to `n` bytes already read (`b""` at the end of the stream), or `None` when
    /// nothing is there yet (await `readable()`, then take again). Raises the error
    /// that ended the stream.
    fn take<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if n < 1 {
            return Err(invalid_argument(format!("read(n) needs n >= 1, got {n}")));
        }
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        Ok(self
            .reader
            .take(n)
            .map_err(err)?
            .map(|v| PyBytes::new(py, &v)))
    }

    /// Resolves once `take` has something to return. Cancelling it loses nothing.
    fn readable<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let reader = self.reader.clone();
        awaitable(py, async move {
            reader.readable().await;
            Ok(())
        })
    }

    /// Writes all of `data`; resolves once the connection took it, so awaiting each
    /// write is the backpressure.
    fn write<'py>(&self, py: Python<'py>, data: PyBackedBytes) -> PyResult<Bound<'py, PyAny>> {
        let data = data.to_vec();
        let inner = self.inner.clone();
        awaitable(py, async move { inner.write(data).await.map_err(err) })
    }

    /// Ends our side after everything written; the peer reads the end of the stream.
    fn end<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move { inner.end().await.map_err(err) })
    }

    /// Resolves once the connection closed underneath or was destroyed.
    fn wait_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move {
            inner.closed().await;
            Ok(())
        })
    }

    /// Closes once the stream finished closing cleanly (both sides ended), or after a
    /// grace period; returns at once.
    fn release(&self) {
        self.inner.release();
    }

    /// Closes now: reads and writes in flight raise `ConnectionClosedError`. Idempotent.
    fn destroy(&self) {
        self.inner.destroy();
    }

    /// Whether `destroy` was called.
    #[getter]
    fn destroyed(&self) -> bool {
        self.inner.is_destroyed()
    }
}

/// A HyperDHT testnet inside this process, for tests and local use.
#[pyclass(module = "hyperswarm._native", frozen)]
struct Testnet {
    inner: Arc<b::TestnetHandle>,
}

#[pymethods]
impl Testnet {
    /// Bootstrap addresses, `host:port`.
    #[getter]
    fn bootstrap(&self) -> Vec<String> {
        self.inner.bootstrap().to_vec()
    }

    /// Stops its nodes. Idempotent.
    fn destroy(&self) {
        self.inner.destroy();
    }
}

/// Starts a testnet of `size` nodes on `host` (default 127.0.0.1).
#[pyfunction]
#[pyo3(signature = (size=3, host=None))]
fn create_testnet(py: Python<'_>, size: u32, host: Option<String>) -> PyResult<Bound<'_, PyAny>> {
    if size == 0 {
        return Err(invalid_argument("a testnet needs at least one node".into()));
    }
    awaitable(py, async move {
        let inner = b::TestnetHandle::new(size, host).await.map_err(err)?;
        Ok(Testnet { inner })
    })
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<KeyPair>()?;
    m.add_class::<Swarm>()?;
    m.add_class::<Discovery>()?;
    m.add_class::<Connection>()?;
    m.add_class::<Testnet>()?;
    m.add_class::<bridge::Bridge>()?;
    m.add_function(wrap_pyfunction!(create_swarm, m)?)?;
    m.add_function(wrap_pyfunction!(create_testnet, m)?)?;
    m.add("MAX_READ", b::MAX_READ)?;
    m.add("HyperswarmError", py.get_type::<HyperswarmError>())?;
    let errors = [
        (
            py.get_type::<InvalidTopicError>(),
            b::ErrorCode::InvalidTopic,
        ),
        (py.get_type::<InvalidKeyError>(), b::ErrorCode::InvalidKey),
        (
            py.get_type::<InvalidArgumentError>(),
            b::ErrorCode::InvalidArgument,
        ),
        (py.get_type::<DestroyedError>(), b::ErrorCode::Destroyed),
        (
            py.get_type::<SessionDestroyedError>(),
            b::ErrorCode::SessionDestroyed,
        ),
        (
            py.get_type::<ConnectionClosedError>(),
            b::ErrorCode::ConnectionClosed,
        ),
        (py.get_type::<BindError>(), b::ErrorCode::Bind),
        (py.get_type::<NetworkError>(), b::ErrorCode::Network),
        (py.get_type::<NoModeError>(), b::ErrorCode::NoMode),
        (py.get_type::<IoError>(), b::ErrorCode::Io),
        (py.get_type::<InternalError>(), b::ErrorCode::Internal),
    ];
    py.get_type::<HyperswarmError>()
        .setattr("code", py.None())?;
    for (ty, code) in errors {
        // A class attribute, so `except` handlers and callers can match on the code.
        ty.setattr("code", code.as_str())?;
        m.add(ty.name()?, ty)?;
    }
    Ok(())
}
