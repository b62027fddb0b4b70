"""A TCP proxy that adds network latency: what an MSL host sees towards Google, on loopback.

    python bench/latency_proxy.py --rtt-ms 40 LISTEN_PORT:UPSTREAM_PORT [LISTEN_PORT:UPSTREAM_PORT ...]

Every byte is delayed by half the round-trip time in each direction, and the first bytes a client sends
wait one more round trip, for the TCP handshake that happens instantly on loopback. Order is kept per
direction; delays never accumulate (each chunk is due at its arrival time plus the delay). TLS passes
through untouched, so clients still verify the real server's certificate.

It prints ``ready`` once it listens, runs until SIGTERM/SIGINT, and binds 127.0.0.1 only. The benchmark
starts it as a child process, so its CPU is not counted as the client's.
"""

import argparse
import asyncio
import contextlib
import signal
import sys

HOST = "127.0.0.1"
CHUNK = 65536


async def _pump(reader, writer, delay, first_due, loop):
    """Copy reader to writer, each chunk due ``delay`` after it arrived (and not before ``first_due``)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            with contextlib.suppress(OSError):
                await writer.drain()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            try:
                data = await reader.read(CHUNK)
            except OSError:
                data = b""
            now = loop.time()
            queue.put_nowait((max(now, first_due) + delay, data or None))
            if not data:
                break
        await sender
    finally:
        sender.cancel()


async def _handle(client_reader, client_writer, upstream_port, rtt):
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, upstream_port)
    except OSError:
        client_writer.close()
        return
    half = rtt / 2.0
    try:
        await asyncio.gather(
            # The client's first bytes could only leave after the TCP handshake (one round trip).
            _pump(client_reader, upstream_writer, half, accepted + rtt, loop),
            _pump(upstream_reader, client_writer, half, accepted, loop),
        )
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()


async def serve(pairs, rtt):
    servers = []
    for listen_port, upstream_port in pairs:

        def handler(reader, writer, upstream_port=upstream_port):
            return _handle(reader, writer, upstream_port, rtt)

        servers.append(await asyncio.start_server(handler, HOST, listen_port, backlog=1024, reuse_address=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
        await server.wait_closed()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time to add (default 40)")
    parser.add_argument("pairs", nargs="+", metavar="LISTEN:UPSTREAM", help="ports on 127.0.0.1")
    args = parser.parse_args(argv)
    pairs = []
    for pair in args.pairs:
        listen, upstream = pair.split(":")
        pairs.append((int(listen), int(upstream)))
    asyncio.run(serve(pairs, args.rtt_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
