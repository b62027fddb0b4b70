"""A scriptable SNTP server on a loopback UDP port, for unit tests of the clock code.

Each request is answered according to ``behaviour`` (a dict, or a list of dicts used in turn, the
last one repeating): ``offset`` seconds added to our clock, ``stratum``, ``leap``, ``kiss`` (a kiss
code: stratum 0 with that reference ID), ``mode``, ``version``, ``root_delay`` and
``root_dispersion`` in seconds, ``drop`` (no answer), ``short`` (a truncated packet),
``wrong_origin`` (answers with a different originate timestamp), ``zero_transmit``, and
``spoof_first`` (send a packet with a wrong originate timestamp before the real answer).
"""

import socket
import struct
import threading
import time
from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import PACKET, unix_to_ntp


def reply_packet(request: bytes, received: float, behaviour: dict[str, Any]) -> bytes:
    origin = struct.unpack_from("!Q", request, 40)[0]
    if behaviour.get("wrong_origin"):
        origin ^= 0xFFFF0000
    offset = behaviour.get("offset", 0.0)
    stratum = behaviour.get("stratum", 2)
    ref = behaviour.get("ref", b"\x7f\x00\x00\x01")
    if "kiss" in behaviour:
        stratum, ref = 0, behaviour["kiss"].encode("ascii").ljust(4, b"\0")
    now = time.time() + offset
    first = (behaviour.get("leap", 0) << 6) | (behaviour.get("version", 4) << 3) | behaviour.get("mode", 4)
    return PACKET.pack(
        first,
        stratum,
        4,
        -20,
        int(behaviour.get("root_delay", 0.01) * 2**16),
        int(behaviour.get("root_dispersion", 0.01) * 2**16),
        ref,
        unix_to_ntp(now - 10),
        origin,
        unix_to_ntp(received + offset),
        0 if behaviour.get("zero_transmit") else unix_to_ntp(now),
    )


class SntpResponder:
    """Context manager: ``with SntpResponder({"offset": 120}) as server: server.port``."""

    def __init__(
        self, behaviour: dict[str, Any] | list[dict[str, Any]] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.behaviours = behaviour if isinstance(behaviour, list) else [behaviour or {}]
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Any 127/8 address is loopback on Linux: two responders on one port stand for two servers.
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                request, peer = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            received = time.time()
            index = len(self.requests)
            self.requests.append(request)
            behaviour = self.behaviours[min(index, len(self.behaviours) - 1)]
            if behaviour.get("drop"):
                continue
            if behaviour.get("spoof_first"):
                self.sock.sendto(reply_packet(request, received, dict(behaviour, wrong_origin=True)), peer)
            packet = reply_packet(request, received, behaviour)
            if behaviour.get("short"):
                packet = packet[:40]
            self.sock.sendto(packet, peer)

    def __enter__(self) -> "SntpResponder":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def unused_udp_port() -> int:
    """A loopback UDP port nothing listens on (ICMP port unreachable -> connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
