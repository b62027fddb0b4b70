# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IMAP client a login check needs, and nothing else: greeting, ``AUTHENTICATE XOAUTH2``, ``EXAMINE``, ``LOGOUT``.

A check is a handful of round trips, and 40 ms away from the server the round trips are its cost, so the
client waits for as few as the protocol allows (:class:`ImapConnection`): the TCP handshake can run while
the caller mints the user's token (:func:`start_connect`), the ``AUTHENTICATE`` leaves with the TLS
handshake's last flight once the run knows the server takes SASL-IR (:class:`ServerProfile`), and
``EXAMINE`` and ``LOGOUT`` go out together (:meth:`ImapConnection.select_and_logout`). Against the lab's
Dovecot that is 4 round trips per user instead of 7, token request included.

Failures are imaplib's exception types so that ``failures.classify_imap_failure`` serves this client and
imapclient alike. Standard library only; parses as Python 2.7 and 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import errno
import imaplib
import json
import re
import select
import socket
import ssl  # noqa: F401 - named in type comments

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


def xoauth2_error_details(challenge):  # type: (Union[bytes, str]) -> Optional[Dict[str, Any]]
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


class XOAuth2Exchange:
    """The client side of SASL XOAUTH2: the initial response, then an empty reply to an error challenge.

    imapclient's ``oauth2_login`` answers every challenge with the credentials again; answering the error
    challenge with an empty line is what the mechanism specifies, and keeps the server's JSON error.
    """

    def __init__(self, user, access_token):  # type: (str, str) -> None
        self._initial = "user=%s\x01auth=Bearer %s\x01\x01" % (user, access_token)
        self._sent = False
        self.error_details = None  # type: Optional[Dict[str, Any]]

    def __call__(self, challenge):  # type: (bytes) -> str
        if not self._sent:
            self._sent = True
            return self._initial
        self.error_details = xoauth2_error_details(challenge)
        return ""

    def __repr__(self):  # type: () -> str
        return "XOAuth2Exchange(sent=%r)" % self._sent


# --------------------------------------------------------------------------- the IMAP client


_GREETING_CAPABILITY = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_MAX_LINE = 65536


def imap_utf7(name):  # type: (str) -> bytes
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out = bytearray()
    pending = []  # type: List[str]

    def flush():  # type: () -> None
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


def _quoted(value):  # type: (bytes) -> bytes
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class ServerProfile:
    """What a run has learnt about its IMAP server from the greetings so far, shared by its connections.

    ``capabilities``: those of the first greeting that listed any (None before). A connection that knows
    the server takes SASL-IR sends its ``AUTHENTICATE`` right after the TLS handshake and reads the
    greeting afterwards, one round trip less (RFC 3501 lets a client send before it has read the greeting;
    the server reads the command once it has greeted). Gmail's greeting lists no capabilities, so nothing
    is learnt from it and every connection there reads the greeting first. Plain attribute writes: safe
    to share between threads.
    """

    def __init__(self):  # type: () -> None
        self.capabilities = None  # type: Optional[frozenset]

    def __repr__(self):  # type: () -> str
        return "ServerProfile(capabilities=%r)" % (None if self.capabilities is None else len(self.capabilities))


_IN_PROGRESS = (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN)


def start_connect(host, port):  # type: (str, int) -> Optional[socket.socket]
    """A TCP connection to ``host:port`` begun and not waited for, or None when it cannot even begin.

    The kernel carries the handshake out while the caller does something else (``imap_login`` mints the
    user's token meanwhile); :class:`ImapConnection` takes the socket as ``sock`` and finishes it. Nothing
    is raised here: when the name does not resolve or the socket cannot be made, the connection is made the
    usual way later and fails there, with the usual error.
    """
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except (socket.error, UnicodeError):
        return None
    if not infos:
        return None
    family, socktype, proto, _name, address = infos[0]
    sock = None
    try:
        sock = socket.socket(family, socktype, proto)
        sock.setblocking(False)
        code = sock.connect_ex(address)
    except socket.error:
        if sock is not None:
            sock.close()
        return None
    if code not in _IN_PROGRESS:
        sock.close()
        return None
    return sock


def _writable(sock, timeout):  # type: (socket.socket, Optional[float]) -> bool
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    return bool(select.select([], [sock], [], timeout)[1])


def _finish_connect(sock, timeout):  # type: (socket.socket, Optional[float]) -> Optional[socket.socket]
    """The socket :func:`start_connect` began, connected and blocking with ``timeout``.

    None (the socket closed) when that connection failed: the caller connects the usual way, which tries
    every address of the name and raises the usual error. ``socket.timeout`` when it did not complete in
    ``timeout`` seconds, as ``socket.create_connection`` would.
    """
    try:
        if not _writable(sock, timeout):
            sock.close()
            raise socket.timeout("timed out")
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            sock.close()
            return None
        sock.settimeout(timeout)
    except socket.timeout:
        raise
    except (socket.error, ValueError):
        sock.close()
        return None
    return sock


class ImapConnection:
    """Just the IMAP a login check needs, over one verified TLS connection: greeting, AUTHENTICATE, EXAMINE, LOGOUT.

    The checks use this rather than imapclient: measured against the lab, imapclient (over imaplib) spends
    0.6-0.8 ms more client CPU per user (a CAPABILITY round trip imaplib always makes, a regular expression
    compiled per connection, a response parser for SELECT data nobody reads) and one more network round
    trip; at 2,500 users that was the difference between missing and meeting the 1.25x-of-the-floor target.
    ``AUTHENTICATE`` sends the initial response at once (SASL-IR) when the greeting advertises it, as
    Dovecot's does, and waits for the empty continuation otherwise, as Gmail's greeting (no capabilities)
    requires; an error challenge is answered as :class:`XOAuth2Exchange` says.

    Round trips: ``sock`` is a connection :func:`start_connect` began (the TCP handshake then costs the
    caller nothing it was not waiting for anyway); with a ``profile`` that knows the server takes SASL-IR,
    the greeting is read after ``AUTHENTICATE`` was sent (:attr:`greeted` says whether it has been read
    yet, so that a failure can be put down to the greeting); :meth:`select_and_logout` pipelines the last
    two commands.

    Failures are imaplib's exception types, so one classifier serves both: ``imaplib.IMAP4.error`` with the
    server's text for ``NO``/``BAD``, ``imaplib.IMAP4.abort`` for ``BYE`` and a dropped connection
    (``socket error: EOF``); socket and TLS errors propagate as they are. Same surface as imapclient's
    ``IMAPClient`` for what :class:`ImapChecker` calls: ``socket()``, ``sasl_login()``, ``select_folder()``,
    ``logout()``, ``shutdown()``.
    """

    start_connect = staticmethod(start_connect)

    def __init__(self, host, port, ssl_context, timeout, profile=None, sock=None):
        # type: (str, int, ssl.SSLContext, Optional[float], Optional[ServerProfile], Optional[socket.socket]) -> None
        raw = _finish_connect(sock, timeout) if sock is not None else None
        if raw is None:
            raw = socket.create_connection((host, port), timeout=timeout)
        try:
            self._sock = ssl_context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self._file = self._sock.makefile("rb")
        self._tag = 0
        self._bye = None  # type: Optional[str]
        self.greeted = False
        known = profile.capabilities if profile is not None else None
        self.capabilities = known or frozenset()  # type: frozenset
        if known is None or b"SASL-IR" not in known:
            self._greet()
            if profile is not None and self.capabilities:
                profile.capabilities = self.capabilities

    def _greet(self):  # type: () -> None
        """Read the greeting: ``* OK`` (its capabilities kept when it lists them), else the connection ends."""
        try:
            greeting = self._line()
        except BaseException:
            self.shutdown()
            raise
        if not greeting.startswith(b"* OK"):
            self.shutdown()
            raise imaplib.IMAP4.abort(_text(greeting))
        found = _GREETING_CAPABILITY.search(greeting)
        if found:
            self.capabilities = frozenset(found.group(1).upper().split())
        self.greeted = True

    def socket(self):  # type: () -> ssl.SSLSocket
        return self._sock

    def _line(self):  # type: () -> bytes
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

    def _send(self, *commands):  # type: (*bytes) -> List[bytes]
        """Send ``commands`` in one write (pipelined); their tags."""
        tags = []
        lines = []
        for command in commands:
            self._tag += 1
            tag = b"n%d" % self._tag
            tags.append(tag)
            lines.append(tag + b" " + command + b"\r\n")
        self._sock.sendall(b"".join(lines))
        return tags

    def _command(self, command, continuation=None):  # type: (bytes, Optional[Callable[[bytes], bytes]]) -> Tuple[bytes, str]
        """Send ``command``; ``(OK|NO|BAD, text)`` of its tagged answer. ``continuation`` answers ``+`` lines."""
        return self._answer(self._send(command)[0], command, continuation)

    def _answer(self, tag, command, continuation=None):  # type: (bytes, bytes, Optional[Callable[[bytes], bytes]]) -> Tuple[bytes, str]
        """``(OK|NO|BAD, text)`` of the tagged answer to ``command``, sent as ``tag``."""
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

    def sasl_login(self, mechanism, exchange):  # type: (str, Callable[[bytes], str]) -> None
        """``AUTHENTICATE`` with ``exchange(challenge) -> response`` (decoded challenge, response text)."""

        def answer(challenge):  # type: (bytes) -> bytes
            try:
                decoded = base64.b64decode(challenge)
            except ValueError:
                decoded = challenge
            return base64.b64encode(exchange(decoded).encode("utf-8"))

        command = b"AUTHENTICATE " + mechanism.encode("ascii")
        if b"SASL-IR" in self.capabilities:
            command += b" " + (base64.b64encode(exchange(b"").encode("utf-8")) or b"=")
        tag = self._send(command)[0]
        if not self.greeted:
            self._greet()
        status, text = self._answer(tag, command, answer)
        if status != b"OK":
            raise imaplib.IMAP4.error(text)

    def select_folder(self, folder, readonly=True):  # type: (str, bool) -> None
        verb = b"EXAMINE " if readonly else b"SELECT "
        status, text = self._command(verb + _quoted(imap_utf7(folder)))
        if status != b"OK":
            raise imaplib.IMAP4.error("select failed: %s" % text)

    def select_and_logout(self, folder, readonly=True):  # type: (str, bool) -> None
        """:meth:`select_folder` and :meth:`logout` in one round trip: both commands go out together.

        Raises as :meth:`select_folder` does; the connection is closed in any case. A failed ``LOGOUT``
        changes nothing: the verdict is in once the mailbox answered.
        """
        verb = b"EXAMINE " if readonly else b"SELECT "
        command = verb + _quoted(imap_utf7(folder))
        try:
            select_tag, logout_tag = self._send(command, b"LOGOUT")
            status, text = self._answer(select_tag, command)
            try:
                self._answer(logout_tag, b"LOGOUT")
            except Exception:  # noqa: BLE001, S110 - the verdict is in
                pass
        finally:
            self.shutdown()
        if status != b"OK":
            raise imaplib.IMAP4.error("select failed: %s" % text)

    def logout(self):  # type: () -> None
        try:
            self._command(b"LOGOUT")
        finally:
            self.shutdown()

    def shutdown(self):  # type: () -> None
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __repr__(self):  # type: () -> str
        return "ImapConnection(capabilities=%d, tag=%d)" % (len(self.capabilities), self._tag)


def _text(raw):  # type: (bytes) -> str
    return raw.decode("utf-8", "replace").strip()
