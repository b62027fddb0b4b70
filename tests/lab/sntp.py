"""A tiny SNTP server whose clock is off by a settable offset, plus an SNTP client.

Run as ``python -m tests.lab.sntp --port P --offset-file F``. It answers SNTP v1-v4 client
requests (mode 3) with server mode 4 and ``time.time() + offset``. The offset (seconds, float)
is read from ``F`` on every request, so ``python -m tests.lab skew SECONDS`` (which rewrites
``F`` atomically) takes effect on the very next query; a missing or unreadable file means 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

NTP_EPOCH_DELTA = 2208988800  # seconds from 1900-01-01 to 1970-01-01
PACKET = struct.Struct("!BBbbII4sQQQQ")
MODE_CLIENT = 3
MODE_SERVER = 4
LEAP_UNSYNCHRONISED = 3


def to_ntp(unix_time: float) -> int:
    return int((unix_time + NTP_EPOCH_DELTA) * 2**32) & 0xFFFFFFFFFFFFFFFF


def from_ntp(value: int) -> float:
    return value / 2**32 - NTP_EPOCH_DELTA


def read_offset(path: Path) -> float:
    try:
        return float(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def write_offset(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{seconds!r}\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def answer(request: bytes, offset: float, received: float) -> bytes | None:
    """The server reply to one request, or None for anything that is not an SNTP client query."""
    if len(request) < PACKET.size:
        return None
    first = request[0]
    version, mode = (first >> 3) & 0x7, first & 0x7
    if mode != MODE_CLIENT or not 1 <= version <= 4:
        return None
    fields = PACKET.unpack_from(request)
    poll, client_transmit = fields[2], fields[10]
    now = time.time() + offset
    return PACKET.pack(
        (0 << 6) | (version << 3) | MODE_SERVER,
        1,  # stratum 1: a primary reference, as far as the client can tell
        poll,
        -20,
        0,
        int(0.001 * 2**16),
        b"LAB\0",
        to_ntp(now - 1),
        client_transmit,
        to_ntp(received + offset),
        to_ntp(now),
    )


def serve(host: str, port: int, offset_file: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        while True:
            request, peer = sock.recvfrom(1024)
            received = time.time()
            reply = answer(request, read_offset(offset_file), received)
            if reply is not None:
                sock.sendto(reply, peer)


@dataclass(frozen=True)
class SntpResult:
    offset: float  # server clock minus ours, seconds
    delay: float
    stratum: int
    leap: int
    version: int
    mode: int
    ref_id: bytes


def query(host: str, port: int, timeout: float = 1.0, version: int = 4) -> SntpResult:
    """One SNTP exchange (RFC 4330); raises OSError/TimeoutError or ValueError on a bad reply."""
    request = bytearray(PACKET.size)
    request[0] = (version << 3) | MODE_CLIENT
    sent = time.time()
    transmit = to_ntp(sent)
    struct.pack_into("!Q", request, 40, transmit)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(bytes(request), (host, port))
        data = sock.recvfrom(1024)[0]
    received = time.time()
    if len(data) < PACKET.size:
        raise ValueError(f"short SNTP reply ({len(data)} bytes)")
    fields = PACKET.unpack_from(data)
    first, stratum = fields[0], fields[1]
    if fields[8] != transmit:
        raise ValueError("SNTP reply does not answer our request (originate timestamp mismatch)")
    t2, t3 = from_ntp(fields[9]), from_ntp(fields[10])
    return SntpResult(
        offset=((t2 - sent) + (t3 - received)) / 2,
        delay=(received - sent) - (t3 - t2),
        stratum=stratum,
        leap=first >> 6,
        version=(first >> 3) & 0x7,
        mode=first & 0x7,
        ref_id=fields[6],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--offset-file", type=Path, required=True)
    args = parser.parse_args()
    serve(args.host, args.port, args.offset_file)


if __name__ == "__main__":
    main()
