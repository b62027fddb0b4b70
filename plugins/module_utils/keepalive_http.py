# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lean keep-alive HTTPS session for the token endpoint: the part of ``requests.Session`` that
``google_oauth.DelegatedTokenSource`` uses, on the standard library's ``http.client``.

Why: minting 2,500 tokens is 2,500 small POSTs to one URL. Through ``requests`` each costs about 0.9 ms
of client CPU beyond the request itself (request preparation, hooks, adapters, urllib3 pools); through
``http.client`` on a kept-alive connection about 0.3 ms. In ``imap_check`` that is a sixth of the
client's CPU per user, on a host (MSL) whose cores also run NuPoint.

What it does: one connection per thread and host (threads never share one, so no locking on the hot
path), reused while the server keeps it open; a request on a kept-alive connection that the server
has closed meanwhile is sent again once on a fresh one (what urllib3 does); HTTPS verified against
``verify`` (a CA file or directory, or ``True`` for the system store; ``False`` is refused); an HTTPS
proxy, when given, is used through ``CONNECT`` with optional basic credentials. Errors are the standard
library's (``OSError`` subclasses, ``ssl.SSLError``, ``http.client.HTTPException``), which
``google_oauth.classify_network_error`` classifies like requests' own.

Runs on MSL: Python 3.6, standard library only.
"""

import base64
import http.client
import os
import ssl
import threading
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

USER_AGENT = "nupoint.gworkspace (python http.client)"
# A kept-alive connection the server closed shows up as one of these on the next request.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Response:
    """What google-auth's transport adapter reads: ``status_code``, ``headers`` (case-insensitive), ``content``."""

    def __init__(self, status_code: int, headers: Any, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def __repr__(self) -> str:
        return "Response(%d, %d bytes)" % (self.status_code, len(self.content))


def ssl_context_for(verify: Union[bool, str, None]) -> ssl.SSLContext:
    """A verifying client context: ``True``/None = system store, a file = CA bundle, a directory = CA path."""
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

    def __init__(self, verify: Union[bool, str] = True, proxies: Optional[Dict[str, str]] = None) -> None:
        self.verify = verify
        self.proxies = dict(proxies or {})
        self._contexts: Dict[Any, ssl.SSLContext] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: List[http.client.HTTPConnection] = []

    # ------------------------------------------------------------------ requests.Session's surface

    def request(
        self,
        method: str,
        url: str,
        data: Any = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
        allow_redirects: bool = False,
        verify: Any = None,
        **kwargs: Any,
    ) -> Response:
        """Send one request; redirects are never followed (the token endpoint does not redirect)."""
        del allow_redirects, kwargs
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("unsupported URL %r" % url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        body = data.encode("utf-8") if isinstance(data, str) else data
        send_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        send_headers.update(headers or {})
        key = (parts.scheme, parts.hostname, port, verify if verify is not None else self.verify)
        for attempt in (1, 2):
            connection, reused = self._connection(key, timeout)
            try:
                connection.request(method, target, body=body, headers=send_headers)
                response = connection.getresponse()
                content = response.read()
            except _STALE:
                self._drop(key)
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self._drop(key)
                raise
            if response.will_close:
                self._drop(key)
            return Response(response.status, response.headers, content)
        raise AssertionError("unreachable")  # pragma: no cover

    def head(self, url: str, **kwargs: Any) -> Response:
        return self.request("HEAD", url, **kwargs)

    def close(self) -> None:
        """Close every connection this session opened, in any thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    # ------------------------------------------------------------------ connections

    def _pool(self) -> Dict[Tuple[Any, ...], http.client.HTTPConnection]:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _connection(self, key: Tuple[Any, ...], timeout: Optional[float]) -> Tuple[http.client.HTTPConnection, bool]:
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

    def _new_connection(self, key: Tuple[Any, ...], timeout: Optional[float]) -> http.client.HTTPConnection:
        scheme, host, port, verify = key
        proxy = self.proxies.get(scheme) or self.proxies.get("all")
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        context = self._context(verify)
        if not proxy:
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        proxy_parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if not proxy_parts.hostname:
            raise ValueError("unusable proxy URL for %s" % scheme)
        tunnel_headers = {}
        if proxy_parts.username:
            credentials = "%s:%s" % (unquote(proxy_parts.username), unquote(proxy_parts.password or ""))
            tunnel_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        connection = http.client.HTTPSConnection(
            proxy_parts.hostname, proxy_parts.port or 8080, timeout=timeout, context=context
        )
        connection.set_tunnel(host, port, headers=tunnel_headers)
        return connection

    def _context(self, verify: Any) -> ssl.SSLContext:
        context = self._contexts.get(verify)
        if context is None:
            context = ssl_context_for(verify)
            with self._lock:
                self._contexts[verify] = context
        return context

    def _drop(self, key: Tuple[Any, ...]) -> None:
        connection = self._pool().pop(key, None)
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def __repr__(self) -> str:
        return "KeepAliveSession(verify=%r, proxies=%r)" % (self.verify, sorted(self.proxies))
