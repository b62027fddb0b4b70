"""Unit tests for _google.imap_login (and failures, imap, pool, report): classification from real server texts, the runner, reports.

IMAP clients and token sources are fakes; the classification tests feed the exceptions imaplib and
imapclient really raise, carrying the texts Gmail (and the lab's Dovecot) really send.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import csv
import imaplib
import json
import os
import socket
import ssl
import stat
import threading
import time

import pytest
from imapclient import exceptions as imapclient_exceptions

from ansible_collections.nupoint.gworkspace.plugins.module_utils import files
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures as fl
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap, pool, report
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_login as il
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import session as ss
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.session import KeepAliveSession

# Gmail's refusals, verbatim (the text after "a1 NO ").
GMAIL_USER_DISABLED = (
    "[ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page and enable your "
    "account for IMAP access. (Failure)"
)
GMAIL_DOMAIN_DISABLED = (
    "[ALERT] IMAP access is disabled for your domain. Please contact your domain administrator for questions "
    "about this feature. (Failure)"
)
GMAIL_INVALID_CREDENTIALS = "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"
GMAIL_TOO_MANY = "[ALERT] Too many simultaneous connections. (Failure)"
GMAIL_UNAVAILABLE = "[UNAVAILABLE] Temporary System Problem. Try again later."
GMAIL_WEB_LOGIN = "[WEBALERT https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbs] Web login required."
GMAIL_APP_PASSWORD = (
    "[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)"
)
GMAIL_NONEXISTENT = "[NONEXISTENT] Unknown Mailbox: Voicemail (Failure)"
# The lab's Dovecot.
DOVECOT_AUTH_FAILED = "[AUTHENTICATIONFAILED] Authentication failed."
DOVECOT_TEMPFAIL = "[UNAVAILABLE] Temporary authentication failure. [lab:2026-11-30 08:00:00]"
# Gmail's XOAUTH2 error challenge (base64 JSON) after a refused token.
GMAIL_XOAUTH2_CHALLENGE = base64.b64decode(
    "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
)

TEXT_CASES = [
    (GMAIL_USER_DISABLED, "auth", "imap_disabled", False),
    (GMAIL_DOMAIN_DISABLED, "auth", "imap_disabled", False),
    (GMAIL_INVALID_CREDENTIALS, "auth", "imap_auth_failed", False),
    (DOVECOT_AUTH_FAILED, "auth", "imap_auth_failed", False),
    (GMAIL_WEB_LOGIN, "auth", "imap_auth_failed", False),
    (GMAIL_APP_PASSWORD, "auth", "imap_auth_failed", False),
    ("[CONTACTADMIN] Account suspended.", "auth", "imap_auth_failed", False),
    (GMAIL_TOO_MANY, "auth", "imap_other", True),
    (GMAIL_TOO_MANY, "connect", "imap_other", True),
    (GMAIL_UNAVAILABLE, "auth", "imap_other", True),
    (DOVECOT_TEMPFAIL, "auth", "imap_other", True),
    ("[INUSE] Mailbox in use", "select", "imap_other", True),
    ("Something we never saw", "auth", "imap_auth_failed", False),
    ("Something we never saw", "select", "imap_other", False),
    (GMAIL_NONEXISTENT, "select", "imap_other", False),
]


@pytest.mark.parametrize(("text", "phase", "expected", "retryable"), TEXT_CASES)
def test_classify_imap_text(text, phase, expected, retryable):
    assert fl.classify_imap_text(text, phase) == (expected, retryable)


@pytest.mark.parametrize(
    ("exc", "phase", "expected", "retryable"),
    [
        # What imapclient.sasl_login / oauth2_login raise for a tagged NO.
        (imapclient_exceptions.LoginError(GMAIL_USER_DISABLED), "auth", "imap_disabled", False),
        (imapclient_exceptions.LoginError(GMAIL_DOMAIN_DISABLED), "auth", "imap_disabled", False),
        (imapclient_exceptions.LoginError(GMAIL_INVALID_CREDENTIALS), "auth", "imap_auth_failed", False),
        (imapclient_exceptions.LoginError(GMAIL_TOO_MANY), "auth", "imap_other", True),
        # select_folder: IMAPClientError("select failed: ...").
        (imapclient_exceptions.IMAPClientError("select failed: " + GMAIL_NONEXISTENT), "select", "imap_other", False),
        # imaplib: a BYE greeting, dropped connections, timeouts wrapped in abort.
        (imaplib.IMAP4.abort("* BYE " + GMAIL_UNAVAILABLE), "connect", "imap_other", True),
        (imaplib.IMAP4.abort("socket error: EOF"), "auth", "connect", True),
        (imaplib.IMAP4.abort("command: AUTHENTICATE => socket error: timed out"), "auth", "timeout", True),
        (imaplib.IMAP4.abort("socket error: [Errno 104] Connection reset by peer"), "select", "connect", True),
        # Raw socket / TLS errors.
        (ConnectionRefusedError(111, "Connection refused"), "connect", "connect", False),
        (ConnectionResetError(104, "Connection reset by peer"), "connect", "connect", True),
        (socket.gaierror(-2, "Name or service not known"), "connect", "dns", False),
        (socket.timeout("timed out"), "connect", "timeout", True),  # noqa: UP041 - what Python 3.6 raises,
        (TimeoutError("The read operation timed out"), "auth", "timeout", True),
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            "connect",
            "tls",
            False,
        ),
        (ValueError("surprise"), "auth", "imap_other", False),
    ],
)
def test_classify_imap_failure(exc, phase, expected, retryable):
    failure = fl.classify_imap_failure(exc, phase)
    assert (failure.failure_class, failure.retryable, failure.phase) == (expected, retryable, phase)
    assert failure.msg


def test_refusal_message_quotes_the_server_and_says_what_to_do():
    failure = fl.classify_imap_failure(imapclient_exceptions.LoginError(GMAIL_USER_DISABLED), "auth")
    assert GMAIL_USER_DISABLED in failure.msg
    assert "gmail_imap_settings" in failure.msg


def test_xoauth2_error_details_from_gmail_challenge():
    details = imap.xoauth2_error_details(GMAIL_XOAUTH2_CHALLENGE)
    assert details == {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    assert imap.xoauth2_error_details(b"") is None
    assert imap.xoauth2_error_details(b"not json") is None


def test_xoauth2_exchange_sends_credentials_once_then_an_empty_reply():
    exchange = imap.XOAuth2Exchange("alice@example.test", "ya29.SECRET")
    assert exchange(b"") == "user=alice@example.test\x01auth=Bearer ya29.SECRET\x01\x01"
    assert exchange(GMAIL_XOAUTH2_CHALLENGE) == ""
    assert exchange.error_details["status"] == "400"
    assert "SECRET" not in repr(exchange)


# --------------------------------------------------------------------------- ImapConnection on the wire


class PlainContext:
    """Stands in for an SSLContext: the scripted server below speaks IMAP in clear."""

    def __init__(self):
        self.hostnames = []

    def wrap_socket(self, sock, server_hostname=None):
        self.hostnames.append(server_hostname)
        return sock


class ScriptedImapServer:
    """One connection on 127.0.0.1: sends ``greeting``, then for each client line the next reply from ``replies``.

    ``replies`` entries are bytes sent as they are, with ``{tag}`` replaced by the client's tag; the client's
    lines are recorded in ``received``.
    """

    def __init__(self, greeting, replies):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.greeting = greeting
        self.replies = list(replies)
        self.received = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _address = self.listener.accept()
        with conn:
            reader = conn.makefile("rb")
            conn.sendall(self.greeting)
            tag = b""
            while self.replies:
                line = reader.readline()
                if not line:
                    return
                self.received.append(line)
                if not line.startswith(b"+") and b" " in line and line.strip():
                    tag = line.split(b" ", 1)[0]
                reply = self.replies.pop(0)
                if reply is None:
                    return  # drop the connection
                conn.sendall(reply.replace(b"{tag}", tag))
        self.listener.close()

    def connect(self, timeout=5):
        return imap.ImapConnection("127.0.0.1", self.port, PlainContext(), timeout)


DOVECOT_GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] Gimap ready for requests (lab)\r\n"
GMAIL_GREETING = b"* OK Gimap ready for requests from 192.0.2.7 a1mb12345678\r\n"
EXAMINED = (
    b"* FLAGS (\\Answered \\Seen)\r\n* 0 EXISTS\r\n* 0 RECENT\r\n"
    b"* OK [UIDVALIDITY 1] UIDs valid\r\n{tag} OK [READ-ONLY] EXAMINE completed (Success)\r\n"
)
LOGGED_OUT = b"* BYE LOGOUT Requested\r\n{tag} OK 73 good day (Success)\r\n"


def test_connection_with_sasl_ir_examine_and_logout():
    server = ScriptedImapServer(DOVECOT_GREETING, [b"{tag} OK Logged in\r\n", EXAMINED, LOGGED_OUT])
    client = server.connect()
    assert "SASL-IR" in {name.decode() for name in client.capabilities}
    exchange = imap.XOAuth2Exchange("alice@example.test", "ya29.x")
    client.sasl_login("XOAUTH2", exchange)
    client.select_folder("INBOX", readonly=True)
    client.logout()
    server.thread.join(5)
    auth, examine, logout = server.received
    _tag, verb, mechanism, initial = auth.split()
    assert (verb, mechanism) == (b"AUTHENTICATE", b"XOAUTH2")
    assert base64.b64decode(initial) == b"user=alice@example.test\x01auth=Bearer ya29.x\x01\x01"
    assert examine.split(b" ", 1)[1] == b'EXAMINE "INBOX"\r\n'
    assert logout.split(b" ", 1)[1] == b"LOGOUT\r\n"


def test_gmail_greeting_without_capabilities_waits_for_the_continuation():
    server = ScriptedImapServer(GMAIL_GREETING, [b"+ \r\n", b"{tag} OK user@example.test authenticated (Success)\r\n"])
    client = server.connect()
    client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("bob@example.test", "ya29.y"))
    server.thread.join(5)
    command, response = server.received
    assert command.split(b" ", 1)[1] == b"AUTHENTICATE XOAUTH2\r\n"
    assert base64.b64decode(response.strip()) == b"user=bob@example.test\x01auth=Bearer ya29.y\x01\x01"


def test_refused_token_gets_an_empty_reply_to_the_error_challenge_and_the_text():
    challenge = base64.b64encode(GMAIL_XOAUTH2_CHALLENGE) + b"\r\n"
    server = ScriptedImapServer(
        GMAIL_GREETING, [b"+ \r\n", b"+ " + challenge, b"{tag} NO " + GMAIL_USER_DISABLED.encode() + b"\r\n"]
    )
    client = server.connect()
    exchange = imap.XOAuth2Exchange("bob@example.test", "ya29.y")
    with pytest.raises(imaplib.IMAP4.error) as caught:
        client.sasl_login("XOAUTH2", exchange)
    assert str(caught.value) == GMAIL_USER_DISABLED
    assert server.received[-1] == b"\r\n"
    assert exchange.error_details["status"] == "400"
    assert fl.classify_imap_failure(caught.value, "auth").failure_class == "imap_disabled"


def test_bye_during_a_command_is_an_abort_with_the_server_text():
    server = ScriptedImapServer(DOVECOT_GREETING, [b"* BYE " + GMAIL_TOO_MANY.encode() + b"\r\n"])
    client = server.connect()
    with pytest.raises(imaplib.IMAP4.abort) as caught:
        client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("c@example.test", "t"))
    failure = fl.classify_imap_failure(caught.value, "auth")
    assert (failure.failure_class, failure.retryable) == ("imap_other", True)


def test_dropped_connection_is_an_eof_abort():
    server = ScriptedImapServer(DOVECOT_GREETING, [None])
    client = server.connect()
    with pytest.raises(imaplib.IMAP4.abort) as caught:
        client.sasl_login("XOAUTH2", imap.XOAuth2Exchange("c@example.test", "t"))
    assert str(caught.value) == "socket error: EOF"
    assert fl.classify_imap_failure(caught.value, "auth").failure_class == "connect"


def test_bye_greeting_is_refused_with_its_text():
    server = ScriptedImapServer(b"* BYE [UNAVAILABLE] Temporary System Problem. Try again later.\r\n", [])
    with pytest.raises(imaplib.IMAP4.abort) as caught:
        server.connect()
    failure = fl.classify_imap_failure(caught.value, "connect")
    assert (failure.failure_class, failure.retryable) == ("imap_other", True)


def test_literals_in_responses_and_mailbox_names():
    examined = b'* LIST () "/" {5}\r\nINBOX\r\n' + EXAMINED
    server = ScriptedImapServer(DOVECOT_GREETING, [examined, b"{tag} NO [NONEXISTENT] Unknown Mailbox (Failure)\r\n"])
    client = server.connect()
    client.select_folder('Voice "mail" & Boîte', readonly=True)
    with pytest.raises(imaplib.IMAP4.error) as caught:
        client.select_folder("Missing")
    assert fl.classify_imap_failure(caught.value, "select").failure_class == "imap_other"
    assert server.received[0].split(b" ", 1)[1] == b'EXAMINE "Voice \\"mail\\" &- Bo&AO4-te"\r\n'


def test_imap_utf7_matches_imapclient():
    from imapclient import imap_utf7

    for name in ("INBOX", "Boîte & Voicemail", "台北", "&", "Entwürfe/Archiv"):
        assert imap.imap_utf7(name) == imap_utf7.encode(name)


# --------------------------------------------------------------------------- fakes


class FakeSocket:
    def __init__(self):
        self.timeouts = []

    def settimeout(self, value):
        self.timeouts.append(value)


class FakeClient:
    """Behaves like imapclient.IMAPClient for the calls the checker makes; ``script`` decides per user."""

    def __init__(self, server, host, port, timeout):
        self.server = server
        self.sock = FakeSocket()
        self.sock.settimeout(timeout)
        self.user = None
        self.closed = False

    def socket(self):
        return self.sock

    def sasl_login(self, mech, exchange):
        assert mech == "XOAUTH2"
        initial = exchange(b"")
        user = initial.split("\x01")[0][len("user=") :]
        token = initial.split("Bearer ")[1].split("\x01")[0]
        self.user = user
        self.server.seen_tokens.append(token)
        outcome = self.server.auth_outcome(user, token)
        if outcome is not None:
            if isinstance(outcome, BaseException):
                raise outcome
            exchange(GMAIL_XOAUTH2_CHALLENGE)
            raise imapclient_exceptions.LoginError(outcome)
        return b"OK"

    def select_folder(self, folder, readonly=False):
        self.server.selects.append((self.user, folder, readonly))
        delay = self.server.select_delay.get(self.user)
        if delay:
            time.sleep(delay)
        return {b"EXISTS": 0}

    def logout(self):
        self.closed = True
        return b"BYE"

    def shutdown(self):
        self.closed = True


class FakeServer:
    """A scripted IMAP server: ``auth`` maps a user to a list of outcomes, one per attempt (None = ok)."""

    def __init__(self, auth=None, connect=None, select_delay=None):
        self.auth = {user: list(outcomes) for user, outcomes in (auth or {}).items()}
        self.connect = {user: list(outcomes) for user, outcomes in (connect or {}).items()}
        self.select_delay = select_delay or {}
        self.seen_tokens = []
        self.selects = []
        self.connects = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.clients = []

    def factory(self, host, port, ssl_context, timeout):
        with self.lock:
            self.connects += 1
        client = FakeClient(self, host, port, timeout)
        self.clients.append(client)
        return client

    def auth_outcome(self, user, token):
        assert token == "ya29.token-for-" + user
        outcomes = self.auth.get(user)
        return outcomes.pop(0) if outcomes else None


class FakeTokenSource:
    def __init__(self, errors=None, delay=0.0):
        self.errors = errors or {}
        self.delay = delay
        self.calls = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def token(self, subject, scopes=None):
        with self.lock:
            self.calls.append((subject, scopes))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if subject in self.errors:
                raise self.errors[subject]
            return "ya29.token-for-" + subject, None
        finally:
            with self.lock:
                self.active -= 1


def make_checker(server=None, source=None, sleeps=None, **kwargs):
    server = server or FakeServer()
    source = source or FakeTokenSource()
    recorded = sleeps if sleeps is not None else []
    kwargs.setdefault("ssl_context", ssl.create_default_context())
    checker = il.ImapChecker(
        source,
        "imap.example.test",
        993,
        client_factory=server.factory,
        sleep=recorded.append,
        rng=lambda: 0.5,
        **kwargs,
    )
    return checker, server, source


# --------------------------------------------------------------------------- one user


def test_ok_user_has_every_phase_timed_and_uses_examine():
    checker, server, source = make_checker()
    result = checker.check("alice@example.test")
    assert result["failure_class"] == "ok"
    assert result["phase"] is None
    assert result["message"] == ""
    assert result["attempts"] == 1
    assert set(result["latency_ms"]) == {"token", "connect", "auth", "select", "total"}
    assert server.selects == [("alice@example.test", "INBOX", True)]
    assert all(client.closed for client in server.clients)
    assert source.calls == [("alice@example.test", None)]


def test_select_can_be_skipped():
    checker, server, _source = make_checker(select_mailbox="")
    result = checker.check("alice@example.test")
    assert result["failure_class"] == "ok"
    assert "select" not in result["latency_ms"]
    assert server.selects == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GMAIL_USER_DISABLED, "imap_disabled"),
        (GMAIL_DOMAIN_DISABLED, "imap_disabled"),
        (GMAIL_INVALID_CREDENTIALS, "imap_auth_failed"),
    ],
)
def test_refusals_are_final_and_carry_the_xoauth2_error(text, expected):
    checker, server, _source = make_checker(server=FakeServer(auth={"bob@example.test": [text]}))
    result = checker.check("bob@example.test")
    assert result["failure_class"] == expected
    assert result["phase"] == "auth"
    assert result["attempts"] == 1
    assert text in result["message"]
    assert "XOAUTH2 error" in result["message"]
    assert "status 400" in result["message"]
    assert server.clients[0].closed


def test_token_failure_is_not_retried_by_the_checker_and_skips_imap():
    refusal = fl.TokenError("token_invalid_user", "Google does not know this user.", "invalid_grant", "Invalid email")
    checker, server, _source = make_checker(source=FakeTokenSource(errors={"ghost@example.test": refusal}))
    result = checker.check("ghost@example.test")
    assert result["failure_class"] == "token_invalid_user"
    assert result["phase"] == "token"
    assert result["google_error"] == "invalid_grant"
    assert server.connects == 0


def test_retryable_imap_failure_is_retried_with_backoff_then_succeeds():
    sleeps = []
    server = FakeServer(auth={"carol@example.test": [GMAIL_TOO_MANY, GMAIL_UNAVAILABLE]})
    checker, server, source = make_checker(server=server, sleeps=sleeps, retries=3)
    result = checker.check("carol@example.test")
    assert result["failure_class"] == "ok"
    assert result["attempts"] == 3
    assert sleeps == [1.0, 2.0]  # backoff_base 1 s, doubled, jitter factor 1.0 with rng 0.5
    # The token is minted once per user and reused for the retries.
    assert len(source.calls) == 1


def test_retries_stop_after_the_limit():
    sleeps = []
    server = FakeServer(auth={"dave@example.test": [GMAIL_TOO_MANY] * 10})
    checker, _server, _source = make_checker(server=server, sleeps=sleeps, retries=2)
    result = checker.check("dave@example.test")
    assert result["failure_class"] == "imap_other"
    assert result["attempts"] == 3
    assert len(sleeps) == 2
    assert "Too many simultaneous connections" in result["message"]


def test_connection_refused_is_not_retried():
    class RefusingServer(FakeServer):
        def factory(self, host, port, ssl_context, timeout):
            self.connects += 1
            raise ConnectionRefusedError(111, "Connection refused")

    sleeps = []
    checker, _server, _source = make_checker(server=RefusingServer(), sleeps=sleeps)
    result = checker.check("erin@example.test")
    assert (result["failure_class"], result["phase"], result["attempts"]) == ("connect", "connect", 1)
    assert sleeps == []
    assert "Connection refused" in result["message"]


def test_dropped_connection_is_retried():
    server = FakeServer(auth={"fay@example.test": [imaplib.IMAP4.abort("socket error: EOF")]})
    checker, _server, _source = make_checker(server=server)
    result = checker.check("fay@example.test")
    assert result["failure_class"] == "ok"
    assert result["attempts"] == 2


def test_socket_timeouts_are_cut_to_the_user_deadline():
    now = [1000.0]
    checker, server, _source = make_checker(timeout=10, user_timeout=4, clock=lambda: now[0])
    checker.check("gus@example.test")
    assert server.clients[0].sock.timeouts[0] == 4.0


def test_user_deadline_stops_a_slow_user():
    now = [1000.0]

    class SlowLoginServer(FakeServer):
        def auth_outcome(self, user, token):
            now[0] += 30.0  # the login took 30 s

    checker, _server, _source = make_checker(server=SlowLoginServer(), user_timeout=20, clock=lambda: now[0])
    result = checker.check("hal@example.test")
    assert result["failure_class"] == "timeout"
    assert result["phase"] == "select"
    assert "user_timeout=20" in result["message"]


def test_no_retry_when_the_backoff_would_pass_the_deadline():
    now = [1000.0]
    sleeps = []
    server = FakeServer(auth={"ida@example.test": [GMAIL_TOO_MANY] * 5})
    checker, _server, _source = make_checker(
        server=server, sleeps=sleeps, user_timeout=1.5, backoff_base=1.0, clock=lambda: now[0]
    )
    now[0] += 0.0
    result = checker.check("ida@example.test")
    # First backoff (1 s) fits in 1.5 s, the second (2 s) does not.
    assert result["attempts"] == 2
    assert sleeps == [1.0]


def test_unexpected_error_becomes_imap_other_and_never_raises():
    class BrokenServer(FakeServer):
        def factory(self, host, port, ssl_context, timeout):
            raise RuntimeError("library bug")

    checker, _server, _source = make_checker(server=BrokenServer())
    result = checker.check("jon@example.test")
    assert result["failure_class"] == "imap_other"
    assert "library bug" in result["message"]


def test_deadline_sleep_gives_up_instead_of_sleeping_past_the_deadline(monkeypatch):
    slept = []
    monkeypatch.setattr(pool.time, "sleep", slept.append)
    pool._local.deadline = time.monotonic() + 5
    try:
        pool.deadline_sleep(1.0)
        assert slept == [1.0]
        with pytest.raises(fl.TokenError) as caught:
            pool.deadline_sleep(10.0)
        assert caught.value.failure_class == "timeout"
    finally:
        pool._local.deadline = None
    pool.deadline_sleep(10.0)  # outside a check: plain sleep
    assert slept == [1.0, 10.0]


def test_deadline_is_visible_to_the_token_source_during_a_check():
    seen = []

    class Source(FakeTokenSource):
        def token(self, subject, scopes=None):
            seen.append(pool.current_deadline())
            return super().token(subject, scopes)

    checker, _server, _source = make_checker(source=Source(), user_timeout=7)
    before = time.monotonic()
    checker.check("kim@example.test")
    assert seen[0] is not None and before + 6 < seen[0] <= time.monotonic() + 7
    assert pool.current_deadline() is None


def test_scopes_are_passed_when_given():
    checker, _server, source = make_checker(scopes=["https://mail.google.com/"])
    checker.check("lea@example.test")
    assert source.calls == [("lea@example.test", ["https://mail.google.com/"])]


# --------------------------------------------------------------------------- many users


def test_run_keeps_input_order_and_summarises():
    users = ["user%04d@example.test" % number for number in range(60)]
    server = FakeServer(
        auth={users[3]: [GMAIL_USER_DISABLED], users[7]: [GMAIL_DOMAIN_DISABLED], users[9]: [GMAIL_INVALID_CREDENTIALS]}
    )
    refusal = fl.TokenError("token_invalid_user", "unknown", "invalid_grant", "Invalid email or User ID")
    checker, _server, _source = make_checker(server=server, source=FakeTokenSource(errors={users[11]: refusal}))
    results, summary = checker.run(users, concurrency=8)
    assert [result["user"] for result in results] == users
    assert summary["total"] == 60
    assert summary["ok"] == 56
    assert summary["failed"] == 4
    assert summary["by_class"]["imap_disabled"] == 2
    assert summary["by_class"]["imap_auth_failed"] == 1
    assert summary["by_class"]["token_invalid_user"] == 1
    assert set(summary["by_class"]) == set(fl.FAILURE_CLASSES)
    assert summary["concurrency"] == 8
    assert set(summary["latency_ms"]) == {"token", "connect", "auth", "select", "total"}
    assert summary["latency_ms"]["total"]["p50"] <= summary["latency_ms"]["total"]["max"]
    assert [entry["user"] for entry in fl.failed_users(results)] == [users[3], users[7], users[9], users[11]]


def test_concurrency_is_bounded_and_threads_are_not_per_user():
    users = ["user%04d@example.test" % number for number in range(40)]
    source = FakeTokenSource(delay=0.01)
    checker, _server, source = make_checker(source=source)
    threads_before = threading.active_count()
    names = set()

    original = source.token

    def token(subject, scopes=None):
        names.add(threading.current_thread().name)
        return original(subject, scopes)

    source.token = token
    checker.run(users, concurrency=4)
    assert source.max_active <= 4
    assert len(names) <= 4
    assert threading.active_count() == threads_before


def test_one_slow_user_does_not_stall_the_run():
    users = ["user%04d@example.test" % number for number in range(30)]
    server = FakeServer(select_delay={users[0]: 1.0})
    checker, _server, _source = make_checker(server=server)
    finished = []
    check = checker.check

    def recording_check(user):
        result = check(user)
        finished.append(user)
        return result

    checker.check = recording_check
    results, _summary = checker.run(users, concurrency=4)
    assert all(result["failure_class"] == "ok" for result in results)
    # The other 29 users finished on the other three workers while the slow one held one.
    assert finished[-1] == users[0]


def test_unreachable_server_stops_trying_after_a_streak():
    class BlackHole(FakeServer):
        def factory(self, host, port, ssl_context, timeout):
            with self.lock:
                self.connects += 1
            raise socket.timeout("timed out")  # noqa: UP041 - what Python 3.6 raises

    users = ["user%04d@example.test" % number for number in range(200)]
    checker, server, _source = make_checker(server=BlackHole(), retries=0)
    results, summary = checker.run(users, concurrency=4)
    assert summary["by_class"]["timeout"] == 200
    # 20 in a row trip it (max(20, 2 * 4)); the workers busy at that moment finish their user.
    assert 20 <= server.connects <= 24
    skipped = [result for result in results if result["attempts"] == 0]
    assert len(skipped) == 200 - server.connects
    assert skipped[-1]["message"].startswith("Not tried: the previous 20 users all failed with timeout")
    assert skipped[-1]["phase"] == "connect"


def test_a_success_resets_the_unreachable_streak():
    breaker = pool.Breaker(3, il._unreachable)
    down = {"failure_class": "connect", "phase": "connect", "message": "refused"}
    for result in (down, down, {"failure_class": "ok", "phase": None}, down, down):
        breaker.record(result)
    assert breaker.cause is None
    breaker.record({"failure_class": "timeout", "phase": "connect", "message": "t"})
    breaker.record({"failure_class": "imap_disabled", "phase": "auth", "message": "no"})
    for _number in range(3):
        breaker.record(down)
    assert breaker.cause == down


def test_results_never_contain_the_token():
    users = ["user%04d@example.test" % number for number in range(5)]
    server = FakeServer(auth={users[1]: [GMAIL_INVALID_CREDENTIALS]})
    checker, server, _source = make_checker(server=server)
    results, summary = checker.run(users, concurrency=2)
    dumped = json.dumps([results, summary])
    assert server.seen_tokens
    for token in server.seen_tokens:
        assert token not in dumped
    assert "ya29" not in dumped


def test_run_with_no_users():
    checker, _server, _source = make_checker()
    results, summary = checker.run([], concurrency=16)
    assert results == []
    assert summary["total"] == 0


# --------------------------------------------------------------------------- report


@pytest.mark.parametrize(
    ("given", "paths"),
    [
        ("/var/tmp/imap.json", ("/var/tmp/imap.json", "/var/tmp/imap.csv")),
        ("/var/tmp/imap.csv", ("/var/tmp/imap.json", "/var/tmp/imap.csv")),
        ("/var/tmp/imap-report", ("/var/tmp/imap-report", "/var/tmp/imap-report.csv")),
    ],
)
def test_report_paths(given, paths):
    assert report.report_paths(given) == paths


def test_write_report_is_private_parses_and_escapes_formulas(tmp_path):
    checker, _server, _source = make_checker(
        server=FakeServer(auth={"bob@example.test": ['=HYPERLINK("http://evil") ' + GMAIL_USER_DISABLED]})
    )
    results, summary = checker.run(["alice@example.test", "bob@example.test"], concurrency=2)
    os.umask(0o022)
    paths = report.write_report(str(tmp_path / "imap.json"), results, summary, {"imap_host": "imap.example.test"})
    assert paths == {
        "json": str(tmp_path / "imap.json"),
        "csv": str(tmp_path / "imap.csv"),
        "html": str(tmp_path / "imap.html"),
    }
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads((tmp_path / "imap.json").read_text())
    assert document["summary"]["total"] == 2
    assert document["meta"]["imap_host"] == "imap.example.test"
    assert [entry["user"] for entry in document["results"]] == ["alice@example.test", "bob@example.test"]
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["user"] for row in rows] == ["alice@example.test", "bob@example.test"]
    assert rows[1]["failure_class"] == "imap_disabled"
    assert rows[0]["total_ms"]
    assert list(rows[0]) == list(report.REPORT_FIELDS)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_csv_cells_cannot_be_formulas():
    assert report._csv_safe('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert report._csv_safe("-1") == "'-1"
    assert report._csv_safe("alice@example.test") == "alice@example.test"


def test_write_report_replaces_atomically_and_cleans_up_on_error(tmp_path, monkeypatch):
    target = tmp_path / "imap.json"
    target.write_text("old")
    files.atomic_write(str(target), b"new")
    assert target.read_text() == "new"

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "replace", broken_replace)
    with pytest.raises(OSError):
        files.atomic_write(str(target), b"newer")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["imap.json"]


# --------------------------------------------------------------------------- token session


def test_token_source_reads_the_environment_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    from tests.unit import keyfactory as kf

    source = il.new_token_source(kf.key_json(), "https://mail.google.com/", concurrency=7)
    session = source._session
    assert isinstance(session, KeepAliveSession)
    assert session.proxies == {"https": "http://proxy.example.test:3128"}
    assert session.verify == "/etc/ssl/certs/ca-certificates.crt"
    assert source.retries == il.DEFAULT_RETRIES
    assert source._sleep is pool.deadline_sleep
    lab_source = il.new_token_source(
        kf.key_json(), "https://mail.google.com/", token_uri="https://127.0.0.1:1/token", ca_path=str(tmp_path)
    )
    assert lab_source._session.proxies == {}  # NO_PROXY honoured for the token URI
    assert lab_source._session.verify == str(tmp_path)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert ss.environment_for("https://oauth2.googleapis.com/token", None)[0] is True
