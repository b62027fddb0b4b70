"""session (the lean keep-alive path): keep-alive reuse, stale connections, TLS verification, proxies, and use by the token source.

A real HTTPS server on loopback (stdlib, certificate from the lab's CA generator) counts connections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import http.server
import json
import select
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import session as kh
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import token as tk
from tests.lab import ca
from tests.unit import keyfactory as kf


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ca")
    files = ca.CaFiles(base / "ca.pem", base / "ca.key", base / "server.pem", base / "server.key")
    ca.generate(files)
    other = tmp_path_factory.mktemp("other-ca")
    other_files = ca.CaFiles(other / "ca.pem", other / "ca.key", other / "server.pem", other / "server.key")
    ca.generate(other_files)
    return files, other_files


class Server:
    """HTTPS on 127.0.0.1; counts TCP connections; answers JSON; can close after each response or fail N times."""

    def __init__(self, files, close_after=False):
        self.connections = 0
        self.requests = []
        self.close_after = close_after
        self.fail = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                outer.connections += 1

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload = (outer.fail.pop(0), {"error": "internal_failure"}) if outer.fail else (200, None)
                if payload is None:
                    payload = {"access_token": "ya29.test", "expires_in": 3599, "token_type": "Bearer"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if outer.close_after:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def do_HEAD(self):
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(files.server_cert), str(files.server_key))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = "https://127.0.0.1:%d/token" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(certs):
    instance = Server(certs[0])
    yield instance
    instance.stop()


def test_keep_alive_reuses_one_connection_per_thread(server, certs):
    session = kh.KeepAliveSession(str(certs[0].ca_cert))
    for _number in range(5):
        response = session.request("POST", server.url, data=b"a=1", headers={"Content-Type": "x"}, timeout=5)
        assert response.status_code == 200
        assert json.loads(response.content)["token_type"] == "Bearer"
        assert response.headers.get("content-type") == "application/json"
    assert server.connections == 1
    method, path, headers, body = server.requests[0]
    assert (method, path, body) == ("POST", "/token", b"a=1")
    assert headers["Content-Type"] == "x"
    assert headers["User-Agent"] == kh.USER_AGENT
    session.close()


def test_threads_get_their_own_connections(server, certs):
    session = kh.KeepAliveSession(str(certs[0].ca_cert))
    barrier = threading.Barrier(4)

    def work(_index):
        barrier.wait()
        for _number in range(3):
            assert session.request("POST", server.url, data=b"", timeout=5).status_code == 200

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert server.connections == 4
    assert len(server.requests) == 12
    session.close()
    assert session._connections == []


def test_a_connection_the_server_closed_is_replaced(certs):
    server = Server(certs[0], close_after=True)
    try:
        session = kh.KeepAliveSession(str(certs[0].ca_cert))
        for _number in range(3):
            assert session.request("POST", server.url, data=b"", timeout=5).status_code == 200
        assert server.connections == 3
    finally:
        server.stop()


def test_stale_keep_alive_connection_is_retried_once(server, certs, monkeypatch):
    session = kh.KeepAliveSession(str(certs[0].ca_cert))
    assert session.request("POST", server.url, data=b"", timeout=5).status_code == 200
    # The server drops the idle connection (as servers do after their keep-alive timeout).
    connection = next(iter(session._pool().values()))
    connection.sock.shutdown(socket.SHUT_RDWR)
    assert session.request("POST", server.url, data=b"", timeout=5).status_code == 200
    assert server.connections == 2


def test_errors_status_codes_are_returned_not_raised(server, certs):
    server.fail = [503]
    session = kh.KeepAliveSession(str(certs[0].ca_cert))
    response = session.request("POST", server.url, data=b"", timeout=5)
    assert response.status_code == 503
    assert json.loads(response.content) == {"error": "internal_failure"}
    assert session.head(server.url, timeout=5).status_code == 405


def test_untrusted_certificate_is_refused(server, certs):
    session = kh.KeepAliveSession(str(certs[1].ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        session.request("POST", server.url, data=b"", timeout=5)
    assert failures.classify_network_error(ssl.SSLCertVerificationError("x")) == ("tls", False)


def test_system_store_does_not_trust_the_lab(server):
    with pytest.raises(ssl.SSLError):
        kh.KeepAliveSession(True).request("POST", server.url, data=b"", timeout=5)


def test_verification_cannot_be_turned_off():
    with pytest.raises(ValueError):
        kh.ssl_context_for(False)


def test_ca_directory(certs, tmp_path):
    context = kh.ssl_context_for(str(tmp_path))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_connection_refused_is_classified_connect():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = kh.KeepAliveSession(True)
    with pytest.raises(ConnectionRefusedError) as caught:
        session.request("POST", "https://127.0.0.1:%d/token" % port, data=b"", timeout=2)
    assert failures.classify_network_error(caught.value) == ("connect", False)


def test_unsupported_url():
    with pytest.raises(ValueError):
        kh.KeepAliveSession().request("GET", "ftp://example.test/")


class ConnectProxy:
    """A CONNECT proxy that checks Proxy-Authorization and pipes bytes both ways."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        lines = head.decode().split("\r\n")
        self.seen.append(lines)
        host, port = lines[0].split()[1].split(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [client, upstream]
        while True:
            readable, _writable, _errors = select.select(sockets, [], [], 5)
            if not readable:
                break
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                (upstream if sock is client else client).sendall(data)

    def close(self):
        self.listener.close()


def test_https_proxy_with_credentials(server, certs):
    proxy = ConnectProxy()
    try:
        session = kh.KeepAliveSession(
            str(certs[0].ca_cert), {"https": "http://nupoint:s%%3Acret@127.0.0.1:%d" % proxy.port}
        )
        assert session.request("POST", server.url, data=b"", timeout=5).status_code == 200
        assert session.request("POST", server.url, data=b"", timeout=5).status_code == 200
        assert len(proxy.seen) == 1  # the tunnel is kept alive too
        request_line, *headers = proxy.seen[0]
        assert request_line == "CONNECT 127.0.0.1:%d HTTP/1.0" % server.port
        expected = "Proxy-Authorization: Basic " + base64.b64encode(b"nupoint:s:cret").decode()
        assert expected in headers
        assert "s%3Acret" not in repr(session) and "nupoint" not in repr(session)
    finally:
        proxy.close()


def test_token_source_over_the_lean_session_retries_503(server, certs):
    server.fail = [503, 503]
    session = kh.KeepAliveSession(str(certs[0].ca_cert))
    source = tk.DelegatedTokenSource(
        kf.key_json(), token_uri=server.url, session=session, sleep=lambda _seconds: None, retries=3
    )
    token, expiry = source.token("user0001@example.test")
    assert token == "ya29.test"
    assert expiry is not None
    assert len(server.requests) == 3
    assert server.connections == 1
    body = server.requests[-1][3].decode()
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in body


def test_token_source_network_errors_are_classified(certs):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = tk.DelegatedTokenSource(
        kf.key_json(),
        token_uri="https://127.0.0.1:%d/token" % port,
        session=kh.KeepAliveSession(str(certs[0].ca_cert)),
        sleep=lambda _seconds: None,
    )
    with pytest.raises(failures.TokenError) as caught:
        source.token("user0001@example.test")
    assert caught.value.failure_class == "connect"
