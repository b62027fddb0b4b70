"""Minimal RS256 JWT handling for the emulated Google token endpoint.

Why our own: the lab must check exactly what Google checks (signature against the key named by
``kid``, then the claims), report each failure with Google's own wording, and stay cheap enough for
thousands of token requests. A full JWT library would validate claims its own way and word its errors
differently; decoding and verifying a compact RS256 token is only a few lines with ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class JWTFormatError(ValueError):
    """The assertion is not a compact JWS with JSON header and claims (Google: malformed JWT)."""


@dataclass(frozen=True)
class DecodedJWT:
    """A parsed but not yet verified JWT; ``signing_input`` is what the signature covers."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as JWS requires."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raises JWTFormatError on garbage."""
    try:
        raw = text.encode("ascii")
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise JWTFormatError("invalid base64url segment") from exc


def decode(assertion: str) -> DecodedJWT:
    """Split and parse a compact JWT without verifying it (the key is chosen from the header)."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise JWTFormatError("a JWT has three dot-separated segments")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JWTFormatError("header or claims are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTFormatError("header and claims must be JSON objects")
    signature = b64url_decode(parts[2])
    return DecodedJWT(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key (or the key of an X.509 certificate) from PEM."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key: object = (
        x509.load_pem_x509_certificate(data).public_key()
        if b"BEGIN CERTIFICATE" in data
        else serialization.load_pem_public_key(data)
    )
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("service-account keys are RSA keys")
    return key


def verify_rs256(public_key: rsa.RSAPublicKey, token: DecodedJWT) -> bool:
    """True when the RS256 signature of ``token`` was made with the private half of ``public_key``."""
    try:
        public_key.verify(token.signature, token.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def sign_rs256(private_key: rsa.RSAPrivateKey, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """Make a compact RS256 JWT (used by tests and tools to craft assertions google-auth would not)."""
    full_header = {"alg": "RS256", "typ": "JWT"}
    full_header.update(header or {})
    segments = [
        b64url_encode(json.dumps(full_header, separators=(",", ":")).encode("utf-8")),
        b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8")),
    ]
    signing_input = ".".join(segments).encode("ascii")
    signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return ".".join([*segments, b64url_encode(signature)])


def public_key_pem(private_key: rsa.RSAPrivateKey) -> str:
    """SubjectPublicKeyInfo PEM of a private key (what the lab registers for a key id)."""
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
