"""Interop with JS Hyperswarm 4.17.2 (`tests/interop/js-swarm.js`, a separate node
process printing JSON events), both directions, on a local testnet."""

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

import hyperswarm
from conftest import TIMEOUT, first

INTEROP = Path(__file__).resolve().parents[2] / "tests" / "interop"

pytestmark = pytest.mark.skipif(
    os.environ.get("HYPERSWARM_REQUIRE_JS") != "1"
    and (shutil.which("node") is None or not (INTEROP / "node_modules").is_dir()),
    reason="needs node and `npm ci` in tests/interop (cargo xtask python does both)",
)


class JsPeer:
    """`node js-swarm.js join TOPIC --bootstrap B --server|--client` and its events."""

    def __init__(self, proc):
        self.proc = proc
        self.events = []

    @classmethod
    async def spawn(cls, topic, bootstrap, mode):
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(INTEROP / "js-swarm.js"),
            "join",
            topic.hex(),
            "--bootstrap",
            ",".join(bootstrap),
            f"--{mode}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def next(self, event, pred=lambda e: True, timeout=TIMEOUT):
        """The next event named `event` that `pred` accepts; fails on timeout or exit."""

        async def scan():
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"js peer exited ({await self.proc.wait()}) before {event!r}")
                ev = json.loads(line)
                self.events.append(ev)
                if ev.get("event") == event and pred(ev):
                    return ev

        return await asyncio.wait_for(scan(), timeout)

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                return await asyncio.wait_for(self.proc.wait(), TIMEOUT)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise
        return self.proc.returncode


class JsTestnet:
    """`node js-testnet.js --size 3`: a HyperDHT testnet of JS nodes on 127.0.0.1 (its
    bootstrapper on port 10001: the tests run in a network namespace of their own)."""

    async def __aenter__(self):
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(INTEROP / "js-testnet.js"),
            "--size",
            "3",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        assert line, f"js testnet exited ({await self.proc.wait()}) before it was ready"
        ready = json.loads(line)
        assert ready["event"] == "ready", ready
        self.bootstrap = ready["bootstrap"]
        return self

    async def __aexit__(self, *exc):
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), TIMEOUT)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture(params=["rs", "js"])
async def any_testnet(request):
    """A Rust testnet (in this process) or a JS one (a node child process)."""
    if request.param == "rs":
        async with hyperswarm.Testnet(3) as tn:
            yield tn
    else:
        async with JsTestnet() as tn:
            yield tn


async def exchange(conn, js, swarm):
    """Bytes both ways between our `conn` and the JS peer's connection to us."""
    await conn.write(b"hello from python\n")
    ev = await js.next("data", lambda e: "hello from python" in e["text"])
    assert "hello from python" in ev["text"]
    js.proc.stdin.write(b"hello from js\n")
    await js.proc.stdin.drain()
    got = b""
    while b"\n" not in got:
        chunk = await asyncio.wait_for(conn.read(), TIMEOUT)
        assert chunk, "stream ended before the JS peer's line"
        got += chunk
    assert got == b"hello from js\n"


@pytest.mark.parametrize("python_role", ["server", "client"])
async def test_python_and_js_hyperswarm(any_testnet, topic, python_role):
    testnet = any_testnet
    js_role = "client" if python_role == "server" else "server"
    async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as swarm:
        ours = swarm.connections()
        if python_role == "server":
            await (await swarm.join(topic, server=True, client=False)).flushed()
            js = await JsPeer.spawn(topic, testnet.bootstrap, js_role)
            ready = await js.next("ready")
        else:
            js = await JsPeer.spawn(topic, testnet.bootstrap, js_role)
            ready = await js.next("ready")
            # Announced before we look it up, so one lookup finds it.
            assert (await js.next("flushed", timeout=60))["ok"]
            await swarm.join(topic, server=False, client=True)
        try:
            conn = await first(ours)
            assert conn.remote_public_key.hex() == ready["public_key"]
            theirs = await js.next("connection")
            assert theirs["remote_public_key"] == swarm.public_key.hex()
            assert theirs["initiator"] == (js_role == "client")
            assert conn.is_initiator == (python_role == "client")
            await exchange(conn, js, swarm)
        finally:
            # The JS peer destroys its swarm when stdin closes and must then exit by itself.
            code = await js.stop()
        assert code == 0
        # Its swarm's destroy closed the connection.
        await asyncio.wait_for(conn.wait_closed(), TIMEOUT)
