"""The round trips imap.ImapConnection saves, on the wire against scripted servers (127.0.0.1, no TLS).

Each server below answers only once the client has sent what the saving says it sends without waiting:
a client that waited instead would deadlock, and the test would fail on the client's socket timeout.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import imaplib
import socket
import threading

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures as fl
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap, imap_login
from tests.unit.plugins.module_utils._google.test_imap_login import (
    DOVECOT_GREETING,
    EXAMINED,
    GMAIL_GREETING,
    LOGGED_OUT,
    PlainContext,
)

TIMEOUT = 10
SASL_IR = frozenset([b"IMAP4REV1", b"SASL-IR", b"AUTH=XOAUTH2"])


class WaitingServer:
    """One connection: reads ``wait_for`` client lines, then sends ``reply`` (bytes); repeats per step.

    ``steps``: a list of ``(wait_for, reply)``; the greeting is a step like any other, so a server can
    send it only after the client's first line. Client lines are recorded in ``received``.
    """

    def __init__(self, steps):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.steps = list(steps)
        self.received = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _address = self.listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            reader = conn.makefile("rb")
            for wait_for, reply in self.steps:
                for _line in range(wait_for):
                    line = reader.readline()
                    if not line:
                        return
                    self.received.append(line)
                conn.sendall(reply)
            reader.readline()  # until the client closes
        self.listener.close()


def test_a_known_sasl_ir_server_gets_authenticate_before_the_greeting_is_read():
    # The greeting only comes once AUTHENTICATE has arrived.
    server = WaitingServer([(1, DOVECOT_GREETING + b"n1 OK Logged in\r\n")])
    profile = imap.ServerProfile()
    profile.capabilities = SASL_IR
    client = imap.ImapConnection("127.0.0.1", server.port, PlainContext(), TIMEOUT, profile=profile)
    assert client.greeted is False
    client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("alice@example.test", "ya29.x"))
    assert client.greeted is True
    client.shutdown()
    server.thread.join(TIMEOUT)
    (auth,) = server.received
    assert auth.split()[:3] == [b"n1", b"AUTHENTICATE", b"XOAUTH2"]
    assert base64.b64decode(auth.split()[3]) == b"user=alice@example.test\x01auth=Bearer ya29.x\x01\x01"


def test_the_first_greeting_teaches_the_profile_and_gmail_teaches_nothing():
    dovecot = WaitingServer([(0, DOVECOT_GREETING)])
    profile = imap.ServerProfile()
    imap.ImapConnection("127.0.0.1", dovecot.port, PlainContext(), TIMEOUT, profile=profile).shutdown()
    assert b"SASL-IR" in profile.capabilities

    gmail = WaitingServer([(0, GMAIL_GREETING), (1, b"+ \r\n"), (1, b"n1 OK authenticated (Success)\r\n")])
    profile = imap.ServerProfile()
    client = imap.ImapConnection("127.0.0.1", gmail.port, PlainContext(), TIMEOUT, profile=profile)
    assert client.greeted is True and profile.capabilities is None
    client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("bob@example.test", "ya29.y"))
    client.shutdown()
    gmail.thread.join(TIMEOUT)
    assert gmail.received[0] == b"n1 AUTHENTICATE XOAUTH2\r\n"  # no initial response: Gmail did not offer SASL-IR


def test_a_bye_greeting_read_after_authenticate_is_still_the_greeting():
    server = WaitingServer([(1, b"* BYE [UNAVAILABLE] Temporary System Problem. Try again later.\r\n")])
    profile = imap.ServerProfile()
    profile.capabilities = SASL_IR
    client = imap.ImapConnection("127.0.0.1", server.port, PlainContext(), TIMEOUT, profile=profile)
    with pytest.raises(imaplib.IMAP4.abort) as caught:
        client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("c@example.test", "t"))
    assert client.greeted is False
    assert "Temporary System Problem" in str(caught.value)


def test_examine_and_logout_leave_together():
    # Nothing is answered until both EXAMINE and LOGOUT have arrived.
    examined = EXAMINED.replace(b"{tag}", b"n2")
    server = WaitingServer(
        [(0, DOVECOT_GREETING), (1, b"n1 OK Logged in\r\n"), (2, examined + LOGGED_OUT.replace(b"{tag}", b"n3"))]
    )
    client = imap.ImapConnection("127.0.0.1", server.port, PlainContext(), TIMEOUT)
    client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("d@example.test", "t"))
    client.select_and_logout("INBOX", readonly=True)
    server.thread.join(TIMEOUT)
    assert server.received[1:] == [b'n2 EXAMINE "INBOX"\r\n', b"n3 LOGOUT\r\n"]
    assert client.socket().fileno() == -1  # closed


def test_a_mailbox_refused_in_the_pipelined_pair_is_a_select_failure():
    server = WaitingServer(
        [
            (0, DOVECOT_GREETING),
            (1, b"n1 OK Logged in\r\n"),
            (2, b"n2 NO [NONEXISTENT] Unknown Mailbox (Failure)\r\n" + LOGGED_OUT.replace(b"{tag}", b"n3")),
        ]
    )
    client = imap.ImapConnection("127.0.0.1", server.port, PlainContext(), TIMEOUT)
    client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("e@example.test", "t"))
    with pytest.raises(imaplib.IMAP4.error) as caught:
        client.select_and_logout("Voicemail")
    assert "NONEXISTENT" in str(caught.value)
    assert fl.classify_imap_failure(caught.value, "select").failure_class == "imap_other"
    assert client.socket().fileno() == -1


def test_a_connection_begun_early_is_finished_by_the_client():
    server = WaitingServer([(0, DOVECOT_GREETING)])
    sock = imap.start_connect("127.0.0.1", server.port)
    assert sock is not None
    client = imap.ImapConnection("127.0.0.1", server.port, PlainContext(), TIMEOUT, sock=sock)
    assert client.socket() is sock  # PlainContext hands the socket through: the early one was used
    assert sock.gettimeout() == TIMEOUT
    client.shutdown()


def test_an_early_connection_that_failed_is_made_again_and_fails_as_usual():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    sock = imap.start_connect("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        imap.ImapConnection("127.0.0.1", port, PlainContext(), TIMEOUT, sock=sock)
    assert sock is None or sock.fileno() == -1


def test_start_connect_never_raises(monkeypatch):
    def unresolvable(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    assert imap.start_connect("imap.example.invalid", 993) is None
    assert imap.ImapConnection.start_connect is imap.start_connect


class Tokens:
    client_id = client_email = "unit"

    def token(self, subject, scopes=None):
        return "ya29.token-for-" + subject, None


def test_the_checker_puts_a_failed_late_greeting_down_to_the_connection():
    server = WaitingServer([(1, b"* BYE Too many connections from your IP\r\n")])
    checker = imap_login.ImapChecker(
        Tokens(), "127.0.0.1", server.port, ssl_context=PlainContext(), timeout=TIMEOUT, retries=0
    )
    checker._profile.capabilities = SASL_IR  # as a previous connection of the run would have taught it
    result = checker.check("f@example.test")
    assert result["phase"] == "connect"
    assert result["failure_class"] != "ok"
    assert "Too many connections" in result["message"]


def test_the_checker_uses_every_saving_against_a_dovecot_like_server():
    # Second user of a run: capabilities known. The server greets only after AUTHENTICATE, and answers
    # EXAMINE only after LOGOUT too: four client lines in two writes.
    examined = EXAMINED.replace(b"{tag}", b"n2")
    server = WaitingServer(
        [(1, DOVECOT_GREETING + b"n1 OK Logged in\r\n"), (2, examined + LOGGED_OUT.replace(b"{tag}", b"n3"))]
    )
    checker = imap_login.ImapChecker(Tokens(), "127.0.0.1", server.port, ssl_context=PlainContext(), timeout=TIMEOUT)
    checker._profile.capabilities = SASL_IR
    result = checker.check("g@example.test")
    assert (result["failure_class"], result["phase"]) == ("ok", None), result
    assert set(result["latency_ms"]) == {"token", "connect", "auth", "select", "total"}
    server.thread.join(TIMEOUT)
    assert [line.split()[1] for line in server.received] == [b"AUTHENTICATE", b"EXAMINE", b"LOGOUT"]


# --------------------------------------------------------------------------- ImapChecker.run without a concurrency


def test_an_adaptive_run_trips_the_breaker_after_twice_its_starting_level():
    from tests.unit.plugins.module_utils._google.test_imap_login import FakeServer, make_checker

    class Refusing(FakeServer):
        def factory(self, host, port, ssl_context, timeout):
            with self.lock:
                self.connects += 1
            raise ConnectionRefusedError(111, "Connection refused")

    users = ["user%04d@example.test" % number for number in range(300)]
    checker, server, _source = make_checker(server=Refusing(), retries=0)
    results, summary = checker.run(users)  # no concurrency: adaptive, starting at 16
    assert summary["by_class"]["connect"] == 300
    # 32 in a row (2 x 16) trip it; the workers busy at that moment finish their user.
    assert 32 <= server.connects <= 32 + 16
    assert results[-1]["message"].startswith("Not tried: the previous 32 users all failed with connect")
    assert summary["concurrency_levels"][0] == 16


def test_an_adaptive_run_reports_its_levels_and_the_most_users_at_a_time():
    from tests.unit.plugins.module_utils._google.test_imap_login import make_checker

    checker, server, _source = make_checker()
    users = ["user%04d@example.test" % number for number in range(200)]
    results, summary = checker.run(users)
    assert summary["ok"] == 200 and len(results) == 200
    levels = summary["concurrency_levels"]
    assert levels[0] == 16 and all(1 <= level <= 64 for level in levels)
    assert summary["concurrency"] == max(levels)
    assert server.max_active <= max(levels)
