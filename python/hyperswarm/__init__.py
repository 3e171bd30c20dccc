"""asyncio Hyperswarm for Python, backed by hyperswarm-rs.

Find peers by topic over the HyperDHT and talk to them over end-to-end encrypted
connections; wire-compatible with JS Hyperswarm 4.

    async with Hyperswarm(bootstrap=testnet.bootstrap) as swarm:
        discovery = await swarm.join(topic, server=True, client=True)
        await discovery.flushed()
        async for conn in swarm.connections():
            await conn.write(b"hello")
            print(await conn.read(1024))

The native module (``hyperswarm._native``) runs the swarm on its own tokio runtime; this
layer puts it on the running asyncio loop. Everything the swarm hands to Python code
(connections, callbacks) arrives on the loop's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from dataclasses import dataclass
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from . import _native
from ._native import (
    BindError,
    ConnectionClosedError,
    DestroyedError,
    Discovery,
    HyperswarmError,
    InternalError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTopicError,
    IoError,
    KeyPair,
    NetworkError,
    NoModeError,
    SessionDestroyedError,
)

__all__ = [
    "Hyperswarm",
    "Connection",
    "Discovery",
    "PeerInfo",
    "KeyPair",
    "Testnet",
    "hash_topic",
    "HyperswarmError",
    "InvalidTopicError",
    "InvalidKeyError",
    "InvalidArgumentError",
    "DestroyedError",
    "SessionDestroyedError",
    "ConnectionClosedError",
    "BindError",
    "NetworkError",
    "NoModeError",
    "IoError",
    "InternalError",
]

#: Largest chunk one ``Connection.read`` returns.
MAX_READ: int = _native.MAX_READ

#: How many connections wait for a consumer before the swarm is held back.
_BACKLOG = 16

Address = Union[str, Tuple[str, int]]
ConnectionCallback = Callable[["Connection", "PeerInfo"], Optional[Awaitable[None]]]


def hash_topic(data: Union[bytes, str]) -> bytes:
    """A 32-byte topic from any name: BLAKE2b-256, as JS ``HyperDHT.hash`` / ``crypto.hash``."""
    if isinstance(data, str):
        data = data.encode()
    return hashlib.blake2b(data, digest_size=32).digest()


def _addresses(bootstrap: Optional[Iterable[Address]]) -> Optional[List[str]]:
    if bootstrap is None:
        return None
    if isinstance(bootstrap, (str, bytes)):
        raise InvalidArgumentError("bootstrap is a list of 'host:port' strings or (host, port) pairs")
    out = []
    for a in bootstrap:
        if isinstance(a, str):
            out.append(a)
        elif isinstance(a, tuple) and len(a) == 2:
            out.append(f"{a[0]}:{a[1]}")
        else:
            raise InvalidArgumentError(f"bad bootstrap address {a!r}: want 'host:port' or (host, port)")
    return out


def _check_bytes(name: str, value: Any) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


@dataclass(frozen=True)
class PeerInfo:
    """What the swarm knows about the peer of a new connection."""

    public_key: bytes
    topics: Tuple[bytes, ...]
    client: bool
    priority: int
    banned: bool
    explicit: bool
    attempts: int

    @classmethod
    def _from_native(cls, d: Dict[str, Any]) -> "PeerInfo":
        return cls(
            public_key=d["public_key"],
            topics=tuple(d["topics"]),
            client=d["client"],
            priority=d["priority"],
            banned=d["banned"],
            explicit=d["explicit"],
            attempts=d["attempts"],
        )


class Connection:
    """An end-to-end encrypted connection to a peer.

    ``read`` and ``write`` may run concurrently (from different tasks). A read cancelled
    while it waits loses no data: the next read returns it.
    """

    __slots__ = ("_native", "peer", "__weakref__")

    def __init__(self, native: _native.Connection, peer: PeerInfo) -> None:
        self._native = native
        #: What the swarm knew about the peer when it connected.
        self.peer = peer

    @property
    def remote_public_key(self) -> bytes:
        """The peer's 32-byte public key, proven by the handshake."""
        return self._native.remote_public_key

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash, the same on both ends of this connection."""
        return self._native.handshake_hash

    @property
    def is_initiator(self) -> bool:
        """Whether we dialled."""
        return self._native.is_initiator

    async def read(self, n: int = MAX_READ) -> bytes:
        """Up to ``n`` bytes, as soon as any arrived; ``b""`` at the end of the stream."""
        native = self._native
        while True:
            # Taking is synchronous, so a cancellation can only hit the wait, never
            # bytes on their way to us.
            data = native.take(n)
            if data is not None:
                return data
            await native.readable()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        parts: List[bytes] = []
        got = 0
        while got < n:
            chunk = await self.read(n - got)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def write(self, data: Union[bytes, bytearray, memoryview]) -> "asyncio.Future[None]":
        """Sends ``data``; the future resolves once the connection took it (awaiting it is
        the backpressure). The write starts at once; if the future is cancelled the data
        is still sent in full, in order."""
        _check_bytes("data", data)
        if isinstance(data, memoryview):
            data = data.tobytes()
        return self._native.write(data)

    async def end(self) -> None:
        """Ends our side after everything written; we can still read until the peer ends."""
        await self._native.end()

    async def close(self) -> None:
        """Ends our side and lets the connection finish closing in the background
        (it is torn down once the peer ended too, or after a grace period)."""
        try:
            await self._native.end()
        except ConnectionClosedError:
            pass
        self._native.release()

    def destroy(self) -> None:
        """Closes now; reads and writes in flight raise ``ConnectionClosedError``."""
        self._native.destroy()

    async def wait_closed(self) -> None:
        """Returns once the connection is closed, whoever closed it."""
        await self._native.wait_closed()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read(MAX_READ)
            if not chunk:
                return
            yield chunk

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Connection remote_public_key={self.remote_public_key.hex()}>"


class Hyperswarm:
    """A swarm: join topics, get connections to the peers found on them.

    Use it as ``async with Hyperswarm(...) as swarm`` (or ``await swarm.start()`` and
    ``await swarm.close()``). ``bootstrap`` lists the DHT's bootstrap nodes as
    ``"host:port"`` or ``(host, port)``; ``None`` means the public HyperDHT. ``key_pair``
    is the swarm's identity (random when omitted).
    """

    def __init__(
        self,
        bootstrap: Optional[Sequence[Address]] = None,
        key_pair: Optional[KeyPair] = None,
        *,
        host: Optional[str] = None,
        port: int = 0,
        max_peers: Optional[int] = None,
        max_client_connections: Optional[int] = None,
        max_server_connections: Optional[int] = None,
        max_parallel: Optional[int] = None,
    ) -> None:
        if key_pair is not None and not isinstance(key_pair, KeyPair):
            raise TypeError(f"key_pair must be a hyperswarm.KeyPair, not {type(key_pair).__name__}")
        self._options: Dict[str, Any] = dict(
            bootstrap=_addresses(bootstrap),
            secret_key=key_pair.secret_key if key_pair is not None else None,
            host=host,
            port=port,
            max_peers=max_peers,
            max_client_connections=max_client_connections,
            max_server_connections=max_server_connections,
            max_parallel=max_parallel,
        )
        self._native: Optional[_native.Swarm] = None
        self._closed = False
        self._pump: "Optional[asyncio.Task[None]]" = None
        self._callbacks: List[ConnectionCallback] = []
        self._iterators: "Set[asyncio.Queue[Optional[Connection]]]" = set()
        self._backlog: "Optional[asyncio.Queue[Connection]]" = None
        self._tasks: "Set[asyncio.Future[Any]]" = set()

    async def start(self) -> "Hyperswarm":
        """Binds the swarm's DHT node (bootstrapping continues in the background)."""
        if self._closed:
            raise DestroyedError("swarm has been closed")
        if self._native is None:
            self._native = await _native.create_swarm(**self._options)
            self._backlog = asyncio.Queue(_BACKLOG)
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())
        return self

    async def __aenter__(self) -> "Hyperswarm":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _swarm(self) -> _native.Swarm:
        if self._closed:
            raise DestroyedError("swarm has been closed")
        if self._native is None:
            raise HyperswarmError("swarm not started: use `async with Hyperswarm(...)` or `await swarm.start()`")
        return self._native

    @property
    def key_pair(self) -> KeyPair:
        """The swarm's identity."""
        return self._swarm().key_pair

    @property
    def public_key(self) -> bytes:
        """The swarm's 32-byte public key."""
        return self.key_pair.public_key

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    async def join(
        self, topic: bytes, server: bool = True, client: bool = True, limit: Optional[int] = None
    ) -> Discovery:
        """Joins a 32-byte ``topic``: announce it (server) and/or look it up and dial the
        peers found (client). Returns the session; ``await discovery.flushed()`` waits for
        the first round."""
        _check_bytes("topic", topic)
        return await self._swarm().join(bytes(topic), bool(server), bool(client), limit)

    async def leave(self, topic: bytes) -> None:
        """Leaves ``topic`` (stops announcing and looking up); open connections stay."""
        _check_bytes("topic", topic)
        await self._swarm().leave(bytes(topic))

    async def flush(self) -> bool:
        """Waits until every topic's round is done and every peer found was tried."""
        return await self._swarm().flush()

    async def listen(self) -> None:
        """Answers connections before any server join (for ``join_peer`` by others)."""
        await self._swarm().listen()

    def join_peer(self, public_key: bytes) -> None:
        """Keeps a connection to the peer with ``public_key``, whatever the topics."""
        _check_bytes("public_key", public_key)
        self._swarm().join_peer(bytes(public_key))

    def leave_peer(self, public_key: bytes) -> None:
        """Stops insisting on a peer given to ``join_peer``."""
        _check_bytes("public_key", public_key)
        self._swarm().leave_peer(bytes(public_key))

    def ban(self, public_key: bytes, banned: bool = True) -> None:
        """Never dials or accepts the peer again (``banned=False`` lifts it)."""
        _check_bytes("public_key", public_key)
        self._swarm().ban(bytes(public_key), banned)

    async def suspend(self) -> None:
        """Stops discovery and closes every connection until ``resume``."""
        await self._swarm().suspend()

    async def resume(self) -> None:
        """Undoes ``suspend``."""
        await self._swarm().resume()

    def stats(self) -> Dict[str, int]:
        """The swarm's counters (connections, connecting, queued, peers, ...)."""
        return self._swarm().stats()

    def on_connection(self, callback: ConnectionCallback) -> ConnectionCallback:
        """Calls ``callback(conn, peer_info)`` for every new connection, on the event
        loop's thread. A coroutine function is run as a task. Usable as a decorator.

        Connections given to callbacks still reach ``connections()`` iterators too."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._swarm()
        self._callbacks.append(callback)
        self._drain_backlog()
        return callback

    def connections(self) -> AsyncIterator[Connection]:
        """Every new connection from now on (and those no one took yet), until the swarm
        closes. Several iterators each get every connection."""
        self._swarm()
        queue: "asyncio.Queue[Optional[Connection]]" = asyncio.Queue()
        assert self._backlog is not None
        while not self._backlog.empty():
            queue.put_nowait(self._backlog.get_nowait())
        self._iterators.add(queue)
        return self._iterate(queue)

    async def _iterate(self, queue: "asyncio.Queue[Optional[Connection]]") -> AsyncIterator[Connection]:
        try:
            while True:
                conn = await queue.get()
                if conn is None:
                    return
                yield conn
        finally:
            self._iterators.discard(queue)

    def _drain_backlog(self) -> None:
        assert self._backlog is not None
        while not self._backlog.empty():
            self._deliver(self._backlog.get_nowait())

    def _deliver(self, conn: Connection) -> None:
        for queue in self._iterators:
            queue.put_nowait(conn)
        for cb in list(self._callbacks):
            try:
                res = cb(conn, conn.peer)
                if inspect.isawaitable(res):
                    task = asyncio.ensure_future(res)
                    self._tasks.add(task)
                    task.add_done_callback(self._task_done)
            except Exception as e:  # a broken callback must not stop the swarm
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "hyperswarm on_connection callback failed", "exception": e}
                )

    def _task_done(self, task: "asyncio.Future[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            asyncio.get_running_loop().call_exception_handler(
                {"message": "hyperswarm on_connection callback failed", "exception": task.exception(), "task": task}
            )

    async def _run_pump(self) -> None:
        # The one reader of the native event queue; runs on the loop, so everything it
        # hands out arrives on the loop's thread.
        assert self._backlog is not None and self._native is not None
        native = self._native
        try:
            while True:
                got = await native.next_connection()
                if got is None:
                    return
                conn = Connection(got[0], PeerInfo._from_native(got[1]))
                if self._iterators or self._callbacks:
                    self._deliver(conn)
                else:
                    # Nobody is listening yet: hold it (bounded, which holds the swarm back).
                    await self._backlog.put(conn)
        finally:
            for queue in self._iterators:
                queue.put_nowait(None)

    async def close(self) -> None:
        """Leaves every topic, closes every connection and the DHT node. Idempotent; the
        swarm raises ``DestroyedError`` when used afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._native is None:
            return
        try:
            await self._native.destroy()
        finally:
            # The pump ends by itself once the native queue reports the end; if it is
            # still waiting on a consumer (a full backlog), stop it.
            if self._pump is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._pump), 5)
                except asyncio.TimeoutError:
                    self._pump.cancel()
            assert self._backlog is not None
            while not self._backlog.empty():
                self._backlog.get_nowait().destroy()
            for task in list(self._tasks):
                task.cancel()

    destroy = close

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._native is not None else "not started")
        return f"<Hyperswarm {state}>"


class Testnet:
    """A local HyperDHT of ``size`` nodes in this process, for tests and examples (no
    internet). Pass ``testnet.bootstrap`` to swarms.

        async with Testnet() as testnet:
            async with Hyperswarm(bootstrap=testnet.bootstrap) as swarm: ...
    """

    def __init__(self, size: int = 3, host: Optional[str] = None) -> None:
        if not isinstance(size, int) or size < 1:
            raise InvalidArgumentError(f"size must be a positive integer, got {size!r}")
        self._size = size
        self._host = host
        self._native: Optional[_native.Testnet] = None

    async def start(self) -> "Testnet":
        """Starts the nodes and waits until they are ready."""
        if self._native is None:
            self._native = await _native.create_testnet(self._size, self._host)
        return self

    @property
    def bootstrap(self) -> List[str]:
        """The nodes' addresses, ``host:port``."""
        if self._native is None:
            raise HyperswarmError("testnet not started")
        return self._native.bootstrap

    async def close(self) -> None:
        """Stops the nodes. Idempotent."""
        if self._native is not None:
            self._native.destroy()

    async def __aenter__(self) -> "Testnet":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
