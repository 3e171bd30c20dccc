"""Shared fixtures. Every test runs on a local testnet (never the public DHT); `cargo xtask
python` runs pytest inside a fresh network namespace with only loopback up."""

import asyncio
import os

import pytest

import hyperswarm

#: Upper bound for anything the tests wait for; reaching it is the failure.
TIMEOUT = 30


@pytest.fixture
async def testnet():
    async with hyperswarm.Testnet(3) as tn:
        yield tn


@pytest.fixture
def topic():
    return os.urandom(32)


async def first(iterator, timeout=TIMEOUT):
    """The iterator's next item, or a failure after `timeout` seconds."""
    return await asyncio.wait_for(iterator.__anext__(), timeout)


async def connected_pair(a, b, topic):
    """Joins `a` as server and `b` as client on `topic`; their connections to each other."""
    ai = a.connections()
    bi = b.connections()
    discovery = await a.join(topic, server=True, client=False)
    assert await asyncio.wait_for(discovery.flushed(), TIMEOUT)
    await b.join(topic, server=False, client=True)
    return await first(ai), await first(bi)
