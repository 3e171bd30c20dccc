"""The package alone: two swarms on a local testnet."""

import asyncio
import os
import sys
import threading

import pytest

import hyperswarm
from conftest import TIMEOUT, connected_pair, first


async def test_two_swarms_connect_and_exchange_bytes(testnet, topic):
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as a, hyperswarm.Hyperswarm(
        bootstrap=testnet.bootstrap
    ) as b:
        ca, cb = await connected_pair(a, b, topic)
        assert ca.remote_public_key == b.public_key
        assert cb.remote_public_key == a.public_key
        assert ca.handshake_hash == cb.handshake_hash
        assert cb.is_initiator and not ca.is_initiator
        assert ca.peer.public_key == b.public_key
        assert topic in cb.peer.topics

        up = os.urandom(200_000)
        down = os.urandom(150_000)
        await asyncio.gather(cb.write(up), ca.write(down))
        got_up, got_down = await asyncio.wait_for(
            asyncio.gather(ca.readexactly(len(up)), cb.readexactly(len(down))), TIMEOUT
        )
        assert got_up == up
        assert got_down == down

        # Ending one side is the other side's end of stream.
        await cb.end()
        assert await asyncio.wait_for(ca.read(), TIMEOUT) == b""
        await ca.close()
        await asyncio.wait_for(cb.wait_closed(), TIMEOUT)


async def test_key_pair_from_seed_is_the_identity(testnet, topic):
    kp = hyperswarm.KeyPair.from_seed(bytes(range(32)))
    assert kp == hyperswarm.KeyPair.from_seed(bytes(range(32)))
    assert hyperswarm.KeyPair(kp.secret_key) == kp
    assert len(kp.public_key) == 32 and len(kp.secret_key) == 64
    assert kp.secret_key.hex() not in repr(kp)
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap, key_pair=kp) as a, hyperswarm.Hyperswarm(
        bootstrap=testnet.bootstrap
    ) as b:
        assert a.public_key == kp.public_key
        _, cb = await connected_pair(a, b, topic)
        assert cb.remote_public_key == kp.public_key


async def test_on_connection_runs_on_the_loop_thread(testnet, topic):
    loop_thread = threading.get_ident()
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as a, hyperswarm.Hyperswarm(
        bootstrap=testnet.bootstrap
    ) as b:
        seen = asyncio.get_running_loop().create_future()
        async_seen = asyncio.get_running_loop().create_future()

        def on_conn(conn, peer):
            if not seen.done():
                seen.set_result((threading.get_ident(), conn, peer))

        async def on_conn_async(conn, peer):
            if not async_seen.done():
                async_seen.set_result(threading.get_ident())

        a.on_connection(on_conn)
        a.on_connection(on_conn_async)
        await (await a.join(topic, server=True, client=False)).flushed()
        await b.join(topic, server=False, client=True)
        thread, conn, peer = await asyncio.wait_for(seen, TIMEOUT)
        assert thread == loop_thread
        assert await asyncio.wait_for(async_seen, TIMEOUT) == loop_thread
        assert peer.public_key == b.public_key == conn.remote_public_key


async def test_backpressure_write_waits_for_the_reader(testnet, topic):
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as a, hyperswarm.Hyperswarm(
        bootstrap=testnet.bootstrap
    ) as b:
        ca, cb = await connected_pair(a, b, topic)
        big = os.urandom(32 * 1024 * 1024)
        writing = asyncio.ensure_future(cb.write(big))
        # Nobody reads: 32 MiB cannot all be taken by the connection's buffers. (If
        # backpressure were missing the write would finish here and the test fails.)
        done, _ = await asyncio.wait({writing}, timeout=1.0)
        assert not done, "a 32 MiB write finished while nobody read"
        got = await asyncio.wait_for(ca.readexactly(len(big)), 120)
        await asyncio.wait_for(writing, TIMEOUT)
        assert got == big


async def test_leave_and_discovery(testnet, topic):
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as a:
        d = await a.join(topic)
        assert d.topic == topic
        assert await asyncio.wait_for(d.flushed(), TIMEOUT)
        assert await asyncio.wait_for(a.flush(), TIMEOUT)
        await a.leave(topic)
        await d.destroy()
        with pytest.raises(hyperswarm.SessionDestroyedError):
            await d.refresh()


async def test_argument_errors(testnet):
    with pytest.raises(hyperswarm.InvalidKeyError, match="32 bytes, got 31"):
        hyperswarm.KeyPair.from_seed(bytes(31))
    with pytest.raises(hyperswarm.InvalidKeyError):
        hyperswarm.KeyPair(bytes(64))  # second half is not the public key
    with pytest.raises(TypeError):
        hyperswarm.Hyperswarm(key_pair=b"not a key pair")
    with pytest.raises(hyperswarm.InvalidArgumentError):
        await hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap, port=70000).start()
    with pytest.raises(hyperswarm.InvalidArgumentError):
        await hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap, host="not an ip").start()
    with pytest.raises(hyperswarm.InvalidArgumentError):
        hyperswarm.Hyperswarm(bootstrap="127.0.0.1:1")
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as swarm:
        with pytest.raises(hyperswarm.InvalidTopicError, match="32 bytes, got 31") as e:
            await swarm.join(bytes(31))
        assert isinstance(e.value, hyperswarm.HyperswarmError)
        assert e.value.code == "ERR_INVALID_TOPIC"
        with pytest.raises(TypeError):
            await swarm.join("a string topic")
        with pytest.raises(hyperswarm.NoModeError):
            await swarm.join(os.urandom(32), server=False, client=False)
        with pytest.raises(hyperswarm.InvalidKeyError):
            swarm.join_peer(bytes(5))
        with pytest.raises(hyperswarm.InvalidTopicError):
            await swarm.leave(b"")


async def test_error_classes_share_one_base():
    codes = set()
    for name in hyperswarm.__all__:
        obj = getattr(hyperswarm, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not hyperswarm.HyperswarmError:
            assert issubclass(obj, hyperswarm.HyperswarmError), name
            assert obj.code.startswith("ERR_"), name
            codes.add(obj.code)
    assert len(codes) == 11


async def test_swarm_used_after_close_raises(testnet, topic):
    swarm = hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap)
    with pytest.raises(hyperswarm.HyperswarmError, match="not started"):
        await swarm.join(topic)
    async with swarm:
        conns = swarm.connections()
    assert swarm.closed
    await swarm.close()  # idempotent
    # An iterator taken before the close ends.
    with pytest.raises(StopAsyncIteration):
        await first(conns)
    with pytest.raises(hyperswarm.DestroyedError):
        await swarm.join(topic)
    with pytest.raises(hyperswarm.DestroyedError):
        await swarm.flush()
    with pytest.raises(hyperswarm.DestroyedError):
        swarm.connections()
    with pytest.raises(hyperswarm.DestroyedError):
        swarm.on_connection(lambda c, p: None)
    with pytest.raises(hyperswarm.DestroyedError):
        await swarm.start()


async def test_connection_after_swarm_close_raises(testnet, topic):
    a = await hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap).start()
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as b:
        ca, cb = await connected_pair(a, b, topic)
        await a.close()
        with pytest.raises(hyperswarm.ConnectionClosedError):
            await asyncio.wait_for(ca.write(b"x"), TIMEOUT)
        # The peer sees its connection go.
        await asyncio.wait_for(cb.wait_closed(), TIMEOUT)
        with pytest.raises(hyperswarm.ConnectionClosedError):
            await asyncio.wait_for(cb.write(b"x" * 100_000), TIMEOUT)
        with pytest.raises(hyperswarm.InvalidArgumentError):
            await ca.read(0)


EXIT_WITHOUT_CLOSE = """
import asyncio, os, hyperswarm
async def main():
    tn = await hyperswarm.Testnet(3).start()
    a = await hyperswarm.Hyperswarm(bootstrap=tn.bootstrap).start()
    b = await hyperswarm.Hyperswarm(bootstrap=tn.bootstrap).start()
    topic = os.urandom(32)
    await (await a.join(topic, server=True, client=False)).flushed()
    await b.join(topic, server=False, client=True)
    conn = await b.connections().__anext__()
    # Leave work in flight on the runtime (reads, big writes, lookups), then return:
    # asyncio.run cancels it all while the runtime is still completing some of it.
    for _ in range(50):
        asyncio.ensure_future(conn.read())
        asyncio.ensure_future(conn.write(os.urandom(1 << 20)))
        asyncio.ensure_future(b.flush())
    print("ok", flush=True)
asyncio.run(main())
"""


async def test_process_exits_cleanly_with_swarms_left_open():
    # Runtime threads never enter Python, so an exit racing their completions is safe.
    for _ in range(5):
        proc = await asyncio.create_subprocess_exec(
            # -I: not the source tree on sys.path, the installed package.
            sys.executable, "-I", "-X", "faulthandler", "-c", EXIT_WITHOUT_CLOSE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert out == b"ok\n"
