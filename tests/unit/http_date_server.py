"""An HTTP(S) server on loopback whose ``Date`` header is off by a chosen skew.

A test module makes it a fixture::

    @pytest.fixture
    def http_date_server(tmp_path):
        yield from http_date.serving(tmp_path)
"""

import datetime
import email.utils
import http.server
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert, key) PEM files for 127.0.0.1; the certificate is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def make_handler(skew: float, send_date: bool) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def date_time_string(self, timestamp: float | None = None) -> str:
            return email.utils.formatdate(time.time() + skew, usegmt=True)

        def send_header(self, keyword: str, value: str) -> None:
            if keyword == "Date" and not send_date:
                return
            super().send_header(keyword, value)

        def do_HEAD(self) -> None:
            # Like Google's token endpoint: HEAD is not allowed, but the answer still has a Date.
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def serving(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Body of a fixture: yields ``start(skew=0, send_date=True, tls=False) -> url``, stops the servers after.

    With ``tls=True`` the server's self-signed certificate (its own CA) is ``tmp_path / "cert.pem"``.
    """
    servers: list[http.server.HTTPServer] = []

    def start(skew: float = 0, send_date: bool = True, tls: bool = False) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(skew, send_date))
        scheme = "http"
        if tls:
            cert, key = self_signed_cert(tmp_path)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return "%s://127.0.0.1:%d/token" % (scheme, server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
