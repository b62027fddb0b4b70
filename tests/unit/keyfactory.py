"""Service-account key files generated at test time (no private key is ever committed)."""

import base64
import datetime
import functools
import json
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

# PEM armour, assembled so that no committed line reads like the start of a real private key.
PEM_BEGIN = "-----BEGIN " + "PRIVATE KEY-----"
PEM_END = "-----END " + "PRIVATE KEY-----"


def fake_pem(body: str) -> str:
    """A PEM block with the given (bogus) body, for tests of damaged keys."""
    return "%s\n%s\n%s\n" % (PEM_BEGIN, body, PEM_END)


CLIENT_EMAIL = "nupoint-um@unit-project.iam.gserviceaccount.com"
CLIENT_ID = "110987654321098765432"
# Another service account (a P12 whose certificate names it is a key of another account).
OTHER_CLIENT_ID = "109999999999999999999"


@functools.cache
def rsa_key(bits: int = 2048, index: int = 0) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make: cache them per (size, index) for the whole test session."""
    del index  # only part of the cache key
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem_pkcs8(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_pkcs1(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def key_dict(key: Any = None, **overrides: Any) -> dict[str, Any]:
    """A key file as Google's IAM console downloads it."""
    key = key if key is not None else rsa_key()
    data = {
        "type": "service_account",
        "project_id": "unit-project",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem_pkcs8(key),
        "client_email": CLIENT_EMAIL,
        "client_id": CLIENT_ID,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/nupoint-um%40unit-project.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    }
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def key_json(key: Any = None, **overrides: Any) -> str:
    return json.dumps(key_dict(key, **overrides), indent=2) + "\n"


def p12_bytes(key: rsa.RSAPrivateKey, password: bytes = b"notasecret", client_id: str = CLIENT_ID) -> bytes:
    """A P12 as Google issues it: the key plus a self-signed certificate named after the account's client ID."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_id)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(
        b"privatekey", key, cert, None, serialization.BestAvailableEncryption(password)
    )


def secret_markers(key: Any) -> list[str]:
    """Strings whose presence in any output means key material leaked."""
    pem = pem_pkcs8(key)
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return [
        "PRIVATE KEY-----",
        body_lines[1],
        body_lines[-2],
        base64.b64encode(der)[40:80].decode(),
        # JSON-escaped form of the PEM ("\n" as two characters)
        json.dumps(pem)[30:70],
    ]


def write_key_files(directory: str) -> None:
    """Write sa.json, sa.p12 (same key) and other.p12 (another account's key) for scenario tests."""
    import os

    key, other = rsa_key(), rsa_key(index=1)
    os.makedirs(directory, exist_ok=True)
    files = {
        "sa.json": key_json(key).encode(),
        "sa.p12": p12_bytes(key),
        "other.p12": p12_bytes(other, client_id=OTHER_CLIENT_ID),
    }
    for name, data in files.items():
        path = os.path.join(directory, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(data)


if __name__ == "__main__":
    import sys

    write_key_files(sys.argv[1])
