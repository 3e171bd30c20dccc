"""A tiny chat over Hyperswarm, runnable without internet.

    python examples/chat.py                      # a local testnet, two peers say hello, exit
    python examples/chat.py --bootstrap H:P --topic NAME
                                                 # join NAME on that DHT; type lines to chat

The first form starts a HyperDHT testnet in this process and two swarms on it: they find each
other by topic, connect (Noise over UDX), exchange a line each and close. The second form is a
real chat peer: run it in two terminals against the same bootstrap node (e.g. the one
`hyperswarm join --testnet 3 ...` prints, or a JS `hyperdht/testnet`); omit --bootstrap to use
the public HyperDHT.
"""

import argparse
import asyncio
import sys

import hyperswarm


async def demo() -> None:
    async with hyperswarm.Testnet(3) as testnet:
        topic = hyperswarm.hash_topic("hyperswarm-rs python chat example")
        async with hyperswarm.Hyperswarm(bootstrap=testnet.bootstrap) as alice, hyperswarm.Hyperswarm(
            bootstrap=testnet.bootstrap
        ) as bob:
            said = asyncio.get_running_loop().create_future()

            @alice.on_connection
            async def greet(conn: hyperswarm.Connection, peer: hyperswarm.PeerInfo) -> None:
                # Runs on this event loop, like any coroutine of ours.
                await conn.write(b"hello from alice\n")
                line = await conn.readexactly(len(b"hello from bob\n"))
                said.set_result(line)

            await (await alice.join(topic, server=True, client=False)).flushed()
            await bob.join(topic, server=False, client=True)
            async for conn in bob.connections():
                print(f"bob: connected to {conn.remote_public_key.hex()[:16]}…")
                print("bob got:", (await conn.readexactly(len(b"hello from alice\n"))).decode().strip())
                await conn.write(b"hello from bob\n")
                break
            print("alice got:", (await asyncio.wait_for(said, 30)).decode().strip())


async def chat(bootstrap: list, topic_name: str) -> None:
    topic = hyperswarm.hash_topic(topic_name)
    async with hyperswarm.Hyperswarm(bootstrap=bootstrap or None) as swarm:
        peers: set = set()

        async def serve(conn: hyperswarm.Connection, peer: hyperswarm.PeerInfo) -> None:
            name = conn.remote_public_key.hex()[:8]
            print(f"* {name} joined")
            peers.add(conn)
            try:
                async for chunk in conn:
                    sys.stdout.write(f"<{name}> {chunk.decode(errors='replace')}")
                    sys.stdout.flush()
            except hyperswarm.ConnectionClosedError:
                pass
            finally:
                peers.discard(conn)
                print(f"* {name} left")

        swarm.on_connection(serve)
        await (await swarm.join(topic)).flushed()
        print(f"* joined {topic.hex()[:16]}… as {swarm.public_key.hex()[:8]}; type to chat, Ctrl-D to quit")
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            for conn in list(peers):
                try:
                    await conn.write(line.encode())
                except hyperswarm.HyperswarmError:
                    peers.discard(conn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="comma-separated host:port list (default: the public DHT)")
    ap.add_argument("--topic", help="chat on this topic instead of running the local demo")
    args = ap.parse_args()
    if args.topic is None:
        asyncio.run(demo())
    else:
        bootstrap = [a for a in (args.bootstrap or "").split(",") if a]
        asyncio.run(chat(bootstrap, args.topic))


if __name__ == "__main__":
    main()
