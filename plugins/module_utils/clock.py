# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure how far this host's clock is from network time: an SNTP client and an HTTP ``Date`` check.

Why it matters: NuPoint signs every OAuth JWT with this host's clock (``iat`` = now, ``exp`` = now +
1 h). Google refuses a JWT whose times are off ("Invalid JWT: Token must be a short-lived token (60
minutes) and in a reasonable timeframe"), so configuring NTP is not enough: the offset is measured.

SNTP follows RFC 4330 (with the RFC 5905 notions of root distance and kiss codes): each server gets
several samples on fresh sockets, the server's offset is the median of its good samples, and a
server is refused when it is unsynchronised (leap indicator 3, stratum 16), sends a kiss-of-death
(stratum 0 with a code such as ``RATE``, ``DENY`` or ``RSTR``; the server is not asked again), or
its root distance says its own time is too uncertain. Network faults never escape as tracebacks:
each server gets a result dict with a ``status`` (``ok``, ``dns``, ``connect``, ``timeout``,
``bad_reply``, ``kiss_of_death``, ``unsynchronized``) and a message; only when no server gives usable
time does :func:`measure_ntp` raise :class:`ClockError`.

Offsets are *server minus local*: positive means this host's clock is behind.

Runs on MSL: standard library only, Python 3.6 compatible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import re
import socket
import ssl
import struct
import threading
import time

from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import (
    http_client,
    http_date_epoch,
    raise_from,
    urlsplit,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic as _monotonic

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: F401  # novermin

    Clock = Callable[[], float]  # a type alias for the type comments
except ImportError:  # pragma: no cover
    pass

NTP_PORT = 123
# Seconds from the NTP era 0 epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_DELTA = 2208988800
# LI VN Mode | stratum | poll | precision | root delay | root dispersion | reference ID | 4 timestamps
PACKET = struct.Struct("!BBbbII4sQQQQ")
MODE_CLIENT = 3
MODE_SERVER = 4
NTP_VERSION = 4
LEAP_UNSYNCHRONIZED = 3
STRATUM_KISS = 0
STRATUM_UNSYNCHRONIZED = 16
# RFC 5905 MAXDIST: a server whose root distance exceeds this is not fit to synchronise to.
MAX_ROOT_DISTANCE = 1.5

# Kiss codes of RFC 5905 section 7.4 that a client may meet.
KISS_CODES = {
    "ACST": "the association belongs to an anycast server",
    "AUTH": "server authentication failed",
    "AUTO": "autokey sequence failed",
    "BCST": "the association belongs to a broadcast server",
    "CRYP": "cryptographic authentication or identification failed",
    "DENY": "access denied by the server's access control",
    "DROP": "lost peer in symmetric mode",
    "RSTR": "access denied due to the server's local access policy",
    "INIT": "the association has not yet synchronized for the first time",
    "MCST": "the association belongs to a dynamically discovered server",
    "NKEY": "no key found",
    "RATE": "rate exceeded: the server asks this client to query less often",
    "RMOT": "alteration of association from a remote host running ntpdc",
    "STEP": "a step change in system time has occurred, the association has not yet resynchronized",
}

# What MSL's Server Manager accepts as an NTP server (Date and Time panel).
SERVER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9.-]+$")


class ClockError(Exception):
    """The offset could not be measured; ``msg`` says why, ``reason`` classifies it."""

    def __init__(self, msg, reason="other", servers=None):  # type: (str, str, Optional[List[Dict[str, Any]]]) -> None
        super(ClockError, self).__init__(msg)
        self.msg = msg
        self.reason = reason
        # Per-server results when the measurement failed as a whole (every server reported).
        self.servers = servers or []


class SntpError(ClockError):
    """One SNTP exchange failed; ``reason`` is a server status (``timeout``, ``kiss_of_death``, ...)."""


def check_server_name(name):  # type: (str) -> str
    """``name`` when it is a host name or address MSL's panel would accept, else ClockError."""
    if not isinstance(name, string_types) or not SERVER_NAME_PATTERN.match(name):
        raise ClockError(
            "Invalid NTP server %r: use a host name or IPv4 address made of letters, digits, dots and "
            "hyphens (what the MSL Server Manager accepts; no ports, spaces, URLs or brackets)." % (name,),
            "invalid_server",
        )
    return name


# --- packets -----------------------------------------------------------------------------------


def unix_to_ntp(unix_time):  # type: (float) -> int
    """A Unix time as a 64-bit NTP timestamp (era 0, 32.32 fixed point)."""
    return int((unix_time + NTP_UNIX_DELTA) * 2**32) & 0xFFFFFFFFFFFFFFFF


def ntp_to_unix(timestamp):  # type: (int) -> float
    return timestamp / 2**32 - NTP_UNIX_DELTA


def short_to_seconds(value):  # type: (int) -> float
    """An NTP short format (16.16 fixed point, unsigned) as seconds."""
    return value / 2**16


def build_request(transmit_timestamp):  # type: (int) -> bytes
    """A client request (RFC 4330 section 5): version 4, mode 3, our transmit timestamp, all else zero.

    The server copies the transmit timestamp into its reply's originate field, which is how a reply
    is matched to its request.
    """
    return PACKET.pack(
        (0 << 6) | (NTP_VERSION << 3) | MODE_CLIENT, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit_timestamp
    )


def new_transmit_timestamp(unix_time):  # type: (float) -> int
    """Our transmit timestamp with random low-order bits (sub-millisecond) that make replies hard to forge."""
    return (unix_to_ntp(unix_time) & ~0xFFFF) | random.getrandbits(16)  # a nonce, not a secret


def reference_id_text(stratum, raw):  # type: (int, bytes) -> str
    """The reference ID as people read it: a code for stratum 0/1, an IPv4 address above."""
    if stratum <= 1:
        return raw.rstrip(b"\0").decode("ascii", "replace")
    return ".".join(str(octet) for octet in bytearray(raw))


class SntpSample:
    """One good server reply, with the four timestamps already reduced to offset and delay."""

    def __init__(
        self,
        offset,
        delay,
        stratum,
        leap,
        version,
        root_delay,
        root_dispersion,
        reference_id,
    ):  # type: (float, float, int, int, int, float, float, str) -> None
        self.offset = offset
        self.delay = delay
        self.stratum = stratum
        self.leap = leap
        self.version = version
        self.root_delay = root_delay
        self.root_dispersion = root_dispersion
        self.reference_id = reference_id

    @property
    def root_distance(self):  # type: () -> float
        """Bound on this sample's error against the primary reference (RFC 5905 section 11.2, simplified)."""
        return (self.root_delay + self.delay) / 2 + self.root_dispersion

    def __repr__(self):  # type: () -> str
        return "SntpSample(offset=%r, delay=%r, stratum=%r)" % (self.offset, self.delay, self.stratum)


def parse_reply(data, origin, sent, received):  # type: (bytes, int, float, float) -> SntpSample
    """Check a server reply against RFC 4330 section 5 and turn it into a sample.

    ``origin`` is the transmit timestamp of our request; ``sent`` and ``received`` are the local Unix
    times (T1, T4) of sending the request and receiving this reply.
    """
    if len(data) < PACKET.size:
        raise SntpError("short reply (%d bytes, an NTP packet has at least %d)" % (len(data), PACKET.size), "bad_reply")
    (first, stratum, _poll, _precision, root_delay, root_dispersion, ref_raw, _ref_ts, orig_ts, recv_ts, xmit_ts) = (
        PACKET.unpack_from(data)
    )
    leap, version, mode = first >> 6, (first >> 3) & 0x7, first & 0x7
    if mode != MODE_SERVER:
        raise SntpError("reply has mode %d, expected %d (server)" % (mode, MODE_SERVER), "bad_reply")
    if not 1 <= version <= 4:
        raise SntpError("reply has NTP version %d" % version, "bad_reply")
    if orig_ts != origin:
        # Checked before the kiss code: anyone can send a kiss-of-death, only the server knows our nonce.
        raise SntpError("reply does not answer our request (originate timestamp mismatch)", "bad_reply")
    if stratum == STRATUM_KISS:
        code = reference_id_text(0, ref_raw)
        meaning = KISS_CODES.get(code, "unknown kiss code")
        raise SntpError(
            "kiss-of-death %s (%s); not asking this server again" % (code or "(empty)", meaning), "kiss_of_death"
        )
    if leap == LEAP_UNSYNCHRONIZED or stratum >= STRATUM_UNSYNCHRONIZED:
        raise SntpError(
            "the server says it is not synchronized itself (leap indicator %d, stratum %d)" % (leap, stratum),
            "unsynchronized",
        )
    if xmit_ts == 0:
        raise SntpError("reply has no transmit timestamp", "bad_reply")
    t2, t3 = ntp_to_unix(recv_ts), ntp_to_unix(xmit_ts)
    offset = ((t2 - sent) + (t3 - received)) / 2
    # Never below zero: the server's own processing time can exceed a loopback round trip by jitter.
    delay = max(0.0, (received - sent) - (t3 - t2))
    return SntpSample(
        offset=offset,
        delay=delay,
        stratum=stratum,
        leap=leap,
        version=version,
        root_delay=short_to_seconds(root_delay),
        root_dispersion=short_to_seconds(root_dispersion),
        reference_id=reference_id_text(stratum, ref_raw),
    )


# --- talking to servers ------------------------------------------------------------------------


def resolve(host, port):  # type: (str, int) -> Tuple[int, Tuple[Any, ...]]
    """(address family, socket address) of ``host``; SntpError ``dns`` when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except (socket.gaierror, UnicodeError) as exc:
        raise_from(SntpError("cannot resolve %s: %s" % (host, getattr(exc, "strerror", None) or exc), "dns"), None)
    if not infos:
        raise SntpError("cannot resolve %s: no addresses" % host, "dns")
    family, _type, _proto, _name, address = infos[0]
    return family, address


def query_once(family, address, timeout, clock=time.time, monotonic=_monotonic):  # type: (int, Tuple[Any, ...], float, Clock, Clock) -> SntpSample
    """One request/reply on a fresh socket (a late reply to an earlier request cannot be mistaken for this one)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        # A connected UDP socket reports ICMP port-unreachable as ConnectionRefusedError at once.
        sock.connect(address)
        sent = clock()
        started = monotonic()
        origin = new_transmit_timestamp(sent)
        sock.send(build_request(origin))
        deadline = started + timeout
        while True:
            data = sock.recv(1024)
            elapsed = monotonic() - started
            try:
                # T4 from the monotonic clock, so a clock step during the exchange cannot skew the delay.
                return parse_reply(data, origin, sent, sent + elapsed)
            except SntpError as exc:
                if exc.reason != "bad_reply" or "originate" not in exc.msg:
                    raise
                # Somebody else's packet: keep listening for ours until the deadline.
                remaining = deadline - monotonic()
                if remaining <= 0:
                    raise
                sock.settimeout(remaining)
    except socket.timeout:
        raise_from(SntpError("no reply within %g s" % timeout, "timeout"), None)
    except (IOError, OSError) as exc:
        raise_from(SntpError("%s" % (exc.strerror or exc), "connect"), None)
    finally:
        sock.close()


def median(values):  # type: (List[float]) -> float
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _server_result(server, port):  # type: (str, int) -> Dict[str, Any]
    return {
        "server": server,
        "port": port,
        "address": None,
        "status": None,
        "msg": "",
        "offset_seconds": None,
        "delay_seconds": None,
        "root_delay_seconds": None,
        "root_dispersion_seconds": None,
        "root_distance_seconds": None,
        "stratum": None,
        "leap": None,
        "reference_id": None,
        "samples_sent": 0,
        "samples_ok": 0,
    }


def query_server(
    server,
    port=NTP_PORT,
    samples=4,
    timeout=2.0,
    interval=2.0,
    max_root_distance=MAX_ROOT_DISTANCE,
    clock=time.time,
    monotonic=_monotonic,
    sleep=time.sleep,
):  # type: (str, int, int, float, float, float, Clock, Clock, Callable[[float], None]) -> Dict[str, Any]
    """Ask ``server`` up to ``samples`` times; a result dict, never an exception for network faults.

    The offset is the median of the good samples; delay, stratum and root figures come from the
    sample with the shortest round trip (the most trustworthy one). ``interval`` seconds separate
    requests: public servers answer faster queries with a ``RATE`` kiss-of-death.
    """
    result = _server_result(server, port)
    try:
        family, address = resolve(server, port)
    except SntpError as exc:
        result.update(status=exc.reason, msg=exc.msg)
        return result
    result["address"] = address[0]
    good = []  # type: List[SntpSample]
    errors = []  # type: List[SntpError]
    for attempt in range(samples):
        if attempt:
            sleep(interval)
        result["samples_sent"] += 1
        try:
            good.append(query_once(family, address, timeout, clock, monotonic))
        except SntpError as exc:
            errors.append(exc)
            # The server said no, or nothing listens: more requests will not change that.
            if exc.reason in ("kiss_of_death", "unsynchronized", "connect"):
                break
    if not good or (errors and errors[-1].reason == "kiss_of_death"):
        last = errors[-1]
        tries = result["samples_sent"]
        result.update(
            status=last.reason, msg="%s: %s (%d request%s)" % (server, last.msg, tries, "" if tries == 1 else "s")
        )
        return result
    best = min(good, key=lambda sample: sample.delay)
    offset = round(median([sample.offset for sample in good]), 6)
    result.update(
        offset_seconds=offset,
        delay_seconds=round(best.delay, 6),
        root_delay_seconds=round(best.root_delay, 6),
        root_dispersion_seconds=round(best.root_dispersion, 6),
        root_distance_seconds=round(best.root_distance, 6),
        stratum=best.stratum,
        leap=best.leap,
        reference_id=best.reference_id,
        samples_ok=len(good),
    )
    if best.root_distance > max_root_distance:
        result.update(
            status="unsynchronized",
            msg="%s: root distance %.3f s exceeds %.3f s, its own time is too uncertain to trust"
            % (server, best.root_distance, max_root_distance),
        )
        return result
    lost = result["samples_sent"] - len(good)
    result.update(
        status="ok",
        msg="%s: offset %+.3f s (median of %d sample%s%s), stratum %d"
        % (
            server,
            offset,
            len(good),
            "" if len(good) == 1 else "s",
            ", %d lost" % lost if lost else "",
            best.stratum,
        ),
    )
    return result


def measure_ntp(
    servers,
    port=NTP_PORT,
    samples=4,
    timeout=2.0,
    interval=2.0,
    max_root_distance=MAX_ROOT_DISTANCE,
    query=None,
):  # type: (List[str], int, int, float, float, float, Optional[Callable[..., Dict[str, Any]]]) -> Dict[str, Any]
    """Query every server (in parallel) and combine what the usable ones say.

    Returns ``offset_seconds`` (median over the usable servers, so one wrong server among three is
    outvoted), ``spread_seconds`` (largest minus smallest usable offset), ``selected_server`` (the
    usable server closest to that median; a step is taken against it) and ``servers`` (one result per
    server, in the order given). Raises ClockError ``no_server`` when no server gives usable time.
    """
    if not servers:
        raise ClockError("No NTP server to measure against.", "no_server")
    query = query or query_server
    results = [None] * len(servers)  # type: List[Optional[Dict[str, Any]]]

    def worker(index, server):  # type: (int, str) -> None
        try:
            results[index] = query(server, port, samples, timeout, interval, max_root_distance)
        except Exception as exc:  # noqa: BLE001 - a bug in one query must still leave a result
            failed = _server_result(server, port)
            failed.update(status="error", msg="%s: %s" % (server, exc))
            results[index] = failed

    threads = [threading.Thread(target=worker, args=(index, server)) for index, server in enumerate(servers)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()
    done = [result for result in results if result is not None]  # type: List[Dict[str, Any]]
    usable = [result for result in done if result["status"] == "ok"]
    if not usable:
        raise ClockError(
            "No NTP server gave usable time, so the clock offset is unknown: %s." % "; ".join(r["msg"] for r in done),
            "no_server",
            done,
        )
    offsets = [result["offset_seconds"] for result in usable]
    offset = median(offsets)
    # Closest to the median; on a (millisecond) tie the earlier server in the list, i.e. the one MSL stores.
    selected = min(usable, key=lambda result: round(abs(result["offset_seconds"] - offset), 3))
    return {
        "offset_seconds": round(offset, 6),
        "spread_seconds": round(max(offsets) - min(offsets), 6),
        "selected_server": selected["server"],
        "servers": done,
    }


# --- HTTP Date ---------------------------------------------------------------------------------


def parse_http_date(value):  # type: (Optional[str]) -> Optional[float]
    """Unix time of an HTTP date (a ``Date`` or ``Retry-After`` header); None when absent or unusable.

    HTTP dates are UTC (RFC 9110), so a date without a zone (or with ``-0000``) is read as UTC, not as
    this host's local time.
    """
    if not value:
        return None
    try:
        return http_date_epoch(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def date_header_offset(date_header, sent_at, received_at):  # type: (Optional[str], float, float) -> Optional[float]
    """Seconds the server's clock is ahead of ours (negative: behind), from its ``Date`` header; None when unusable.

    ``sent_at`` / ``received_at``: this host's time when the request was sent and the answer arrived.
    The server stamped some instant of the second [Date, Date+1) while the request was in flight, so
    its time at the midpoint of the exchange is taken as ``Date`` + 0.5 s; the error is at most half a
    second plus half the round trip (GAM uses the same method).
    """
    server_time = parse_http_date(date_header)
    if server_time is None:
        return None
    return server_time + 0.5 - (sent_at + received_at) / 2.0


def http_date_offset(
    url,
    ca_path=None,
    timeout=10.0,
    clock=time.time,
    monotonic=_monotonic,
):  # type: (str, Optional[str], float, Clock, Clock) -> Dict[str, Any]
    """Offset against the ``Date`` header of an HTTP(S) server: a second opinion, e.g. Google's own clock.

    ``Date`` has one-second resolution, so the estimate assumes the middle of that second and the
    round trip; ``uncertainty_seconds`` bounds the error. Network faults give a result with a
    ``status`` of ``dns``, ``connect``, ``tls``, ``timeout`` or ``bad_reply``, never an exception.
    """
    result = {
        "url": url,
        "status": None,
        "msg": "",
        "offset_seconds": None,
        "uncertainty_seconds": None,
        "date": None,
        "http_status": None,
    }  # type: Dict[str, Any]
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        result.update(status="bad_url", msg="%s is not an http(s) URL" % url)
        return result
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        port = parts.port
    except ValueError:
        result.update(status="bad_url", msg="%s has an invalid port" % url)
        return result
    connection = None  # type: http_client.HTTPConnection
    if parts.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=ca_path or None)
        except (IOError, OSError, ssl.SSLError) as exc:
            result.update(status="tls", msg="cannot load the CA file %s: %s" % (ca_path, exc))
            return result
        connection = http_client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=context)
    else:
        connection = http_client.HTTPConnection(parts.hostname, port, timeout=timeout)
    try:
        # Connect (and handshake) first, so only the request itself is inside the timed window.
        connection.connect()
        sent = clock()
        started = monotonic()
        connection.request("HEAD", path, headers={"User-Agent": "nupoint.gworkspace-clock"})
        response = connection.getresponse()
        elapsed = monotonic() - started
        response.read()
        header = response.getheader("Date")
        result["http_status"] = response.status
    except socket.gaierror as exc:
        result.update(status="dns", msg="cannot resolve %s: %s" % (parts.hostname, exc.strerror or exc))
        return result
    except (ssl.SSLError, ssl.CertificateError) as exc:
        result.update(status="tls", msg="TLS with %s failed: %s" % (parts.netloc, exc))
        return result
    except socket.timeout:
        result.update(status="timeout", msg="%s did not answer within %g s" % (url, timeout))
        return result
    except (IOError, OSError) as exc:
        result.update(status="connect", msg="cannot connect to %s: %s" % (parts.netloc, exc.strerror or exc))
        return result
    except http_client.HTTPException as exc:
        result.update(status="bad_reply", msg="bad HTTP reply from %s: %r" % (url, exc))
        return result
    finally:
        connection.close()
    offset = date_header_offset(header, sent, sent + elapsed)
    if offset is None:
        result.update(status="bad_reply", msg="%s sent no usable Date header (%r)" % (url, header))
        return result
    uncertainty = 0.5 + elapsed / 2
    result.update(
        status="ok",
        date=header,
        offset_seconds=round(offset, 3),
        uncertainty_seconds=round(uncertainty, 3),
        msg="%s: offset %+.1f s (+/- %.1f s) from its Date header" % (url, offset, uncertainty),
    )
    return result
