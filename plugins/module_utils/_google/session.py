# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTPS session factory for everything that talks to Google.

:func:`new_session` returns one of two sessions with the same surface (``request``, ``head``, ``close``):

- ``lean=False``: a pooled ``requests.Session`` for the token endpoint and every API host, so a run over
  2,500 users keeps its TLS connections alive. It verifies against ``ca_path`` whenever one is given:
  ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` in the environment would otherwise silently replace
  ``session.verify`` for every request that does not pass ``verify=`` itself (requests'
  ``merge_environment_settings``), and google-auth's transport does not. Without ``ca_path`` requests'
  usual default applies. Cookies are refused (no Google endpoint we call needs them), which keeps the
  shared session free of mutable state; retries are the callers' (urllib3's would hide what happened).
- ``lean=True``: :class:`KeepAliveSession`, the part of ``requests.Session`` the token source uses, on
  the standard library's ``http.client``, for one URL hit thousands of times (``imap_check`` mints a
  token per user). Through ``requests`` each token request costs about 0.9 ms of client CPU beyond the
  request itself (request preparation, hooks, adapters, urllib3 pools, and re-reading every proxy and
  CA variable of the environment per request); here about 0.3 ms. That is a sixth of the client's CPU per
  user on a host (MSL) whose cores also run NuPoint. The environment's proxy (``no_proxy`` honoured) and
  CA bundle are resolved once, for the one URL (:func:`environment_for`).

The lean session keeps one connection per thread and host (threads never share one, so no locking on
the hot path), reused while the server keeps it open; a request on a kept-alive connection that the
server has closed meanwhile is sent again once on a fresh one (what urllib3 does); HTTPS is verified
against ``verify`` (a CA file or directory, or ``True`` for the system store; ``False`` is refused); an
HTTPS proxy, when given, is used through ``CONNECT`` with optional basic credentials. Its errors are
the standard library's, which ``failures.classify_network_error`` classifies like requests' own.

Parses as Python 3.6; ``requests`` is needed for ``lean=False`` only (import guarded).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import ssl
import threading
import traceback

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, List, Optional, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible.module_utils.six import text_type

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import (
    RemoteDisconnected,
    http_client,
    is_stale_connection_error,
    unquote,
    urlsplit,
)

try:
    import requests
    from requests.adapters import HTTPAdapter
    from requests.utils import get_environ_proxies
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()  # type: Optional[str]
    _SessionBase = object  # type: Any
    get_environ_proxies = None  # type: ignore[assignment]
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
    _SessionBase = requests.Session

DEFAULT_MAX_CONNECTIONS = 10

USER_AGENT = "nupoint.gworkspace (python http.client)"
# A kept-alive connection the server closed shows up as one of these on the next request.


def _is_stale(exc):  # type: (BaseException) -> bool
    """The server closed a kept-alive connection: the request is sent again once, on a new connection."""
    return isinstance(exc, RemoteDisconnected) or is_stale_connection_error(exc)


class Response:
    """What google-auth's transport adapter reads: ``status_code``, ``headers`` (case-insensitive), ``content``."""

    def __init__(self, status_code, headers, content):  # type: (int, Any, bytes) -> None
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def __repr__(self):  # type: () -> str
        return "Response(%d, %d bytes)" % (self.status_code, len(self.content))


def ssl_context_for(verify):  # type: (Union[bool, str, None]) -> ssl.SSLContext
    """A verifying client context: ``True``/None = system store, a file = CA bundle, a directory = CA path.

    The one TLS client context factory of the collection: the lean session and the IMAP client use it.
    """
    if verify is False:
        raise ValueError("certificate verification cannot be turned off")
    if verify is True or verify is None:
        return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    if os.path.isdir(verify):
        return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, capath=verify)
    return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=verify)


class KeepAliveSession:
    """``request()`` / ``head()`` / ``close()`` like ``requests.Session``, over per-thread keep-alive connections.

    ``verify``: CA file or directory, or ``True`` for the system store. ``proxies``: ``{"https": URL}``
    (requests' format, e.g. from ``requests.utils.get_environ_proxies(url)``), resolved once by the caller.
    """

    def __init__(self, verify=True, proxies=None):  # type: (Union[bool, str], Optional[Dict[str, str]]) -> None
        self.verify = verify
        self.proxies = dict(proxies or {})
        self._contexts = {}  # type: Dict[Any, ssl.SSLContext]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections = []  # type: List[http_client.HTTPConnection]

    # ------------------------------------------------------------------ requests.Session's surface

    def request(self, method, url, data=None, headers=None, timeout=None, allow_redirects=False, verify=None, **kwargs):
        # type: (str, str, Any, Optional[Dict[str, str]], Optional[float], bool, Any, **Any) -> Response
        """Send one request; redirects are never followed (the token endpoint does not redirect)."""
        del allow_redirects, kwargs
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("unsupported URL %r" % url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        body = data.encode("utf-8") if isinstance(data, text_type) else data
        send_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        send_headers.update(headers or {})
        key = (parts.scheme, parts.hostname, port, verify if verify is not None else self.verify)
        for attempt in (1, 2):
            connection, reused = self._connection(key, timeout)
            try:
                connection.request(method, target, body=body, headers=send_headers)
                response = connection.getresponse()
                content = response.read()
            except BaseException as exc:
                self._drop(key)
                if reused and attempt == 1 and _is_stale(exc):
                    continue
                raise
            if response.will_close:
                self._drop(key)
            return Response(response.status, response.msg, content)
        raise AssertionError("unreachable")  # pragma: no cover

    def head(self, url, **kwargs):  # type: (str, **Any) -> Response
        return self.request("HEAD", url, **kwargs)

    def close(self):  # type: () -> None
        """Close every connection this session opened, in any thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    # ------------------------------------------------------------------ connections

    def _pool(self):  # type: () -> Dict[Tuple[Any, ...], http_client.HTTPConnection]
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _connection(self, key, timeout):  # type: (Tuple[Any, ...], Optional[float]) -> Tuple[http_client.HTTPConnection, bool]
        pool = self._pool()
        connection = pool.get(key)
        if connection is not None and connection.sock is not None:
            connection.timeout = timeout
            connection.sock.settimeout(timeout)
            return connection, True
        connection = self._new_connection(key, timeout)
        pool[key] = connection
        with self._lock:
            self._connections.append(connection)
        return connection, False

    def _new_connection(self, key, timeout):  # type: (Tuple[Any, ...], Optional[float]) -> http_client.HTTPConnection
        scheme, host, port, verify = key
        proxy = self.proxies.get(scheme) or self.proxies.get("all")
        if scheme == "http":
            return http_client.HTTPConnection(host, port, timeout=timeout)
        context = self._context(verify)
        if not proxy:
            return http_client.HTTPSConnection(host, port, timeout=timeout, context=context)
        proxy_parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if not proxy_parts.hostname:
            raise ValueError("unusable proxy URL for %s" % scheme)
        tunnel_headers = {}
        if proxy_parts.username:
            credentials = "%s:%s" % (unquote(proxy_parts.username), unquote(proxy_parts.password or ""))
            tunnel_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        connection = http_client.HTTPSConnection(
            proxy_parts.hostname, proxy_parts.port or 8080, timeout=timeout, context=context
        )
        connection.set_tunnel(host, port, headers=tunnel_headers)
        return connection

    def _context(self, verify):  # type: (Any) -> ssl.SSLContext
        context = self._contexts.get(verify)
        if context is None:
            context = ssl_context_for(verify)
            with self._lock:
                self._contexts[verify] = context
        return context

    def _drop(self, key):  # type: (Tuple[Any, ...]) -> None
        connection = self._pool().pop(key, None)
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def __repr__(self):  # type: () -> str
        return "KeepAliveSession(verify=%r, proxies=%r)" % (self.verify, sorted(self.proxies))


# --------------------------------------------------------------------------- the factory


class _VerifyingSession(_SessionBase):
    """A ``requests.Session`` whose ``verify`` is used even when the environment names a CA bundle."""

    def request(self, method, url, *args, **kwargs):
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super(_VerifyingSession, self).request(method, url, *args, **kwargs)


def environment_for(url, ca_path):  # type: (str, Optional[str]) -> Tuple[Union[bool, str], Dict[str, str]]
    """``(verify, proxies)`` for requests to ``url``: the environment, read once, as requests would read it.

    The proxy honours ``no_proxy``; the CA bundle is ``ca_path``, else ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE``, else the system store.
    """
    proxies = get_environ_proxies(url) if get_environ_proxies is not None else {}
    verify = ca_path or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify, {scheme: proxy for scheme, proxy in proxies.items() if scheme != "no"}


def new_session(
    ca_path=None,
    max_connections=DEFAULT_MAX_CONNECTIONS,
    lean=False,
    url=None,
):  # type: (Optional[str], int, bool, Optional[str]) -> Any
    """A keep-alive HTTPS session for many threads (see the module docstring for ``lean``).

    ``max_connections``: the pool size per host, set it to the caller's thread count. ``url``: with
    ``lean``, the one URL the session will serve, whose proxy and CA are resolved now; without it the
    session verifies against ``ca_path`` (or the system store) and uses no proxy until :func:`environment_for`
    is applied to it.
    """
    if lean:
        session = KeepAliveSession(ca_path or True)
        if url:
            session.verify, session.proxies = environment_for(url, ca_path)
        return session
    from ansible.module_utils.six.moves import http_cookiejar

    if not HAS_REQUESTS:
        raise ImportError("requests")
    session = _VerifyingSession()
    session.verify = ca_path if ca_path else True
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, int(max_connections)), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.cookies = requests.cookies.RequestsCookieJar(policy=http_cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session
