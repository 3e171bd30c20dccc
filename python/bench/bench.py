"""`cargo xtask bench python`: the pip package against JS hyperswarm 4.17.2, in one run.

Both sides measure the same two things, on a testnet of JS HyperDHT nodes on 127.0.0.1:
join -> first connection (median of BENCH_ROUNDS fresh pairs of swarms in one process) and
the throughput of one connection (BENCH_MIB MiB client -> server, 64 KiB writes, each
awaited). The JS side is `node/bench/bench.js js` (the npm package's bench, run with
hyperswarm from tests/interop via NODE_PATH); this file is the Python side. Prints one JSON
line per side, then the ratios. Run inside a network namespace (the xtask does).
"""

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import hyperswarm

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MIB = int(os.environ.get("BENCH_MIB", "64"))
CHUNK = 64 * 1024


async def js_testnet():
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(ROOT / "tests" / "interop" / "js-testnet.js"),
        "--size",
        "3",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert ready["event"] == "ready", ready
    return proc, ready["bootstrap"]


async def pair(bootstrap):
    server = await hyperswarm.Hyperswarm(bootstrap=bootstrap).start()
    client = await hyperswarm.Hyperswarm(bootstrap=bootstrap).start()
    topic = os.urandom(32)
    accepted = server.connections()
    connected = client.connections()
    await (await server.join(topic, server=True, client=False)).flushed()
    t0 = time.perf_counter()
    await client.join(topic, server=False, client=True)
    client_conn = await asyncio.wait_for(connected.__anext__(), 60)
    ms = (time.perf_counter() - t0) * 1000
    server_conn = await asyncio.wait_for(accepted.__anext__(), 60)
    return server, client, server_conn, client_conn, ms


async def throughput(server_conn, client_conn):
    total = MIB * 1024 * 1024
    chunk = os.urandom(CHUNK)

    async def receive():
        got = 0
        while got < total:
            data = await server_conn.read()
            if not data:
                raise RuntimeError(f"stream ended after {got} bytes")
            got += len(data)

    t0 = time.perf_counter()
    receiving = asyncio.ensure_future(receive())
    for _ in range(0, total, CHUNK):
        await client_conn.write(chunk)
    await asyncio.wait_for(receiving, 600)
    return MIB / (time.perf_counter() - t0)


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024)
    return None


async def python_side():
    proc, bootstrap = await js_testnet()
    try:
        joins = []
        last = None
        for i in range(ROUNDS):
            server, client, sc, cc, ms = await pair(bootstrap)
            joins.append(ms)
            if i < ROUNDS - 1:
                await asyncio.gather(server.close(), client.close())
            else:
                last = (server, client, sc, cc)
        server, client, sc, cc = last
        cpu0 = cpu_seconds()
        mibs = await throughput(sc, cc)
        cpu = cpu_seconds() - cpu0
        await asyncio.gather(server.close(), client.close())
    finally:
        proc.stdin.close()
        await proc.wait()
    return {
        "impl": "python",
        "join_ms_median": round(statistics.median(joins)),
        "join_ms_all": [round(j) for j in joins],
        "mib": MIB,
        "mib_per_s": round(mibs, 1),
        "cpu_s": round(cpu, 2),
        "rss_mib": rss_mib(),
    }


def js_side():
    out = subprocess.run(
        ["node", str(ROOT / "node" / "bench" / "bench.js"), "js"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_ROUNDS": str(ROUNDS), "BENCH_MIB": str(MIB)},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    js = js_side()
    print(json.dumps(js), flush=True)
    py = asyncio.run(python_side())
    print(json.dumps(py), flush=True)
    print(
        f"python/js: join -> first connection {py['join_ms_median'] / max(js['join_ms_median'], 1):.2f}x "
        f"({py['join_ms_median']} ms vs {js['join_ms_median']} ms, lower is better); "
        f"throughput {py['mib_per_s'] / js['mib_per_s']:.2f}x "
        f"({py['mib_per_s']} vs {js['mib_per_s']} MiB/s, higher is better)"
    )


if __name__ == "__main__":
    sys.exit(main())
