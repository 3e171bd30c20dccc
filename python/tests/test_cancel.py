"""Cancellation: a task cancelled mid-read loses no data and leaks nothing, and the
swarm still closes cleanly."""

import asyncio
import os

import pytest

from conftest import TIMEOUT, connected_pair

import hyperswarm


async def test_cancelled_read_loses_nothing(testnet, topic):
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as a, hyperswarm.Hyperswarm(
        bootstrap=testnet.bootstrap
    ) as b:
        ca, cb = await connected_pair(a, b, topic)

        # A read cancelled while nothing has arrived yet.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ca.read(10), 0.2)
        await cb.write(b"0123456789abcdef")
        # The chunk the cancelled read was waiting for reaches the next read, in order.
        assert await asyncio.wait_for(ca.readexactly(16), TIMEOUT) == b"0123456789abcdef"


async def test_reads_under_constant_cancellation_keep_every_byte(testnet, topic):
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as a, hyperswarm.Hyperswarm(
        bootstrap=testnet.bootstrap
    ) as b:
        ca, cb = await connected_pair(a, b, topic)
        data = os.urandom(4 * 1024 * 1024)

        async def send():
            for i in range(0, len(data), 50_000):
                await cb.write(data[i : i + 50_000])

        sender = asyncio.ensure_future(send())
        got = bytearray()
        cancelled = 0
        deadline = asyncio.get_running_loop().time() + 120
        while len(got) < len(data):
            assert asyncio.get_running_loop().time() < deadline, "transfer stalled"
            try:
                # Times out (and so cancels the read) often, at random points.
                got += await asyncio.wait_for(ca.read(7_000), 0.002)
            except asyncio.TimeoutError:
                cancelled += 1
        await asyncio.wait_for(sender, TIMEOUT)
        assert bytes(got) == data
        assert cancelled > 0


async def test_swarm_closes_cleanly_with_a_read_cancelled_and_one_pending(testnet, topic):
    a = await hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap).start()
    b = await hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap).start()
    ca, cb = await connected_pair(a, b, topic)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ca.read(), 0.2)
    pending = asyncio.ensure_future(ca.read())
    iterating = asyncio.ensure_future(a.connections().__anext__())
    await asyncio.wait_for(a.close(), TIMEOUT)
    await asyncio.wait_for(b.close(), TIMEOUT)
    # The read still waiting is woken (end of stream or an error), the iterator ends: nothing hangs.
    try:
        assert await asyncio.wait_for(pending, TIMEOUT) == b"", "a read on a closed swarm returned data"
    except hyperswarm.ConnectionClosedError:
        pass
    try:
        await asyncio.wait_for(iterating, TIMEOUT)
        raise AssertionError("connections() yielded after close")
    except StopAsyncIteration:
        pass
    # Nothing of the swarms is left running on the loop.
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert all(t.done() for t in others), others
