"""A TCP proxy that adds network latency: what an MSL host sees towards Google, on loopback.

    python bench/latency_proxy.py --rtt-ms 40 LISTEN_PORT:UPSTREAM_PORT [LISTEN_PORT:UPSTREAM_PORT ...]

Every byte is delayed by half the round-trip time in each direction, and the first bytes a client sends
wait one more round trip, for the TCP handshake that happens instantly on loopback. Order is kept per
direction; delays never accumulate (each chunk is due at its arrival time plus the delay). TLS passes
through untouched, so clients still verify the real server's certificate.

It prints ``ready`` once it listens, runs until SIGTERM/SIGINT, and binds 127.0.0.1 only. The benchmark
starts it as a child process, so its CPU is not counted as the client's.

With ``--stats-file PATH`` it counts, per listening port, the connections and the round trips the clients
waited for, and on SIGUSR1 writes them to PATH as JSON (``{"PORT": {"connections": N, "round_trips": M}}``,
written to PATH.tmp and renamed) and starts counting afresh. A round trip is the TCP handshake of each
connection plus every turn of the exchange from client to server: client bytes followed by server bytes.
Client bytes sent before the server's answer to earlier ones arrived (pipelining) are the same turn, so
the count is the number of times a client had to wait a round trip for the server.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

HOST = "127.0.0.1"
CHUNK = 65536


class Turns:
    """One connection's turns: ``client`` is called for client bytes, ``server`` for server bytes."""

    def __init__(self, counter):
        self.counter = counter
        self.waiting = False  # client bytes sent, no server bytes since
        counter["connections"] += 1
        counter["round_trips"] += 1  # the TCP handshake

    def client(self):
        self.waiting = True

    def server(self):
        if self.waiting:
            self.waiting = False
            self.counter["round_trips"] += 1


async def _pump(reader, writer, delay, first_due, loop, seen=None):
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
            if data and seen is not None:
                seen()
            queue.put_nowait((max(now, first_due) + delay, data or None))
            if not data:
                break
        await sender
    finally:
        sender.cancel()


async def _handle(client_reader, client_writer, upstream_port, rtt, counter):
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, upstream_port)
    except OSError:
        client_writer.close()
        return
    half = rtt / 2.0
    turns = Turns(counter)
    try:
        await asyncio.gather(
            # The client's first bytes could only leave after the TCP handshake (one round trip).
            _pump(client_reader, upstream_writer, half, accepted + rtt, loop, turns.client),
            _pump(upstream_reader, client_writer, half, accepted, loop, turns.server),
        )
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()


def _new_counters(pairs):
    return {str(listen): {"connections": 0, "round_trips": 0} for listen, _upstream in pairs}


def _dump(counters, path):
    """Write the counts to ``path`` (atomically) and start counting afresh."""
    data = {port: dict(values) for port, values in counters.items()}
    for values in counters.values():
        values.update(connections=0, round_trips=0)
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


async def serve(pairs, rtt, stats_file=None):
    servers = []
    counters = _new_counters(pairs)
    for listen_port, upstream_port in pairs:

        def handler(reader, writer, upstream_port=upstream_port, counter=counters[str(listen_port)]):
            return _handle(reader, writer, upstream_port, rtt, counter)

        servers.append(await asyncio.start_server(handler, HOST, listen_port, backlog=1024, reuse_address=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if stats_file:
        loop.add_signal_handler(signal.SIGUSR1, _dump, counters, stats_file)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
        await server.wait_closed()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time to add (default 40)")
    parser.add_argument("--stats-file", help="where SIGUSR1 writes the connection and round-trip counts")
    parser.add_argument("pairs", nargs="+", metavar="LISTEN:UPSTREAM", help="ports on 127.0.0.1")
    args = parser.parse_args(argv)
    pairs = []
    for pair in args.pairs:
        listen, upstream = pair.split(":")
        pairs.append((int(listen), int(upstream)))
    asyncio.run(serve(pairs, args.rtt_ms / 1000.0, args.stats_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
