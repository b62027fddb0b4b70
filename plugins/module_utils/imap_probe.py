# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-user IMAP reachability: one XOAUTH2 login per user, many users concurrently, one failure vocabulary.

What NuPoint Advanced UM does for every user, done once and measured::

    source = new_token_source(key_info, SCOPE_MAIL, ca_path=ca_path, concurrency=16)   # a DelegatedTokenSource
    checker = ImapChecker(source, "imap.gmail.com", 993, ssl_context=new_ssl_context(ca_path))
    results, summary = checker.run(users, concurrency=16)
    results[0]    # {"user": ..., "failure_class": "ok" | "imap_disabled" | ..., "phase": ..., "latency_ms": {...}}

Per user (:meth:`ImapChecker.check`): mint a delegated access token (nothing is shared across users but
the loaded key / signer inside the token source), open a TLS connection that verifies the server's
certificate, ``AUTHENTICATE XOAUTH2`` (:class:`ImapConnection`), optionally ``EXAMINE`` a mailbox (read-only, so
NuPoint's view of ``\\Recent`` is left alone), ``LOGOUT``. Each phase is timed.

Why it is built this way:

- One thread pool of ``concurrency`` workers for the whole run (no thread or process per user), one
  ``ssl.SSLContext`` (the CA bundle is parsed once), one keep-alive HTTP pool to the token endpoint
  sized to the pool (the token source's). Nothing is formatted or logged per user.
- Every user has a deadline (``user_timeout``): socket timeouts are cut to what is left of it before
  each phase, and the token source's backoff sleeps go through :func:`deadline_sleep`, which gives up
  instead of sleeping past it. A slow user holds one worker, never the run.
- Only what can succeed on a second try is retried, with exponential backoff and jitter: Gmail's
  ``Too many simultaneous connections``, ``[UNAVAILABLE]``, reset connections, timeouts. Token
  requests are retried inside the token source (HTTP 5xx/429, resets); refusals are never retried.
- Every outcome is one of :data:`FAILURE_CLASSES` (DESIGN.md), decided from the exception chain and the
  server's own words (see :func:`classify_imap_text` for the Gmail texts it knows). Results carry the
  server's text and ids, never a token.

Runs on MSL or the controller: parses as Python 3.6, standard library plus google-auth/requests (through
google_oauth); the IMAP client is standard library only (imapclient is optional, for comparison).
"""

import base64
import csv
import imaplib
import io
import json
import math
import os
import random
import re
import socket
import ssl
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.nupoint.gworkspace.plugins.module_utils.google_oauth import (
    FAILURE_CLASSES as TOKEN_SIDE_CLASSES,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.google_oauth import (
    FAILURE_HINTS as TOKEN_HINTS,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.google_oauth import (
    DelegatedTokenSource,
    TokenError,
    backoff_delay,
    classify_network_error,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.keepalive_http import KeepAliveSession

try:
    from requests.utils import get_environ_proxies as _get_environ_proxies
except ImportError:  # pragma: no cover - google_oauth reports the missing library
    _get_environ_proxies = None  # type: ignore[assignment]

try:
    # Optional: imapclient_factory() (the benchmark's comparison) uses it; the checks do not.
    import imapclient
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_IMAPCLIENT = False
    IMAPCLIENT_IMPORT_ERROR: Optional[str] = traceback.format_exc()
else:
    HAS_IMAPCLIENT = True
    IMAPCLIENT_IMPORT_ERROR = None

DEFAULT_IMAP_HOST = "imap.gmail.com"
DEFAULT_IMAP_PORT = 993
DEFAULT_MAILBOX = "INBOX"
DEFAULT_CONCURRENCY = 16
DEFAULT_USER_TIMEOUT = 60.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
MAX_CONCURRENCY = 256

IMAP_FAILURE_CLASSES = ("imap_disabled", "imap_auth_failed", "imap_other")
FAILURE_CLASSES = tuple(TOKEN_SIDE_CLASSES) + IMAP_FAILURE_CLASSES
PHASES = ("token", "connect", "auth", "select")

# What to do about each class when the IMAP side failed. Token-side classes use google_oauth's hints.
IMAP_HINTS = {
    "dns": "The IMAP server's host name does not resolve: check the node's DNS resolver (/etc/resolv.conf).",
    "connect": (
        "No connection to the IMAP server: check the route and firewall from this node to the IMAP server "
        "(imap.gmail.com, TCP 993)."
    ),
    "tls": (
        "The TLS connection to the IMAP server failed: a wrong system clock makes the certificate look invalid; "
        "an intercepting proxy needs its CA in ca_path."
    ),
    "timeout": "The IMAP server did not answer in time: raise timeout or user_timeout, or check the network path.",
    "imap_disabled": (
        "Gmail refuses IMAP for this user: enable IMAP in the user's Gmail settings "
        "(nupoint.gworkspace.gmail_imap_settings) or, when the text says so, for the domain or organisational unit "
        "(Admin console > Apps > Google Workspace > Gmail > End User Access > POP and IMAP access)."
    ),
    "imap_auth_failed": (
        "The IMAP server refused the access token: check that the token's scope is https://mail.google.com/, "
        "that the address is the user's primary address and that the user is not suspended."
    ),
    "imap_other": "The IMAP server refused the session; see the message for the server's words.",
}

# Gmail's (and Dovecot's) refusal texts, lower case, first match wins. Retryable entries first: a
# "[ALERT] Too many simultaneous connections" must not be taken for an account problem.
_TEXT_CLASSES = (
    # (class, retryable, fragments)
    (
        "imap_other",
        True,
        (
            "too many simultaneous connections",
            "[unavailable]",
            "temporary system problem",
            "try again later",
            "temporary authentication failure",
            "[inuse]",
            "server busy",
            "service unavailable",
        ),
    ),
    (
        "imap_disabled",
        False,
        (
            "not enabled for imap",
            "imap access is disabled",
            "imap is disabled",
            "imap access disabled",
        ),
    ),
    (
        "imap_auth_failed",
        False,
        (
            "[authenticationfailed]",
            "[authorizationfailed]",
            "invalid credentials",
            "authentication failed",
            "[webalert",
            "web login required",
            "log in via your web browser",
            "application-specific password",
            "[contactadmin]",
            "[expired]",
            "account is disabled",
            "suspended",
        ),
    ),
)
_NETWORK_TEXT = (
    # imaplib wraps socket errors in IMAP4.abort("socket error: ...") and reports a closed connection as EOF.
    ("timeout", True, ("timed out", "timeout")),
    ("connect", True, ("eof", "connection reset", "broken pipe", "connection aborted", "socket error")),
)
_MAX_MESSAGE = 400

_local = threading.local()


class ImapFailure(Exception):
    """The IMAP side of a check failed; ``failure_class`` is one of :data:`FAILURE_CLASSES` (never ``ok``)."""

    def __init__(self, failure_class: str, message: str, retryable: bool = False, phase: Optional[str] = None) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.msg = message
        self.retryable = retryable
        self.phase = phase

    def __repr__(self) -> str:
        return "ImapFailure(%r, %r, retryable=%r, phase=%r)" % (
            self.failure_class,
            self.msg,
            self.retryable,
            self.phase,
        )


# --------------------------------------------------------------------------- classification


def _known_text(text: str) -> Optional[Tuple[str, bool]]:
    lowered = (text or "").lower()
    for failure_class, retryable, fragments in _TEXT_CLASSES:
        if any(fragment in lowered for fragment in fragments):
            return failure_class, retryable
    return None


def classify_imap_text(text: str, phase: Optional[str] = None) -> Tuple[str, bool]:
    """``(failure_class, retryable)`` for an IMAP server's refusal text (a ``NO``/``BAD``/``BYE`` line).

    Knows Gmail's texts, for example::

        [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page ...  -> imap_disabled
        [ALERT] IMAP access is disabled for your domain. Please contact your domain administrator ...  -> imap_disabled
        [AUTHENTICATIONFAILED] Invalid credentials (Failure)                                         -> imap_auth_failed
        [ALERT] Too many simultaneous connections. (Failure)                                         -> imap_other, retry
        [UNAVAILABLE] Temporary System Problem. Try again later.                                     -> imap_other, retry

    An unknown refusal of ``AUTHENTICATE`` is ``imap_auth_failed``; anything else unknown is ``imap_other``.
    """
    known = _known_text(text)
    if known is not None:
        return known
    if phase == "auth":
        return "imap_auth_failed", False
    return "imap_other", False


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _exception_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _is_imap_protocol_error(exc: BaseException) -> bool:
    # ImapConnection raises imaplib's exceptions; imapclient's subclass them.
    return isinstance(exc, imaplib.IMAP4.error)


def _is_imap_abort(exc: BaseException) -> bool:
    return isinstance(exc, imaplib.IMAP4.abort)


_BYE_OR_NO = re.compile(r"^(?:\*\s+)?(?:BYE|NO|BAD)\s+", re.IGNORECASE)


def classify_imap_failure(exc: BaseException, phase: str) -> ImapFailure:
    """Turn anything the IMAP side raised during ``phase`` (connect, auth, select) into an :class:`ImapFailure`."""
    if isinstance(exc, ImapFailure):
        if exc.phase is None:
            exc.phase = phase
        return exc
    if _is_imap_protocol_error(exc):
        text = _BYE_OR_NO.sub("", _exception_text(exc).strip())
        if _is_imap_abort(exc) and _known_text(text) is None:
            # The connection broke rather than the server refusing: imaplib says "socket error: EOF" and the like.
            lowered = text.lower()
            for failure_class, retryable, fragments in _NETWORK_TEXT:
                if any(fragment in lowered for fragment in fragments):
                    return ImapFailure(
                        failure_class,
                        "The IMAP connection failed during %s: %s. %s"
                        % (phase, _short(text), IMAP_HINTS[failure_class]),
                        retryable,
                        phase,
                    )
        failure_class, retryable = classify_imap_text(text, phase)
        return ImapFailure(
            failure_class,
            "The IMAP server refused %s: %s. %s"
            % (_PHASE_WORDS.get(phase, phase), _short(text), IMAP_HINTS[failure_class]),
            retryable,
            phase,
        )
    network = classify_network_error(exc)
    if network is not None:
        failure_class, retryable = network
        return ImapFailure(
            failure_class,
            "%s (%s): %s. %s"
            % (_NETWORK_SUMMARY[failure_class], phase, _short(_innermost_text(exc)), IMAP_HINTS[failure_class]),
            retryable,
            phase,
        )
    return ImapFailure(
        "imap_other",
        "The IMAP check failed unexpectedly during %s (%s: %s)."
        % (phase, type(exc).__name__, _short(_exception_text(exc))),
        False,
        phase,
    )


_PHASE_WORDS = {
    "connect": "the connection",
    "auth": "the XOAUTH2 login",
    "select": "to open the mailbox",
}
_NETWORK_SUMMARY = {
    "dns": "Cannot resolve the IMAP server",
    "connect": "Cannot connect to the IMAP server",
    "tls": "TLS failure with the IMAP server",
    "timeout": "The IMAP server timed out",
}


def _innermost_text(exc: BaseException) -> str:
    current = exc
    for _depth in range(10):
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return _exception_text(current)


def xoauth2_error_details(challenge: Union[bytes, str]) -> Optional[Dict[str, Any]]:
    """The JSON error Gmail sends as an XOAUTH2 challenge after a refused token, decoded; None if it is not one.

    Gmail answers a bad token with ``+ eyJzdGF0dXMiOiI0MDAiLC...`` (base64 of
    ``{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}``) and waits for an empty line
    before it sends the tagged ``NO``. imaplib hands the challenge over already base64-decoded.
    """
    if isinstance(challenge, str):
        challenge = challenge.encode("utf-8", "replace")
    if not challenge:
        return None
    candidates = [challenge]
    try:
        candidates.append(base64.b64decode(challenge, validate=True))
    except (ValueError, TypeError):
        pass
    for candidate in candidates:
        try:
            data = json.loads(candidate.decode("utf-8", "replace"))
        except ValueError:
            continue
        if isinstance(data, Mapping):
            return {str(name): str(value) for name, value in data.items() if name in ("status", "schemes", "scope")}
    return None


class _XOAuth2Exchange:
    """The client side of SASL XOAUTH2: the initial response, then an empty reply to an error challenge.

    imapclient's ``oauth2_login`` answers every challenge with the credentials again; answering the error
    challenge with an empty line is what the mechanism specifies, and keeps the server's JSON error.
    """

    def __init__(self, user: str, access_token: str) -> None:
        self._initial = "user=%s\x01auth=Bearer %s\x01\x01" % (user, access_token)
        self._sent = False
        self.error_details: Optional[Dict[str, Any]] = None

    def __call__(self, challenge: bytes) -> str:
        if not self._sent:
            self._sent = True
            return self._initial
        self.error_details = xoauth2_error_details(challenge)
        return ""

    def __repr__(self) -> str:
        return "_XOAuth2Exchange(sent=%r)" % self._sent


# --------------------------------------------------------------------------- the IMAP client


_GREETING_CAPABILITY = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_MAX_LINE = 65536


def imap_utf7(name: str) -> bytes:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out = bytearray()
    pending: List[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.extend(b"&" + encoded + b"-")
            del pending[:]

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            pending.append(char)
    flush()
    return bytes(out)


def _quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class ImapConnection:
    """Just the IMAP a login check needs, over one verified TLS connection: greeting, AUTHENTICATE, EXAMINE, LOGOUT.

    The checks use this rather than imapclient: measured against the lab, imapclient (over imaplib) spends
    0.6-0.8 ms more client CPU per user (a CAPABILITY round trip imaplib always makes, a regular expression
    compiled per connection, a response parser for SELECT data nobody reads) and one more network round
    trip; at 2,500 users that was the difference between missing and meeting the 1.25x-of-the-floor target.
    ``AUTHENTICATE`` sends the initial response at once (SASL-IR) when the greeting advertises it, as
    Dovecot's does, and waits for the empty continuation otherwise, as Gmail's greeting (no capabilities)
    requires; an error challenge is answered as :class:`_XOAuth2Exchange` says.

    Failures are imaplib's exception types, so one classifier serves both: ``imaplib.IMAP4.error`` with the
    server's text for ``NO``/``BAD``, ``imaplib.IMAP4.abort`` for ``BYE`` and a dropped connection
    (``socket error: EOF``); socket and TLS errors propagate as they are. Same surface as imapclient's
    ``IMAPClient`` for what :class:`ImapChecker` calls: ``socket()``, ``sasl_login()``, ``select_folder()``,
    ``logout()``, ``shutdown()``.
    """

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext, timeout: Optional[float]) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            self._sock = ssl_context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self._file = self._sock.makefile("rb")
        self._tag = 0
        self._bye: Optional[str] = None
        try:
            greeting = self._line()
        except BaseException:
            self.shutdown()
            raise
        if not greeting.startswith(b"* OK"):
            self.shutdown()
            raise imaplib.IMAP4.abort(_text(greeting))
        found = _GREETING_CAPABILITY.search(greeting)
        self.capabilities = frozenset(found.group(1).upper().split()) if found else frozenset()

    def socket(self) -> ssl.SSLSocket:
        return self._sock

    def _line(self) -> bytes:
        line = self._file.readline(_MAX_LINE)
        if not line:
            raise imaplib.IMAP4.abort(self._bye or "socket error: EOF")
        if not line.endswith(b"\n"):
            raise imaplib.IMAP4.abort("response line longer than %d bytes" % _MAX_LINE)
        literal = _LITERAL_AT_END.search(line)
        while literal:  # a response that carries a literal continues after its bytes
            line += self._file.read(int(literal.group(1))) + self._file.readline(_MAX_LINE)
            literal = _LITERAL_AT_END.search(line)
        return line

    def _command(self, command: bytes, continuation: Optional[Callable[[bytes], bytes]] = None) -> Tuple[bytes, str]:
        """Send ``command``; ``(OK|NO|BAD, text)`` of its tagged answer. ``continuation`` answers ``+`` lines."""
        self._tag += 1
        tag = b"n%d" % self._tag
        self._sock.sendall(tag + b" " + command + b"\r\n")
        while True:
            line = self._line()
            if line.startswith(b"+"):
                if continuation is None:
                    raise imaplib.IMAP4.abort("unexpected continuation request: %s" % _text(line))
                self._sock.sendall(continuation(line[1:].strip()) + b"\r\n")
            elif line.startswith(tag + b" "):
                status, _sep, text = line[len(tag) + 1 :].partition(b" ")
                return status.upper(), _text(text)
            elif line[:6].upper() == b"* BYE ":
                self._bye = _text(line[6:])
                if not command.startswith(b"LOGOUT"):
                    raise imaplib.IMAP4.abort(self._bye)

    def sasl_login(self, mechanism: str, exchange: Callable[[bytes], str]) -> None:
        """``AUTHENTICATE`` with ``exchange(challenge) -> response`` (decoded challenge, response text)."""

        def answer(challenge: bytes) -> bytes:
            try:
                decoded = base64.b64decode(challenge)
            except ValueError:
                decoded = challenge
            return base64.b64encode(exchange(decoded).encode("utf-8"))

        command = b"AUTHENTICATE " + mechanism.encode("ascii")
        if b"SASL-IR" in self.capabilities:
            command += b" " + (base64.b64encode(exchange(b"").encode("utf-8")) or b"=")
        status, text = self._command(command, answer)
        if status != b"OK":
            raise imaplib.IMAP4.error(text)

    def select_folder(self, folder: str, readonly: bool = True) -> None:
        verb = b"EXAMINE " if readonly else b"SELECT "
        status, text = self._command(verb + _quoted(imap_utf7(folder)))
        if status != b"OK":
            raise imaplib.IMAP4.error("select failed: %s" % text)

    def logout(self) -> None:
        try:
            self._command(b"LOGOUT")
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __repr__(self) -> str:
        return "ImapConnection(capabilities=%d, tag=%d)" % (len(self.capabilities), self._tag)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


# --------------------------------------------------------------------------- deadlines


def current_deadline() -> Optional[float]:
    """This thread's per-user deadline (``time.monotonic()`` value) while a check runs, else None."""
    return getattr(_local, "deadline", None)


def deadline_sleep(seconds: float) -> None:
    """``time.sleep`` that will not sleep past the current user's deadline: it raises ``TokenError(timeout)``.

    Pass it as the token source's ``sleep`` so its retry backoff respects :class:`ImapChecker`'s per-user
    deadline. Outside a check it is plain ``time.sleep``.
    """
    deadline = current_deadline()
    if deadline is not None and time.monotonic() + seconds > deadline:
        raise TokenError(
            "timeout",
            "The token endpoint kept failing and the next retry would pass this user's time limit (user_timeout). %s"
            % TOKEN_HINTS["timeout"],
            retryable=True,
        )
    time.sleep(seconds)


# --------------------------------------------------------------------------- token source


def token_environment(ca_path: Optional[str], token_uri: str) -> Tuple[Union[bool, str], Dict[str, str]]:
    """``(verify, proxies)`` for the token source's session: the environment, read once.

    requests' ``Session`` costs about 0.9 ms of CPU per token beyond the request itself, half of it
    re-reading every environment variable on every request (proxies, ``no_proxy``, CA bundle, netrc).
    The token URI is the same for the whole run, so its proxy (``no_proxy`` honoured) and the CA bundle
    (``ca_path``, else ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` as requests would, else the system
    store) are resolved here, once, for :class:`keepalive_http.KeepAliveSession`.
    """
    proxies = _get_environ_proxies(token_uri) if _get_environ_proxies is not None else {}
    verify = ca_path or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify, {scheme: url for scheme, url in proxies.items() if scheme != "no"}


def new_token_source(
    key_info: Any,
    scope: str,
    token_uri: Optional[str] = None,
    ca_path: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Any:
    """A :class:`google_oauth.DelegatedTokenSource` set up for a run of checks.

    The key is loaded once (the signer is the only thing users share); HTTP goes over lean keep-alive
    connections, one per worker thread (``concurrency`` of them); backoff sleeps respect the current user's deadline (:func:`deadline_sleep`); the
    environment's proxy and CA settings are resolved once for the token URI (:func:`token_environment`).
    Raises ``TokenError`` (``token_invalid_key``, or ``token_other`` when libraries are missing).
    """
    session = KeepAliveSession()
    source = DelegatedTokenSource(
        key_info,
        [scope],
        token_uri=token_uri,
        ca_path=ca_path,
        timeout=timeout,
        retries=retries,
        max_connections=concurrency,
        sleep=deadline_sleep,
        session=session,
    )
    # The token URI comes from the key unless overridden, so it is known only now; no request was made yet.
    session.verify, session.proxies = token_environment(ca_path, source.token_uri)
    return source


# --------------------------------------------------------------------------- TLS


def new_ssl_context(ca_path: Optional[str] = None) -> ssl.SSLContext:
    """One client context for every IMAP connection of a run: certificate and host name verified.

    ``ca_path``: a PEM bundle to trust instead of the system store (a test server, an intercepting proxy).
    """
    if ca_path:
        return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=ca_path)
    return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)


# --------------------------------------------------------------------------- the checker


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


class ImapChecker:
    """Checks users' IMAP logins; thread-safe, reusable across runs.

    ``token_source``: anything with ``token(subject, scopes=None) -> (access_token, expiry)`` raising
    ``TokenError`` (a :class:`google_oauth.DelegatedTokenSource`, built with ``sleep=deadline_sleep`` and
    ``max_connections`` = concurrency). ``ssl_context``: from :func:`new_ssl_context`. ``timeout``: seconds
    per network operation; ``user_timeout``: seconds for one user, retries included. ``retries``: extra
    attempts for retryable IMAP failures. ``select_mailbox``: mailbox to ``EXAMINE``, empty to skip.
    ``client_factory(host, port, ssl_context, timeout)``: returns the IMAP client (default
    :class:`ImapConnection`; :func:`imapclient_factory`, or a fake in tests).
    """

    def __init__(
        self,
        token_source: Any,
        host: str = DEFAULT_IMAP_HOST,
        port: int = DEFAULT_IMAP_PORT,
        ssl_context: Optional[ssl.SSLContext] = None,
        timeout: float = DEFAULT_TIMEOUT,
        user_timeout: float = DEFAULT_USER_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        select_mailbox: Optional[str] = DEFAULT_MAILBOX,
        scopes: Optional[Sequence[str]] = None,
        backoff_base: float = 1.0,
        backoff_max: float = 16.0,
        client_factory: Optional[Callable[..., Any]] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if client_factory is None:
            client_factory = ImapConnection
        self.token_source = token_source
        self.host = host
        self.port = int(port)
        self.ssl_context = ssl_context if ssl_context is not None else new_ssl_context()
        self.timeout = float(timeout)
        self.user_timeout = float(user_timeout)
        self.retries = max(0, int(retries))
        self.select_mailbox = select_mailbox or None
        self.scopes = list(scopes) if scopes else None
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._client_factory = client_factory
        self._clock = clock
        self._sleep = sleep
        self._rng = rng

    # ------------------------------------------------------------------ one user

    def check(self, user: str) -> Dict[str, Any]:
        """Check one user; never raises.

        Returns ``{"user", "failure_class", "phase", "message", "attempts", "latency_ms"}`` (plus
        ``google_error`` when Google refused the token): ``phase`` is where it failed (None when ok),
        ``latency_ms`` has ``token``, ``connect``, ``auth``, ``select`` (each phase that ran) and ``total``.
        """
        started = self._clock()
        deadline = started + self.user_timeout
        previous = current_deadline()
        _local.deadline = deadline
        latency: Dict[str, float] = {}
        attempts = 0
        token: Optional[str] = None
        try:
            while True:
                attempts += 1
                try:
                    if token is None:
                        phase_start = self._clock()
                        token = self._mint(user)
                        latency["token"] = _ms(self._clock() - phase_start)
                    self._imap_session(user, token, deadline, latency)
                    return self._result(user, "ok", None, "", attempts, latency, started)
                except TokenError as exc:
                    # The token source retried what it could; a refusal is final.
                    return self._result(
                        user,
                        exc.failure_class,
                        "token",
                        exc.msg,
                        max(attempts, exc.attempts),
                        latency,
                        started,
                        google_error=exc.google_error,
                    )
                except ImapFailure as exc:
                    wait = backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng)
                    if exc.retryable and attempts <= self.retries and self._clock() + wait < deadline:
                        self._sleep(wait)
                        continue
                    return self._result(user, exc.failure_class, exc.phase, exc.msg, attempts, latency, started)
        except Exception as exc:  # noqa: BLE001 - one user's surprise must not end the run
            return self._result(
                user,
                "imap_other",
                None,
                "The check failed unexpectedly (%s: %s)." % (type(exc).__name__, _short(_exception_text(exc))),
                attempts,
                latency,
                started,
            )
        finally:
            _local.deadline = previous

    def _mint(self, user: str) -> str:
        if self.scopes is None:
            return self.token_source.token(user)[0]
        return self.token_source.token(user, self.scopes)[0]

    def _remaining(self, deadline: float, phase: str) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ImapFailure(
                "timeout",
                "This user's time limit (user_timeout=%g s) ran out before %s. %s"
                % (self.user_timeout, _PHASE_WORDS.get(phase, phase), IMAP_HINTS["timeout"]),
                False,
                phase,
            )
        return min(self.timeout, remaining)

    def _imap_session(self, user: str, token: str, deadline: float, latency: Dict[str, float]) -> None:
        client = None
        phase = "connect"
        try:
            phase_start = self._clock()
            client = self._client_factory(self.host, self.port, self.ssl_context, self._remaining(deadline, phase))
            latency["connect"] = _ms(self._clock() - phase_start)

            phase = "auth"
            client.socket().settimeout(self._remaining(deadline, phase))
            phase_start = self._clock()
            exchange = _XOAuth2Exchange(user, token)
            try:
                _authenticate(client, exchange, user, token)
            except Exception as exc:  # noqa: BLE001 - classified below, with the XOAUTH2 error if any
                failure = classify_imap_failure(exc, phase)
                if exchange.error_details:
                    failure.msg = "%s (XOAUTH2 error: %s)" % (
                        failure.msg,
                        ", ".join("%s %s" % item for item in sorted(exchange.error_details.items())),
                    )
                raise failure from None
            latency["auth"] = _ms(self._clock() - phase_start)

            if self.select_mailbox:
                phase = "select"
                client.socket().settimeout(self._remaining(deadline, phase))
                phase_start = self._clock()
                client.select_folder(self.select_mailbox, readonly=True)
                latency["select"] = _ms(self._clock() - phase_start)

            phase = "logout"
            done, client = client, None
            _logout_quietly(done, self.timeout)
        except ImapFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every transport or protocol failure is classified
            raise classify_imap_failure(exc, phase) from None
        finally:
            if client is not None:
                _shutdown_quietly(client)

    def _result(
        self,
        user: str,
        failure_class: str,
        phase: Optional[str],
        message: str,
        attempts: int,
        latency: Dict[str, float],
        started: float,
        google_error: Optional[str] = None,
    ) -> Dict[str, Any]:
        latency = dict(latency)
        latency["total"] = _ms(self._clock() - started)
        result = {
            "user": user,
            "failure_class": failure_class,
            "phase": phase,
            "message": message,
            "attempts": attempts,
            "latency_ms": latency,
        }
        if google_error:
            result["google_error"] = google_error
        return result

    # ------------------------------------------------------------------ many users

    def run(
        self, users: Sequence[str], concurrency: int = DEFAULT_CONCURRENCY
    ) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        """Check ``users`` with at most ``concurrency`` at a time; ``(results in input order, summary)``.

        When the servers cannot be reached at all (the first ``max(20, 2 * concurrency)`` users in a row
        failed with the same network class before logging in), the remaining users are not tried: each
        gets that class and a message saying so (``attempts`` 0). A firewall that drops packets would
        otherwise cost ``user_timeout`` per user.
        """
        started = self._clock()
        results: List[Optional[Dict[str, Any]]] = [None] * len(users)
        workers = max(1, min(int(concurrency), MAX_CONCURRENCY, len(users) or 1))
        breaker = _Unreachable(max(20, 2 * workers))
        if workers == 1:
            for index, user in enumerate(users):
                results[index] = self._check_unless_unreachable(user, breaker)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imap_check") as pool:
                futures = {
                    pool.submit(self._check_unless_unreachable, user, breaker): index
                    for index, user in enumerate(users)
                }
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
        duration = self._clock() - started
        final = [result for result in results if result is not None]
        return final, summarize(final, duration, workers)

    def _check_unless_unreachable(self, user: str, breaker: "_Unreachable") -> Dict[str, Any]:
        cause = breaker.cause
        if cause is None:
            result = self.check(user)
            breaker.record(result)
            return result
        return {
            "user": user,
            "failure_class": cause["failure_class"],
            "phase": cause["phase"],
            "message": "Not tried: the previous %d users all failed with %s before logging in, so this one would "
            "too. Last error: %s" % (breaker.threshold, cause["failure_class"], cause["message"]),
            "attempts": 0,
            "latency_ms": {"total": 0.0},
        }


class _Unreachable:
    """Counts users in a row that failed with the same network class before the login; trips at ``threshold``."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.cause: Optional[Dict[str, Any]] = None
        self._streak = 0
        self._last_class: Optional[str] = None
        self._lock = threading.Lock()

    def record(self, result: Mapping[str, Any]) -> None:
        failure_class = result["failure_class"]
        unreachable = failure_class in _NETWORK_CLASSES and result.get("phase") in ("token", "connect")
        with self._lock:
            if unreachable and failure_class == self._last_class:
                self._streak += 1
            elif unreachable:
                self._streak, self._last_class = 1, failure_class
            else:
                self._streak, self._last_class = 0, None
            if self._streak >= self.threshold and self.cause is None:
                self.cause = dict(result)


_NETWORK_CLASSES = ("dns", "connect", "tls", "timeout")


def _authenticate(client: Any, exchange: _XOAuth2Exchange, user: str, token: str) -> None:
    sasl_login = getattr(client, "sasl_login", None)
    if sasl_login is not None:
        sasl_login("XOAUTH2", exchange)
    else:  # imapclient < 3 has no sasl_login
        client.oauth2_login(user, token)


def _logout_quietly(client: Any, timeout: float) -> None:
    # The verdict is in; a server that drops the connection at LOGOUT changes nothing.
    try:
        client.socket().settimeout(min(timeout, 5.0))
        client.logout()
    except Exception:  # noqa: BLE001
        _shutdown_quietly(client)


def _shutdown_quietly(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001, S110 - the connection is being abandoned anyway
        pass


def imapclient_factory(host: str, port: int, ssl_context: ssl.SSLContext, timeout: float) -> Any:
    """An imapclient ``IMAPClient`` as :class:`ImapChecker`'s ``client_factory`` (needs imapclient).

    Not what the module uses: ``bench/imap_check.py`` runs it to show what :class:`ImapConnection` saves.
    """
    client = imapclient.IMAPClient(host, port=port, ssl=True, ssl_context=ssl_context, timeout=timeout)
    # imapclient switches imaplib's protocol trace on (debug 5) and formats every line it sends or
    # receives, only for its logger to drop them. Off: less CPU per user, and no trace to leak.
    inner = getattr(client, "_imap", None)
    if inner is not None:
        inner.debug = 0
    return client


# --------------------------------------------------------------------------- summary


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(results: Sequence[Mapping[str, Any]], duration: float, concurrency: int) -> Dict[str, Any]:
    """Counts per class (every class present, zeros included), totals, throughput and per-phase latency."""
    by_class = dict.fromkeys(FAILURE_CLASSES, 0)
    samples: Dict[str, List[float]] = {phase: [] for phase in (*PHASES, "total")}
    for result in results:
        by_class[result["failure_class"]] = by_class.get(result["failure_class"], 0) + 1
        for phase, value in result.get("latency_ms", {}).items():
            if phase in samples:
                samples[phase].append(value)
    latency = {}
    for phase, values in samples.items():
        if values:
            values.sort()
            latency[phase] = {
                "p50": _percentile(values, 0.5),
                "p95": _percentile(values, 0.95),
                "max": values[-1],
            }
    total = len(results)
    return {
        "total": total,
        "ok": by_class["ok"],
        "failed": total - by_class["ok"],
        "by_class": by_class,
        "duration_seconds": round(duration, 3),
        "users_per_second": round(total / duration, 1) if duration > 0 else 0.0,
        "concurrency": concurrency,
        "latency_ms": latency,
    }


def failed_users(results: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """``user``, ``failure_class``, ``message`` of every user that is not ``ok``."""
    return [
        {"user": result["user"], "failure_class": result["failure_class"], "message": result["message"]}
        for result in results
        if result["failure_class"] != "ok"
    ]


# --------------------------------------------------------------------------- report


REPORT_FIELDS = (
    "user",
    "failure_class",
    "phase",
    "attempts",
    "token_ms",
    "connect_ms",
    "auth_ms",
    "select_ms",
    "total_ms",
    "message",
)


def report_paths(report_path: str) -> Tuple[str, str]:
    """``(json_path, csv_path)``: the JSON at ``report_path``, the CSV next to it with a ``.csv`` suffix."""
    root, extension = os.path.splitext(report_path)
    if extension.lower() == ".json":
        return report_path, root + ".csv"
    if extension.lower() == ".csv":
        return root + ".json", report_path
    return report_path, report_path + ".csv"


def report_documents(
    results: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], meta: Mapping[str, Any]
) -> Tuple[bytes, bytes]:
    """The JSON and CSV reports' bytes. The CSV has one row per user (:data:`REPORT_FIELDS`)."""
    document = {"meta": dict(meta), "summary": dict(summary), "results": list(results)}
    json_bytes = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for result in results:
        latency = result.get("latency_ms", {})
        writer.writerow(
            [
                _csv_safe(result["user"]),
                result["failure_class"],
                result.get("phase") or "",
                result.get("attempts", ""),
                latency.get("token", ""),
                latency.get("connect", ""),
                latency.get("auth", ""),
                latency.get("select", ""),
                latency.get("total", ""),
                _csv_safe(result.get("message", "")),
            ]
        )
    return json_bytes, buffer.getvalue().encode("utf-8")


def _csv_safe(value: Any) -> str:
    # A cell starting with = + - @ is a formula to spreadsheet programs; server texts are not ours to trust.
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_private_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` (the report lists users: 0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def write_report(
    report_path: str, results: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], meta: Mapping[str, Any]
) -> Dict[str, str]:
    """Write the JSON and CSV reports (atomically, mode 0600); return ``{"json": path, "csv": path}``."""
    json_path, csv_path = report_paths(report_path)
    json_bytes, csv_bytes = report_documents(results, summary, meta)
    write_private_file(json_path, json_bytes)
    write_private_file(csv_path, csv_bytes)
    return {"json": json_path, "csv": csv_path}
