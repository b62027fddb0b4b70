"""module_utils/clock: SNTP packets, per-server measurement, HTTP Date offset."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct
import threading
import time

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import clock
from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import (
    PACKET,
    ClockError,
    SntpError,
    build_request,
    check_server_name,
    http_date_offset,
    measure_ntp,
    parse_reply,
    query_server,
    unix_to_ntp,
)
from tests.unit import http_date_server as http_date
from tests.unit.sntp_responder import SntpResponder, unused_udp_port

ORIGIN = unix_to_ntp(1_700_000_000.25)
FAST = {"samples": 1, "timeout": 0.5, "interval": 0}


@pytest.fixture
def http_date_server(tmp_path):
    yield from http_date.serving(tmp_path)


def reply(
    first: int = (0 << 6) | (4 << 3) | 4,
    stratum: int = 2,
    root_delay: float = 0.0,
    root_dispersion: float = 0.0,
    ref: bytes = b"\xc0\x00\x02\x01",
    origin: int = ORIGIN,
    receive: float = 1100.5,
    transmit: float = 1100.6,
) -> bytes:
    return PACKET.pack(
        first,
        stratum,
        6,
        -20,
        int(root_delay * 2**16),
        int(root_dispersion * 2**16),
        ref,
        unix_to_ntp(receive - 30),
        origin,
        unix_to_ntp(receive),
        unix_to_ntp(transmit) if transmit else 0,
    )


# --- packets -------------------------------------------------------------------------------------


def test_request_is_a_version_4_client_packet_carrying_our_timestamp():
    packet = build_request(ORIGIN)
    assert len(packet) == 48
    assert packet[0] == 0b00_100_011  # LI 0, version 4, mode 3
    assert packet[1:40] == bytes(39)
    assert struct.unpack("!Q", packet[40:])[0] == ORIGIN


def test_transmit_timestamp_is_time_with_random_low_bits():
    stamps = {clock.new_transmit_timestamp(1000.0) for attempt in range(20)}
    assert len(stamps) > 1
    for stamp in stamps:
        assert abs(clock.ntp_to_unix(stamp) - 1000.0) < 0.001


def test_offset_and_delay_from_the_four_timestamps():
    # T1 = 1000.0, T2 = 1100.5, T3 = 1100.6, T4 = 1000.3
    sample = parse_reply(reply(root_delay=0.02, root_dispersion=0.005), ORIGIN, 1000.0, 1000.3)
    assert sample.offset == pytest.approx(100.4, abs=1e-6)
    assert sample.delay == pytest.approx(0.2, abs=1e-6)
    assert sample.stratum == 2
    assert sample.reference_id == "192.0.2.1"
    assert sample.root_delay == pytest.approx(0.02, abs=1e-4)
    assert sample.root_dispersion == pytest.approx(0.005, abs=1e-4)
    assert sample.root_distance == pytest.approx((0.02 + 0.2) / 2 + 0.005, abs=1e-4)


def test_negative_delay_from_jitter_is_clamped():
    sample = parse_reply(reply(receive=1100.0, transmit=1100.5), ORIGIN, 1000.0, 1000.1)
    assert sample.delay == 0.0


def test_stratum_one_reference_is_a_code():
    sample = parse_reply(reply(stratum=1, ref=b"GPS\0"), ORIGIN, 1000.0, 1000.3)
    assert sample.reference_id == "GPS"


@pytest.mark.parametrize(
    ("data", "reason", "text"),
    [
        pytest.param(reply()[:47], "bad_reply", "short reply (47 bytes", id="short"),
        pytest.param(b"", "bad_reply", "short reply (0 bytes", id="empty"),
        pytest.param(reply(first=(4 << 3) | 3), "bad_reply", "mode 3", id="client-mode"),
        pytest.param(reply(first=(4 << 3) | 5), "bad_reply", "mode 5", id="broadcast-mode"),
        pytest.param(reply(first=(0 << 3) | 4), "bad_reply", "version 0", id="version-0"),
        pytest.param(reply(first=(5 << 3) | 4), "bad_reply", "version 5", id="version-5"),
        pytest.param(reply(origin=ORIGIN + 1), "bad_reply", "originate timestamp mismatch", id="origin"),
        pytest.param(reply(transmit=0), "bad_reply", "no transmit timestamp", id="zero-transmit"),
        pytest.param(reply(first=(3 << 6) | (4 << 3) | 4), "unsynchronized", "leap indicator 3", id="leap-3"),
        pytest.param(reply(stratum=16), "unsynchronized", "stratum 16", id="stratum-16"),
        pytest.param(reply(stratum=0, ref=b"RATE"), "kiss_of_death", "kiss-of-death RATE (rate exceeded", id="rate"),
        pytest.param(reply(stratum=0, ref=b"DENY"), "kiss_of_death", "kiss-of-death DENY (access denied", id="deny"),
        pytest.param(reply(stratum=0, ref=b"RSTR"), "kiss_of_death", "kiss-of-death RSTR", id="rstr"),
        pytest.param(reply(stratum=0, ref=b"XYZW"), "kiss_of_death", "XYZW (unknown kiss code)", id="unknown-kiss"),
        pytest.param(reply(stratum=0, ref=b"\0\0\0\0"), "kiss_of_death", "kiss-of-death (empty)", id="stratum-0"),
    ],
)
def test_refused_replies(data, reason, text):
    with pytest.raises(SntpError) as caught:
        parse_reply(data, ORIGIN, 1000.0, 1000.3)
    assert caught.value.reason == reason
    assert text in caught.value.msg


def test_a_forged_kiss_of_death_is_not_believed():
    """Only the real server knows our transmit timestamp; a kiss with the wrong one is just a bad packet."""
    with pytest.raises(SntpError) as caught:
        parse_reply(reply(stratum=0, ref=b"DENY", origin=ORIGIN ^ 1), ORIGIN, 1000.0, 1000.3)
    assert caught.value.reason == "bad_reply"


@pytest.mark.parametrize("name", ["pool.ntp.org", "0.centos.pool.ntp.org", "192.0.2.10", "ntp-1", "TIME.EXAMPLE"])
def test_server_names_msl_accepts(name):
    assert check_server_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "ntp.example.com:123", "ntp example", "https://time.google.com", "[::1]", "ntp;reboot", "tïme.de"]
)
def test_server_names_msl_refuses(name):
    with pytest.raises(ClockError) as caught:
        check_server_name(name)
    assert caught.value.reason == "invalid_server"
    assert "letters, digits, dots and hyphens" in caught.value.msg


# --- one server ----------------------------------------------------------------------------------


def test_median_of_several_samples():
    behaviour = [{"offset": 10.0}, {"offset": 10.2}, {"offset": 55.0}, {"offset": 10.1}, {"offset": 9.0}]
    with SntpResponder(behaviour) as server:
        result = query_server("127.0.0.1", server.port, samples=5, timeout=0.5, interval=0)
    assert result["status"] == "ok"
    assert result["offset_seconds"] == pytest.approx(10.1, abs=0.02)
    assert result["samples_sent"] == result["samples_ok"] == 5
    assert len(server.requests) == 5
    assert "median of 5 samples" in result["msg"]


def test_lost_samples_are_tolerated_and_counted():
    with SntpResponder([{"drop": True}, {"short": True}, {"offset": 1.5}]) as server:
        result = query_server("127.0.0.1", server.port, samples=3, timeout=0.2, interval=0)
    assert result["status"] == "ok"
    assert result["samples_ok"] == 1
    assert result["offset_seconds"] == pytest.approx(1.5, abs=0.05)
    assert "2 lost" in result["msg"]


def test_a_spoofed_packet_before_the_answer_is_skipped():
    with SntpResponder({"spoof_first": True, "offset": 3}) as server:
        result = query_server("127.0.0.1", server.port, **FAST)
    assert result["status"] == "ok"
    assert result["offset_seconds"] == pytest.approx(3, abs=0.05)


def test_silent_server_times_out_after_every_sample():
    with SntpResponder({"drop": True}) as server:
        result = query_server("127.0.0.1", server.port, samples=3, timeout=0.1, interval=0)
    assert result["status"] == "timeout"
    assert result["samples_sent"] == 3
    assert result["offset_seconds"] is None
    assert "no reply within 0.1 s (3 requests)" in result["msg"]


def test_kiss_of_death_stops_the_queries():
    with SntpResponder({"kiss": "RATE"}) as server:
        result = query_server("127.0.0.1", server.port, samples=4, timeout=0.5, interval=0)
    assert result["status"] == "kiss_of_death"
    assert len(server.requests) == 1
    assert "RATE" in result["msg"]


def test_kiss_of_death_after_good_samples_still_refuses_the_server():
    with SntpResponder([{"offset": 0}, {"kiss": "DENY"}]) as server:
        result = query_server("127.0.0.1", server.port, samples=4, timeout=0.5, interval=0)
    assert result["status"] == "kiss_of_death"
    assert len(server.requests) == 2


@pytest.mark.parametrize("behaviour", [{"leap": 3}, {"stratum": 16}], ids=["leap-3", "stratum-16"])
def test_unsynchronized_server(behaviour):
    with SntpResponder(behaviour) as server:
        result = query_server("127.0.0.1", server.port, samples=4, timeout=0.5, interval=0)
    assert result["status"] == "unsynchronized"
    assert len(server.requests) == 1


def test_too_large_root_distance_is_unsynchronized():
    with SntpResponder({"root_delay": 2.0, "root_dispersion": 0.6}) as server:
        result = query_server("127.0.0.1", server.port, **FAST)
    assert result["status"] == "unsynchronized"
    assert "exceeds 1.500 s" in result["msg"]
    # 1.6 s from the server, plus half the measured round trip (shorter than the 0.5 s timeout).
    assert 1.59 < result["root_distance_seconds"] < 1.85


def test_nothing_listening_is_connect_at_once():
    # "connect" rather than "timeout", after one request: the refusal ended the wait and the queries.
    result = query_server("127.0.0.1", unused_udp_port(), samples=4, timeout=2, interval=0)
    assert result["status"] == "connect"
    assert result["samples_sent"] == 1


def test_unresolvable_name_is_dns(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    result = query_server("ntp.invalid", **FAST)
    assert result["status"] == "dns"
    assert result["samples_sent"] == 0
    assert result["msg"] == "cannot resolve ntp.invalid: Name or service not known"


def test_interval_separates_requests():
    slept = []
    with SntpResponder() as server:
        query_server("127.0.0.1", server.port, samples=3, timeout=0.5, interval=2.0, sleep=slept.append)
    assert slept == [2.0, 2.0]


# --- several servers -----------------------------------------------------------------------------


def fake_query(results):
    def query(server, *args):
        return dict(clock._server_result(server, 123), **results[server])

    return query


def test_median_over_servers_outvotes_a_falseticker():
    query = fake_query(
        {
            "a": {"status": "ok", "offset_seconds": 0.1},
            "b": {"status": "ok", "offset_seconds": 300.0},
            "c": {"status": "ok", "offset_seconds": 0.3},
        }
    )
    result = measure_ntp(["a", "b", "c"], query=query)
    assert result["offset_seconds"] == pytest.approx(0.3)
    assert result["selected_server"] == "c"
    assert result["spread_seconds"] == pytest.approx(299.9)
    assert [server["server"] for server in result["servers"]] == ["a", "b", "c"]


def test_unusable_servers_do_not_count():
    query = fake_query(
        {"a": {"status": "timeout", "msg": "a: no reply"}, "b": {"status": "ok", "offset_seconds": -2.0}}
    )
    result = measure_ntp(["a", "b"], query=query)
    assert result["offset_seconds"] == -2.0
    assert result["selected_server"] == "b"


def test_all_servers_down_is_one_clear_error():
    with SntpResponder({"kiss": "DENY"}) as denying, pytest.raises(ClockError) as caught:
        measure_ntp(["127.0.0.1", "127.0.0.2"], port=denying.port, **FAST)
    assert caught.value.reason == "no_server"
    assert caught.value.msg.startswith("No NTP server gave usable time")
    assert "127.0.0.1: kiss-of-death DENY" in caught.value.msg
    assert "127.0.0.2: " in caught.value.msg
    assert [server["status"] for server in caught.value.servers] == ["kiss_of_death", "connect"]


def test_a_crashing_query_is_a_result_not_a_traceback():
    def query(server, *args):
        raise RuntimeError("boom")

    with pytest.raises(ClockError) as caught:
        measure_ntp(["a"], query=query)
    assert "a: boom" in caught.value.msg


def test_no_servers():
    with pytest.raises(ClockError):
        measure_ntp([])


def test_servers_are_asked_in_parallel():
    # Every query waits until all four are running: asked one after another, the barrier breaks.
    running = threading.Barrier(4, timeout=30)

    def query(server, *args):
        running.wait()
        return dict(clock._server_result(server, 123), status="ok", offset_seconds=0.0)

    result = measure_ntp(["a", "b", "c", "d"], query=query)
    assert [server["status"] for server in result["servers"]] == ["ok"] * 4


# --- HTTP Date -----------------------------------------------------------------------------------


def test_http_date_offset(http_date_server):
    url = http_date_server(skew=120)
    result = http_date_offset(url, timeout=2)
    assert result["status"] == "ok"
    assert result["http_status"] == 405
    assert result["offset_seconds"] == pytest.approx(120, abs=2)
    assert result["uncertainty_seconds"] >= 0.5
    assert result["date"].endswith("GMT")


def test_https_date_with_a_ca_file(http_date_server, tmp_path):
    url = http_date_server(skew=-30, tls=True)
    result = http_date_offset(url, ca_path=str(tmp_path / "cert.pem"), timeout=2)
    assert result["status"] == "ok", result["msg"]
    assert result["offset_seconds"] == pytest.approx(-30, abs=2)


def test_https_date_without_the_ca_is_a_tls_failure(http_date_server):
    result = http_date_offset(http_date_server(tls=True), timeout=2)
    assert result["status"] == "tls"
    assert "certificate verify failed" in result["msg"]


def test_missing_date_header(http_date_server):
    result = http_date_offset(http_date_server(send_date=False), timeout=2)
    assert result["status"] == "bad_reply"
    assert "no usable Date header" in result["msg"]


def test_http_date_connection_refused():
    result = http_date_offset("http://127.0.0.1:%d/" % unused_udp_port(), timeout=1)
    assert result["status"] == "connect"
    assert result["offset_seconds"] is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "not a url", "https://:443/", "https://h:99999/"])
def test_http_date_bad_url(url):
    assert http_date_offset(url)["status"] == "bad_url"


def test_http_date_missing_ca_file(tmp_path):
    result = http_date_offset("https://127.0.0.1:1/", ca_path=str(tmp_path / "none.pem"))
    assert result["status"] == "tls"
    assert "cannot load the CA file" in result["msg"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 14 Nov 2023 22:13:20 GMT", 1_700_000_000.0),
        ("Tue, 14 Nov 2023 23:13:20 +0100", 1_700_000_000.0),
        # HTTP dates are UTC: no zone, or RFC 2822's "unknown" -0000, is not this host's local time.
        ("Tue, 14 Nov 2023 22:13:20", 1_700_000_000.0),
        ("Tue, 14 Nov 2023 22:13:20 -0000", 1_700_000_000.0),
        ("Tue, 31 Feb 2023 22:13:20 GMT", None),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_http_date(monkeypatch, value, expected):
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    time.tzset()
    try:
        assert clock.parse_http_date(value) == expected
    finally:
        monkeypatch.undo()
        time.tzset()


def test_date_header_offset_takes_the_middle_of_the_second_and_of_the_round_trip():
    header = "Tue, 14 Nov 2023 22:13:20 GMT"  # 1_700_000_000
    assert clock.date_header_offset(header, 1_700_000_000.0, 1_700_000_000.0) == 0.5
    assert clock.date_header_offset(header, 1_699_999_880.0, 1_699_999_880.4) == pytest.approx(120.3)
    assert clock.date_header_offset(header, 1_700_003_600.0, 1_700_003_600.0) == -3599.5
    assert clock.date_header_offset(None, 0.0, 0.0) is None
