"""Tests of the emulated Google (tests/lab/google): the lab is only useful if it answers like Google.

Everything is self-contained: a throwaway CA, server certificate and service-account key are made in
a temporary directory (nothing secret is committed), and the server runs in-process on a free port
(plus one run as ``python -m tests.lab.google`` to check the CLI and SIGTERM handling).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google.auth.crypt
import google.auth.jwt
import google.auth.transport.requests
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account

from tests.lab.google import jwtutil
from tests.lab.google.client import GoogleControl, GoogleControlError
from tests.lab.google.server import (
    ALERT_IMAP_DOMAIN_DISABLED,
    ALERT_IMAP_USER_DISABLED,
    lab_imap_fields,
    make_server,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "example.test"
ADMIN = f"admin@{DOMAIN}"
USERS = [f"user{i:04d}@{DOMAIN}" for i in range(1, 51)]
SA_EMAIL = "nupoint-um@nupoint-lab.iam.gserviceaccount.com"
CLIENT_ID = "104857600000000000001"
PROJECT = "nupoint-lab"
AUTH = "https://www.googleapis.com/auth/"
MAIL = "https://mail.google.com/"
GMAIL_SETTINGS = AUTH + "gmail.settings.basic"
CLOUD_PLATFORM = AUTH + "cloud-platform"
DIRECTORY_RO = AUTH + "admin.directory.user.readonly"
POLICIES_RO = AUTH + "cloud-identity.policies.readonly"
GOOGLE_AUD = "https://oauth2.googleapis.com/token"
BAD_SIGNATURE = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
BAD_TIME = {
    "error": "invalid_grant",
    "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values and use a clock with skew to account for clock differences between systems.",
}
UNKNOWN_USER = {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
UNAUTHORIZED_CLIENT = {
    "error": "unauthorized_client",
    "error_description": "Client is unauthorized to retrieve access tokens using this method, "
    "or client not authorized for any of the scopes requested.",
}
ACCOUNT_NOT_FOUND = {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
INVALID_TOKEN = {"error": "invalid_token", "error_description": "Invalid Value"}


def free_port() -> int:
    """A currently free loopback TCP port (never the contract's defaults, so a running lab is safe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """Throwaway CA + server certificate (SAN IP:127.0.0.1, DNS:localhost); returns ca, cert, key paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "google-lab test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


@dataclass
class Lab:
    """What a test needs to talk to the in-process emulated Google."""

    base_url: str
    token_uri: str
    ca_path: str
    sa_key: rsa.RSAPrivateKey
    sa_info: dict[str, str]
    control: GoogleControl
    config: dict[str, Any]
    signer: google.auth.crypt.RSASigner  # parsed once: loading a PEM key costs ~40 ms, signing 0.3 ms

    @property
    def kid(self) -> str:
        return self.sa_info["private_key_id"]


def _sa_info(key: rsa.RSAPrivateKey, kid: str, token_uri: str) -> dict[str, str]:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": kid,
        "private_key": pem,
        "client_email": SA_EMAIL,
        "client_id": CLIENT_ID,
        "token_uri": token_uri,
    }


@pytest.fixture(scope="module")
def lab_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """PKI files and a lab config (port 0: the OS picks a free port) in a temporary directory."""
    directory = tmp_path_factory.mktemp("google-lab")
    ca_path, cert_path, key_path = _write_pki(directory)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = secrets.token_hex(20)
    config = {
        "host": "127.0.0.1",
        "port": 0,
        "certfile": str(cert_path),
        "keyfile": str(key_path),
        "domain": DOMAIN,
        "admin": ADMIN,
        "users": USERS,
        "service_accounts": [
            {
                "email": SA_EMAIL,
                "client_id": CLIENT_ID,
                "project_id": PROJECT,
                "disabled": False,
                "keys": [{"private_key_id": kid, "public_key_pem": jwtutil.public_key_pem(sa_key)}],
            }
        ],
        "authorized_scopes": {CLIENT_ID: [MAIL]},
        "imap": {"domain_enabled": True, "disabled_users": []},
        "clock_tolerance_seconds": 300,
    }
    return {"dir": directory, "ca": str(ca_path), "sa_key": sa_key, "kid": kid, "config": config}


@pytest.fixture(scope="module")
def lab_server(lab_files: dict[str, Any]) -> Iterator[Lab]:
    """The server, in-process on a free port, for the whole module; shut down at the end."""
    server = make_server(lab_files["config"])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    port = server.state.port
    base_url = f"https://127.0.0.1:{port}"
    token_uri = f"{base_url}/token"
    lab = Lab(
        base_url=base_url,
        token_uri=token_uri,
        ca_path=lab_files["ca"],
        sa_key=lab_files["sa_key"],
        sa_info=_sa_info(lab_files["sa_key"], lab_files["kid"], token_uri),
        control=GoogleControl(base_url, lab_files["ca"]),
        config=lab_files["config"],
        signer=google.auth.crypt.RSASigner.from_service_account_info(
            _sa_info(lab_files["sa_key"], lab_files["kid"], token_uri)
        ),
    )
    lab.control.wait_ready()
    try:
        yield lab
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def lab(lab_server: Lab) -> Lab:
    """Each test starts from the configured state (users, keys, scopes, faults, tokens...)."""
    lab_server.control.reset()
    return lab_server


@pytest.fixture
def http(lab: Lab) -> Iterator[requests.Session]:
    """A keep-alive session that trusts the lab CA.

    trust_env=False: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override ``session.verify``,
    and proxy variables must not divert loopback traffic.
    """
    with requests.Session() as session:
        session.trust_env = False
        session.verify = lab.ca_path
        yield session


# ---------------------------------------------------------------------------- helpers
def credentials(lab: Lab, scopes: list[str], subject: str | None, info: dict[str, str] | None = None) -> Any:
    """google-auth's own service-account credentials, unmodified, pointed at the lab's token URI."""
    return service_account.Credentials.from_service_account_info(info or lab.sa_info, scopes=scopes, subject=subject)


def fetch_token(
    lab: Lab, http: requests.Session, scopes: list[str], subject: str | None = ADMIN, info: Any = None
) -> str:
    """Refresh through google-auth exactly as the collection does; returns the access token."""
    creds = credentials(lab, scopes, subject, info)
    creds.refresh(google.auth.transport.requests.Request(session=http))
    return str(creds.token)


def assertion(lab: Lab, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **claims: Any) -> str:
    """A JWT-bearer assertion like google-auth's, with claims overridden (None removes a claim)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iat": now,
        "exp": now + 3600,
        "iss": SA_EMAIL,
        "aud": GOOGLE_AUD,
        "scope": MAIL,
        "sub": USERS[0],
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    if key is None:
        signer = lab.signer
    else:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signer = google.auth.crypt.RSASigner.from_string(pem, key_id=kid)
    token = google.auth.jwt.encode(signer, payload, key_id=kid or lab.kid)
    return token.decode("ascii") if isinstance(token, bytes) else str(token)


def post_token(lab: Lab, http: requests.Session, jwt: str, grant_type: str | None = None) -> requests.Response:
    data = {"grant_type": grant_type or "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": jwt}
    return http.post(lab.token_uri, data=data)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------- token endpoint
def test_google_auth_gets_a_token_with_google_headers(lab: Lab, http: requests.Session) -> None:
    creds = credentials(lab, [MAIL], USERS[0])
    creds.refresh(google.auth.transport.requests.Request(session=http))
    assert creds.token.startswith("ya29.")
    assert creds.valid
    response = post_token(lab, http, assertion(lab))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["expires_in"] == 3599
    assert body["token_type"] == "Bearer"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "no-store" in response.headers["Cache-Control"]
    date = email.utils.parsedate_to_datetime(response.headers["Date"])
    assert abs(date.timestamp() - time.time()) < 5
    assert response.headers["Date"].endswith(" GMT")


def test_tampered_signature_is_rejected(lab: Lab, http: requests.Session) -> None:
    header, _claims, signature = assertion(lab).split(".")
    forged = jwtutil.b64url_encode(json.dumps({"iss": SA_EMAIL, "sub": ADMIN, "aud": GOOGLE_AUD}).encode())
    response = post_token(lab, http, f"{header}.{forged}.{signature}")
    assert (response.status_code, response.json()) == (400, BAD_SIGNATURE)
    raw = bytearray(jwtutil.b64url_decode(signature))
    raw[len(raw) // 2] ^= 0x01
    response = post_token(lab, http, f"{header}.{assertion(lab).split('.')[1]}.{jwtutil.b64url_encode(bytes(raw))}")
    assert (response.status_code, response.json()) == (400, BAD_SIGNATURE)


def test_signature_from_another_key_is_rejected(lab: Lab, http: requests.Session) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = post_token(lab, http, assertion(lab, key=other, kid=lab.kid))
    assert (response.status_code, response.json()) == (400, BAD_SIGNATURE)
    response = post_token(lab, http, assertion(lab, key=other, kid="0" * 40))
    assert (response.status_code, response.json()) == (400, BAD_SIGNATURE)


def test_wrong_audience_is_rejected_and_lab_audience_accepted(lab: Lab, http: requests.Session) -> None:
    response = post_token(lab, http, assertion(lab, aud="https://example.invalid/token"))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": f"Invalid JWT: Failed audience check. The expected audience is {lab.token_uri}.",
    }
    assert post_token(lab, http, assertion(lab, aud=lab.token_uri)).status_code == 200
    assert post_token(lab, http, assertion(lab, aud=GOOGLE_AUD)).status_code == 200


@pytest.mark.parametrize(
    ("iat_offset", "lifetime"),
    [(-7200, 3600), (3600, 3600), (0, 7200), (0, 0), (0, -10)],
    ids=["expired", "future-iat", "too-long", "zero-lifetime", "exp-before-iat"],
)
def test_bad_timeframes_are_rejected(lab: Lab, http: requests.Session, iat_offset: int, lifetime: int) -> None:
    now = int(time.time())
    response = post_token(lab, http, assertion(lab, iat=now + iat_offset, exp=now + iat_offset + lifetime))
    assert (response.status_code, response.json()) == (400, BAD_TIME)


def test_missing_time_claims_are_rejected(lab: Lab, http: requests.Session) -> None:
    response = post_token(lab, http, assertion(lab, iat=None))
    assert (response.status_code, response.json()) == (400, BAD_TIME)


def test_clock_tolerance_and_server_clock_offset(lab: Lab, http: requests.Session) -> None:
    now = int(time.time())
    skewed = assertion(lab, iat=now + 120, exp=now + 120 + 3600)
    assert post_token(lab, http, skewed).status_code == 200
    lab.control.set_clock(tolerance_seconds=60)
    response = post_token(lab, http, assertion(lab, iat=now + 120, exp=now + 120 + 3600))
    assert (response.status_code, response.json()) == (400, BAD_TIME)
    # Google's clock 10 minutes behind ours: google-auth's iat is then "in the future".
    lab.control.set_clock(tolerance_seconds=300, offset_seconds=-600)
    with pytest.raises(RefreshError) as excinfo:
        fetch_token(lab, http, [MAIL], USERS[0])
    assert excinfo.value.args[1] == BAD_TIME
    response = http.get(f"{lab.base_url}/_lab/health")
    date = email.utils.parsedate_to_datetime(response.headers["Date"])
    assert abs(date.timestamp() - (time.time() - 600)) < 5


def test_unknown_or_removed_user_is_rejected(lab: Lab, http: requests.Session) -> None:
    response = post_token(lab, http, assertion(lab, sub=f"nobody@{DOMAIN}"))
    assert (response.status_code, response.json()) == (400, UNKNOWN_USER)
    token = fetch_token(lab, http, [MAIL], USERS[1])
    lab.control.remove_users([USERS[1]])
    with pytest.raises(RefreshError) as excinfo:
        fetch_token(lab, http, [MAIL], USERS[1])
    assert excinfo.value.args[1] == UNKNOWN_USER
    # Google also stops honouring the deleted user's tokens.
    response = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token})
    assert (response.status_code, response.json()) == (400, INVALID_TOKEN)


def test_unauthorised_scope_is_rejected_until_authorised(lab: Lab, http: requests.Session) -> None:
    response = post_token(lab, http, assertion(lab, scope=f"{MAIL} {DIRECTORY_RO}", sub=ADMIN))
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED_CLIENT)
    with pytest.raises(RefreshError) as excinfo:
        fetch_token(lab, http, [DIRECTORY_RO], ADMIN)
    assert excinfo.value.args[1] == UNAUTHORIZED_CLIENT
    lab.control.authorize_scopes(CLIENT_ID, [DIRECTORY_RO])
    assert fetch_token(lab, http, [MAIL, DIRECTORY_RO], ADMIN)
    lab.control.revoke_scopes(CLIENT_ID, [DIRECTORY_RO])
    with pytest.raises(RefreshError):
        fetch_token(lab, http, [DIRECTORY_RO], ADMIN)


def test_deleted_key_is_rejected(lab: Lab, http: requests.Session) -> None:
    assert fetch_token(lab, http, [MAIL], USERS[0])
    assert lab.control.delete_key(lab.kid) is True
    with pytest.raises(RefreshError) as excinfo:
        fetch_token(lab, http, [MAIL], USERS[0])
    assert excinfo.value.args[1] == BAD_SIGNATURE
    response = post_token(lab, http, assertion(lab))
    assert (response.status_code, response.json()) == (400, BAD_SIGNATURE)
    lab.control.register_key(SA_EMAIL, lab.kid, jwtutil.public_key_pem(lab.sa_key))
    assert fetch_token(lab, http, [MAIL], USERS[0])


def test_disabled_service_account_is_rejected(lab: Lab, http: requests.Session) -> None:
    token = fetch_token(lab, http, [MAIL], USERS[0])
    lab.control.disable_service_account(SA_EMAIL)
    response = post_token(lab, http, assertion(lab))
    assert (response.status_code, response.json()) == (400, ACCOUNT_NOT_FOUND)
    assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 400
    lab.control.enable_service_account(SA_EMAIL)
    assert post_token(lab, http, assertion(lab)).status_code == 200


def test_unknown_issuer_malformed_and_bad_requests(lab: Lab, http: requests.Session) -> None:
    response = post_token(lab, http, assertion(lab, iss="ghost@nupoint-lab.iam.gserviceaccount.com"))
    assert (response.status_code, response.json()) == (400, ACCOUNT_NOT_FOUND)
    response = post_token(lab, http, "not-a-jwt")
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "Bad Request"},
    )
    response = post_token(lab, http, assertion(lab), grant_type="password")
    assert (response.status_code, response.json()) == (
        400,
        {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: password"},
    )
    response = http.post(lab.token_uri, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_request", "error_description": "Missing required parameter: assertion"},
    )
    response = post_token(lab, http, assertion(lab, scope=None))
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."},
    )


# ---------------------------------------------------------------------------- tokeninfo
def test_lab_imap_fields() -> None:
    assert lab_imap_fields("a@x", True, set()) == {"x_lab_imap": "enabled", "x_lab_imap_alert": ""}
    assert lab_imap_fields("A@X", True, {"a@x"}) == {
        "x_lab_imap": "disabled_user",
        "x_lab_imap_alert": ALERT_IMAP_USER_DISABLED,
    }
    assert lab_imap_fields("a@x", False, {"a@x"}) == {
        "x_lab_imap": "disabled_domain",
        "x_lab_imap_alert": ALERT_IMAP_DOMAIN_DISABLED,
    }
    assert ALERT_IMAP_USER_DISABLED.startswith("[ALERT] Your account is not enabled for IMAP use.")
    assert ALERT_IMAP_DOMAIN_DISABLED.startswith("[ALERT] IMAP access is disabled for your domain.")


def test_tokeninfo_good_token_and_imap_states(lab: Lab, http: requests.Session) -> None:
    user = USERS[2]
    token = fetch_token(lab, http, [MAIL], user)
    response = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token})
    assert response.status_code == 200
    info = response.json()
    assert set(info) == {
        "azp", "aud", "sub", "scope", "exp", "expires_in", "email", "email_verified", "access_type",
        "x_lab_imap", "x_lab_imap_alert",
    }  # fmt: skip
    assert info["azp"] == info["aud"] == CLIENT_ID
    assert info["sub"].isdigit() and len(info["sub"]) == 21
    assert info["scope"] == MAIL
    assert info["email"] == user
    assert info["email_verified"] == "true"
    assert info["access_type"] == "online"
    assert 3500 < int(info["expires_in"]) <= 3599
    assert abs(int(info["exp"]) - (time.time() + 3599)) < 10
    assert (info["x_lab_imap"], info["x_lab_imap_alert"]) == ("enabled", "")

    lab.control.set_user_imap(user, False)
    info = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).json()
    assert (info["x_lab_imap"], info["x_lab_imap_alert"]) == ("disabled_user", ALERT_IMAP_USER_DISABLED)
    lab.control.set_domain_imap(False)
    info = http.get(f"{lab.base_url}/oauth2/v3/tokeninfo", params={"access_token": token}).json()
    assert (info["x_lab_imap"], info["x_lab_imap_alert"]) == ("disabled_domain", ALERT_IMAP_DOMAIN_DISABLED)
    lab.control.set_domain_imap(True)
    lab.control.set_user_imap(user, True)
    response = http.post(f"{lab.base_url}/tokeninfo", data={"access_token": token})
    assert response.json()["x_lab_imap"] == "enabled"
    response = http.post(f"{lab.base_url}/tokeninfo", data={"token": token})  # Dovecot introspection_mode=post
    assert response.json()["email"] == user
    response = http.get(f"{lab.base_url}/tokeninfo", headers=bearer(token))  # Dovecot introspection_mode=auth
    assert response.json()["email"] == user


def test_tokeninfo_bad_expired_and_missing_token(lab: Lab, http: requests.Session) -> None:
    response = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": "ya29.bogus"})
    assert (response.status_code, response.json()) == (400, INVALID_TOKEN)
    response = http.get(f"{lab.base_url}/tokeninfo")
    assert response.status_code == 400
    assert response.json()["error_description"] == "Either access_token, id_token, or token_handle required"
    token = fetch_token(lab, http, [MAIL], USERS[3])
    lab.control.set_clock(offset_seconds=3600)  # an hour later, the token has expired
    response = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token})
    assert (response.status_code, response.json()) == (400, INVALID_TOKEN)
    lab.control.set_clock(offset_seconds=0)
    assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 200
    assert lab.control.expire_tokens(USERS[3]) == 1
    assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 400


# ---------------------------------------------------------------------------- APIs
def _assert_unauthenticated(response: requests.Response, missing: bool) -> None:
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401
    assert error["status"] == "UNAUTHENTICATED"
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    if missing:
        assert error["message"].startswith("Request is missing required authentication credential.")
        assert error["details"][0]["reason"] == "CREDENTIALS_MISSING"
    else:
        assert error["message"].startswith("Request had invalid authentication credentials.")
        assert error["errors"][0]["reason"] == "authError"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="https://accounts.google.com/"')


def _assert_insufficient_scope(response: requests.Response) -> None:
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["status"] == "PERMISSION_DENIED"
    assert error["errors"][0]["reason"] == "insufficientPermissions"
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_gmail_imap_settings(lab: Lab, http: requests.Session) -> None:
    user = USERS[4]
    url = f"{lab.base_url}/gmail/v1/users/me/settings/imap"
    lab.control.authorize_scopes(CLIENT_ID, [GMAIL_SETTINGS])
    token = fetch_token(lab, http, [GMAIL_SETTINGS], user)
    response = http.get(url, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"enabled": True, "autoExpunge": True, "expungeBehavior": "archive", "maxFolderSize": 0}
    assert response.headers["Cache-Control"] == "private"
    response = http.put(url, headers=bearer(token), json={"enabled": False, "expungeBehavior": "trash"})
    assert response.json() == {"enabled": False, "autoExpunge": True, "expungeBehavior": "trash", "maxFolderSize": 0}
    mail_token = fetch_token(lab, http, [MAIL], user)
    info = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": mail_token}).json()
    assert info["x_lab_imap"] == "disabled_user"
    by_address = http.get(f"{lab.base_url}/gmail/v1/users/{user}/settings/imap", headers=bearer(mail_token))
    assert by_address.status_code == 200
    assert by_address.json()["enabled"] is False
    response = http.put(url, headers=bearer(token), json={"maxFolderSize": 7})
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gmail_errors(lab: Lab, http: requests.Session) -> None:
    url = f"{lab.base_url}/gmail/v1/users/me/settings/imap"
    _assert_unauthenticated(http.get(url), missing=True)
    _assert_unauthenticated(http.get(url, headers=bearer("ya29.bogus")), missing=False)
    mail_token = fetch_token(lab, http, [MAIL], USERS[5])
    _assert_insufficient_scope(http.put(url, headers=bearer(mail_token), json={"enabled": True}))
    other = http.get(f"{lab.base_url}/gmail/v1/users/{USERS[6]}/settings/imap", headers=bearer(mail_token))
    assert other.status_code == 403
    assert other.json()["error"]["message"] == f"Delegation denied for {USERS[5]}"
    sa_token = fetch_token(lab, http, [GMAIL_SETTINGS], subject=None)
    response = http.get(url, headers=bearer(sa_token))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Precondition check failed."
    assert response.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_iam_keys_create_list_get_delete(lab: Lab, http: requests.Session) -> None:
    keys_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys"
    token = fetch_token(lab, http, [CLOUD_PLATFORM], subject=None)  # the service account's own token
    listed = http.get(keys_url, headers=bearer(token))
    assert listed.status_code == 200
    assert [k["name"].rsplit("/", 1)[1] for k in listed.json()["keys"]] == [lab.kid]

    created = http.post(keys_url, headers=bearer(token), json={"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE"})
    assert created.status_code == 200
    resource = created.json()
    assert resource["keyAlgorithm"] == "KEY_ALG_RSA_2048"
    assert resource["privateKeyType"] == "TYPE_GOOGLE_CREDENTIALS_FILE"
    assert resource["keyType"] == "USER_MANAGED"
    assert resource["validAfterTime"].endswith("Z")
    key_file = json.loads(base64.b64decode(resource["privateKeyData"]))
    new_kid = key_file["private_key_id"]
    assert resource["name"] == f"projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys/{new_kid}"
    assert key_file["type"] == "service_account"
    assert key_file["client_email"] == SA_EMAIL
    assert key_file["client_id"] == CLIENT_ID
    assert key_file["token_uri"] == lab.token_uri
    assert key_file["private_key"].startswith("-----BEGIN " + "PRIVATE KEY-----")

    # The new key works with google-auth straight from the downloaded key file.
    assert fetch_token(lab, http, [MAIL], USERS[7], info=key_file)
    got = http.get(f"{keys_url}/{new_kid}", headers=bearer(token))
    assert got.status_code == 200
    assert "privateKeyData" not in got.json()
    assert len(http.get(keys_url, headers=bearer(token)).json()["keys"]) == 2

    assert http.delete(f"{keys_url}/{new_kid}", headers=bearer(token)).json() == {}
    with pytest.raises(RefreshError) as excinfo:
        fetch_token(lab, http, [MAIL], USERS[7], info=key_file)
    assert excinfo.value.args[1] == BAD_SIGNATURE
    missing = http.get(f"{keys_url}/{new_kid}", headers=bearer(token))
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_iam_pkcs12_key_and_limits(lab: Lab, http: requests.Session) -> None:
    keys_url = f"{lab.base_url}/v1/projects/-/serviceAccounts/{CLIENT_ID}/keys"
    token = fetch_token(lab, http, [CLOUD_PLATFORM], subject=None)
    created = http.post(keys_url, headers=bearer(token), json={"privateKeyType": "TYPE_PKCS12_FILE"}).json()
    key, cert, _extra = pkcs12.load_key_and_certificates(base64.b64decode(created["privateKeyData"]), b"notasecret")
    assert isinstance(key, rsa.RSAPrivateKey)
    assert cert is not None
    assert key.key_size == 2048
    # Google's certificate: subject and issuer CN = the numeric client ID, 3650 days from creation, client auth only.
    client_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_ID)])
    assert cert.subject == client_name and cert.issuer == client_name and cert.version == x509.Version.v3
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=3650)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert usage.critical and list(usage.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(cert)  # self-signed with the key it holds
    # keys.get hands out the same certificate (and only with publicKeyType).
    key_url = f"{keys_url}/{created['name'].rsplit('/', 1)[-1]}"
    assert "publicKeyData" not in http.get(key_url, headers=bearer(token)).json()
    got = http.get(key_url, headers=bearer(token), params={"publicKeyType": "TYPE_X509_PEM_FILE"}).json()
    assert x509.load_pem_x509_certificate(base64.b64decode(got["publicKeyData"])) == cert
    bad = http.get(key_url, headers=bearer(token), params={"publicKeyType": "TYPE_PEM"})
    assert bad.status_code == 400
    # A key registered by its public half gets a certificate with that public key and the same names.
    listed = http.get(keys_url, headers=bearer(token)).json()["keys"]
    registered = next(k for k in listed if k["name"] != created["name"])
    got = http.get(
        f"{keys_url}/{registered['name'].rsplit('/', 1)[-1]}",
        headers=bearer(token),
        params={"publicKeyType": "TYPE_X509_PEM_FILE"},
    ).json()
    registered_cert = x509.load_pem_x509_certificate(base64.b64decode(got["publicKeyData"]))
    assert registered_cert.subject == client_name
    assert registered_cert.public_key().public_numbers() == lab.sa_key.public_key().public_numbers()
    for _attempt in range(8):
        assert http.post(keys_url, headers=bearer(token), json={}).status_code == 200
    full = http.post(keys_url, headers=bearer(token), json={})
    assert full.status_code == 400
    assert full.json()["error"]["status"] == "FAILED_PRECONDITION"
    unknown = http.get(f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/ghost@x.test/keys", headers=bearer(token))
    assert unknown.status_code == 404


def test_iam_errors(lab: Lab, http: requests.Session) -> None:
    keys_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys"
    _assert_unauthenticated(http.get(keys_url), missing=True)
    mail_only = fetch_token(lab, http, [MAIL], subject=None)
    _assert_insufficient_scope(http.post(keys_url, headers=bearer(mail_only), json={}))
    lab.control.authorize_scopes(CLIENT_ID, [CLOUD_PLATFORM])
    user_token = fetch_token(lab, http, [CLOUD_PLATFORM], USERS[8])
    denied = http.post(keys_url, headers=bearer(user_token), json={})
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert error["message"] == "Permission 'iam.serviceAccountKeys.create' denied on resource (or it may not exist)."
    assert error["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
    admin_token = fetch_token(lab, http, [CLOUD_PLATFORM], ADMIN)
    assert http.get(keys_url, headers=bearer(admin_token)).status_code == 200
    # A service account of another project may not touch this one's keys.
    stranger_email = "stranger@elsewhere.iam.gserviceaccount.com"
    lab.control.add_service_account(stranger_email, "77", "elsewhere")
    lab.control.register_key(stranger_email, "cd" * 20, jwtutil.public_key_pem(lab.sa_key))
    stranger = dict(lab.sa_info, client_email=stranger_email, client_id="77", private_key_id="cd" * 20)
    stranger_token = fetch_token(lab, http, [CLOUD_PLATFORM], subject=None, info=stranger)
    assert http.get(keys_url, headers=bearer(stranger_token)).status_code == 403


def test_directory_users_paging(lab: Lab, http: requests.Session) -> None:
    url = f"{lab.base_url}/admin/directory/v1/users"
    lab.control.authorize_scopes(CLIENT_ID, [DIRECTORY_RO])
    token = fetch_token(lab, http, [DIRECTORY_RO], ADMIN)
    seen: list[str] = []
    params: dict[str, Any] = {"domain": DOMAIN, "maxResults": 7}
    pages = 0
    while True:
        response = http.get(url, headers=bearer(token), params=params)
        assert response.status_code == 200
        body = response.json()
        assert body["kind"] == "admin#directory#users"
        assert len(body["users"]) <= 7
        seen.extend(u["primaryEmail"] for u in body["users"])
        pages += 1
        if "nextPageToken" not in body:
            break
        params["pageToken"] = body["nextPageToken"]
    assert seen == sorted([*USERS, ADMIN])
    assert pages == -(-len(seen) // 7)
    admin_entry = http.get(f"{url}/{ADMIN}", headers=bearer(token)).json()
    assert admin_entry["isAdmin"] is True
    assert admin_entry["primaryEmail"] == ADMIN
    lab.control.add_users([f"zz-new@{DOMAIN}"])
    everyone = http.get(url, headers=bearer(token), params={"customer": "my_customer", "maxResults": "500"}).json()
    assert everyone["users"][-1]["primaryEmail"] == f"zz-new@{DOMAIN}"
    assert http.get(url, headers=bearer(token), params={"domain": DOMAIN, "maxResults": "501"}).status_code == 400
    assert http.get(url, headers=bearer(token)).status_code == 400


def test_directory_errors(lab: Lab, http: requests.Session) -> None:
    url = f"{lab.base_url}/admin/directory/v1/users"
    _assert_unauthenticated(http.get(url, params={"domain": DOMAIN}), missing=True)
    lab.control.authorize_scopes(CLIENT_ID, [DIRECTORY_RO])
    user_token = fetch_token(lab, http, [DIRECTORY_RO], USERS[9])
    response = http.get(url, headers=bearer(user_token), params={"domain": DOMAIN})
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": 403,
            "message": "Not Authorized to access this resource/api",
            "errors": [
                {"message": "Not Authorized to access this resource/api", "domain": "global", "reason": "forbidden"}
            ],
        }
    }
    mail_token = fetch_token(lab, http, [MAIL], ADMIN)
    _assert_insufficient_scope(http.get(url, headers=bearer(mail_token), params={"domain": DOMAIN}))


def test_cloud_identity_imap_policy(lab: Lab, http: requests.Session) -> None:
    url = f"{lab.base_url}/v1/policies"
    imap_filter = {"filter": "setting.type.matches('settings/gmail.imap_access')"}
    lab.control.authorize_scopes(CLIENT_ID, [POLICIES_RO])
    token = fetch_token(lab, http, [POLICIES_RO], ADMIN)
    body = http.get(url, headers=bearer(token), params=imap_filter).json()
    assert len(body["policies"]) == 1
    policy = body["policies"][0]
    assert policy["setting"] == {"type": "settings/gmail.imap_access", "value": {"enableImapAccess": True}}
    assert policy["name"].startswith("policies/")
    assert policy["customer"].startswith("customers/C")
    assert policy["policyQuery"]["orgUnit"].startswith("orgUnits/")
    assert policy["type"] == "ADMIN"
    lab.control.set_domain_imap(False)
    body = http.get(url, headers=bearer(token), params=imap_filter).json()
    assert body["policies"][0]["setting"]["value"] == {"enableImapAccess": False}
    single = http.get(f"{lab.base_url}/v1/{policy['name']}", headers=bearer(token))
    assert single.json()["setting"]["value"] == {"enableImapAccess": False}
    other = {"filter": "setting.type.matches('^settings/gmail\\.pop_access$')"}
    assert http.get(url, headers=bearer(token), params=other).json() == {}

    _assert_unauthenticated(http.get(url, params=imap_filter), missing=True)
    user_token = fetch_token(lab, http, [POLICIES_RO], USERS[10])
    denied = http.get(url, headers=bearer(user_token), params=imap_filter)
    assert (denied.status_code, denied.json()["error"]["message"]) == (403, "The caller does not have permission")
    mail_token = fetch_token(lab, http, [MAIL], ADMIN)
    _assert_insufficient_scope(http.get(url, headers=bearer(mail_token), params=imap_filter))


# ---------------------------------------------------------------------------- faults, latency, stats
def test_faults_are_served_then_cleared(lab: Lab, http: requests.Session) -> None:
    token = fetch_token(lab, http, [MAIL], USERS[11])
    lab.control.inject_fault("/tokeninfo", 500, count=2)
    for _attempt in range(2):
        response = http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token})
        assert (response.status_code, response.json()) == (
            500,
            {"error": "internal_failure", "error_description": "Backend Error"},
        )
    assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 200

    lab.control.inject_fault("/gmail/", 503)
    response = http.get(f"{lab.base_url}/gmail/v1/users/me/settings/imap", headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["error"]["status"] == "UNAVAILABLE"
    lab.control.inject_fault("/admin/", 429, count=5, body={"error": {"code": 429, "message": "custom"}})
    assert http.get(f"{lab.base_url}/admin/directory/v1/users").json()["error"]["message"] == "custom"
    lab.control.reset_faults()
    assert http.get(f"{lab.base_url}/admin/directory/v1/users").status_code == 401
    stats = lab.control.stats()
    assert stats["faults_served"] == 4
    assert stats["endpoints"]["tokeninfo"]["500"] == 2
    assert stats["endpoints"]["token"]["200"] == 1


def test_google_auth_retries_a_503_from_the_token_endpoint(lab: Lab, http: requests.Session) -> None:
    lab.control.inject_fault("/token", 503, count=1)
    assert fetch_token(lab, http, [MAIL], USERS[12])
    assert lab.control.stats()["endpoints"]["token"] == {"total": 2, "503": 1, "200": 1}


def test_latency_injection(lab: Lab, http: requests.Session) -> None:
    token = fetch_token(lab, http, [MAIL], USERS[13])
    lab.control.set_latency("/tokeninfo", 250)
    started = time.perf_counter()
    assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 200
    assert time.perf_counter() - started >= 0.25
    lab.control.set_latency("/tokeninfo", 0)
    lab.control.set_latency("/token", 50)
    lab.control.reset_latency()
    assert lab.control.state()["latency"] == {}
    started = time.perf_counter()
    http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token})
    assert time.perf_counter() - started < 0.25


def test_fault_with_retry_after_header(lab: Lab, http: requests.Session) -> None:
    lab.control.inject_fault("/token", 429, count=2, retry_after=7)
    assert lab.control.state()["faults"] == [
        {"path_prefix": "/token", "status": 429, "remaining": 2, "retry_after": "7"}
    ]
    response = post_token(lab, http, assertion(lab))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert response.json() == {"error": "rate_limit_exceeded", "error_description": "Rate Limit Exceeded"}
    lab.control.reset_faults()
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    lab.control.inject_fault("/gmail/", 503, retry_after=date)
    response = http.get(f"{lab.base_url}/gmail/v1/users/me/settings/imap")
    assert (response.status_code, response.headers["Retry-After"]) == (503, date)
    # Without retry_after, no header (Google's 500s carry none).
    lab.control.inject_fault("/token", 500)
    response = post_token(lab, http, assertion(lab))
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert post_token(lab, http, assertion(lab)).status_code == 200
    for bad in (-1, "", "1\r\nX-Injected: yes"):
        with pytest.raises(GoogleControlError) as excinfo:
            lab.control.inject_fault("/token", 429, retry_after=bad)
        assert excinfo.value.status == 400
    assert lab.control.state()["faults"] == []


def test_request_log_records_paths_statuses_and_times(lab: Lab, http: requests.Session) -> None:
    lab.control.reset_stats()
    assert lab.control.requests() == []
    lab.control.inject_fault("/token", 503)
    lab.control.set_latency("/tokeninfo", 200)
    before = time.time()
    assert post_token(lab, http, assertion(lab)).status_code == 503
    token = post_token(lab, http, assertion(lab)).json()["access_token"]
    assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 200
    after = time.time()
    log = lab.control.requests()
    assert [(e["method"], e["path"], e["endpoint"], e["status"], e["fault"]) for e in log] == [
        ("POST", "/token", "token", 503, True),
        ("POST", "/token", "token", 200, False),
        ("GET", "/tokeninfo", "tokeninfo", 200, False),
    ]
    assert before - 1 <= log[0]["received_at"] <= log[0]["answered_at"] <= log[1]["received_at"] <= after + 1
    assert log[2]["answered_at"] - log[2]["received_at"] >= 0.2 - 0.01  # the latency rule sleeps in between
    # Filtered by path prefix; the tokeninfo query string (an access token) is never kept.
    assert [e["path"] for e in lab.control.requests("/token")] == ["/token", "/token", "/tokeninfo"]
    assert lab.control.requests("/tokeninfo")[0]["path"] == "/tokeninfo"
    assert token not in json.dumps(log)
    # Control calls are not logged; stats/reset and reset empty the log.
    lab.control.state()
    assert len(lab.control.requests()) == 3
    lab.control.reset_stats()
    assert lab.control.requests() == []
    post_token(lab, http, assertion(lab))
    lab.control.reset()
    assert lab.control.requests() == []


def test_issued_lists_each_minted_token_with_its_assertion_until_reset(lab: Lab, http: requests.Session) -> None:
    assert lab.control.issued_tokens() == {"issued": [], "capacity": 20000, "dropped": 0}
    first_jwt, second_jwt = assertion(lab), assertion(lab, sub=USERS[1], jti="sweep-1")
    first = post_token(lab, http, first_jwt).json()["access_token"]
    # Refused assertions mint nothing and are not listed; a revoked token stays listed (it was issued).
    assert post_token(lab, http, assertion(lab, sub="nobody@" + DOMAIN)).status_code == 400
    second = post_token(lab, http, second_jwt).json()["access_token"]
    own = fetch_token(lab, http, [MAIL], subject=None)  # google-auth's own assertion, for the account itself
    assert http.post(f"{lab.base_url}/revoke", data={"token": first}).status_code == 200
    issued = lab.control.issued_tokens()
    assert issued["dropped"] == 0
    entries = issued["issued"]
    assert [e["access_token"] for e in entries] == [first, second, own]
    assert [e["assertion"] for e in entries[:2]] == [first_jwt, second_jwt]
    assert entries[2]["assertion"].startswith("eyJ") and entries[2]["assertion"].count(".") == 2
    assert [(e["subject"], e["jti"], e["account"]) for e in entries] == [
        (USERS[0], None, SA_EMAIL),
        (USERS[1], "sweep-1", SA_EMAIL),
        (None, None, SA_EMAIL),
    ]
    assert all(abs(e["issued_at"] - time.time()) < 60 for e in entries)
    # Not in the request log, the stats or the state: only this control call shows them.
    public = json.dumps([lab.control.requests(), lab.control.stats(), lab.control.state()])
    assert first not in public and first_jwt not in public
    lab.control.reset_stats()
    assert len(lab.control.issued_tokens()["issued"]) == 3
    lab.control.reset()
    assert lab.control.issued_tokens()["issued"] == []


def test_control_client_round_trip(lab: Lab) -> None:
    control = lab.control
    assert control.health()["ok"] is True
    assert control.users() == sorted([*USERS, ADMIN])
    assert control.add_users([f"extra@{DOMAIN}"]) == len(USERS) + 2
    assert control.remove_users([f"extra@{DOMAIN}", USERS[0]]) == len(USERS)
    assert control.set_users([USERS[0]]) == 2
    assert control.set_users([USERS[0]], keep_admin=False) == 1
    assert control.set_scopes(CLIENT_ID, [MAIL, GMAIL_SETTINGS]) == sorted([MAIL, GMAIL_SETTINGS])
    assert control.authorize_scopes(CLIENT_ID, [DIRECTORY_RO]) == sorted([MAIL, GMAIL_SETTINGS, DIRECTORY_RO])
    assert control.revoke_scopes(CLIENT_ID, [GMAIL_SETTINGS]) == sorted([MAIL, DIRECTORY_RO])
    assert control.revoke_scopes(CLIENT_ID) == []
    control.set_user_imap(USERS[0], False)
    control.set_domain_imap(False)
    assert control.set_clock(tolerance_seconds=30, offset_seconds=5) == {
        "tolerance_seconds": 30.0,
        "offset_seconds": 5.0,
    }
    control.add_service_account("second@nupoint-lab.iam.gserviceaccount.com", "42", PROJECT)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    control.register_key("second@nupoint-lab.iam.gserviceaccount.com", "ab" * 20, jwtutil.public_key_pem(other))
    control.disable_service_account("second@nupoint-lab.iam.gserviceaccount.com")
    control.inject_fault("/token", 500, count=3)
    control.set_latency("/tokeninfo", 10)
    state = control.state()
    assert state["user_count"] == 1
    assert state["imap"] == {"domain_enabled": False, "disabled_users": [USERS[0]]}
    assert state["clock"] == {"tolerance_seconds": 30.0, "offset_seconds": 5.0}
    assert state["faults"] == [{"path_prefix": "/token", "status": 500, "remaining": 3}]
    assert state["latency"] == {"/tokeninfo": 10.0}
    second = next(a for a in state["service_accounts"] if a["client_id"] == "42")
    assert second == {
        "email": "second@nupoint-lab.iam.gserviceaccount.com",
        "client_id": "42",
        "project_id": PROJECT,
        "disabled": True,
        "keys": ["ab" * 20],
    }
    assert control.delete_key("ab" * 20) is True
    assert control.delete_key("ab" * 20) is False
    with pytest.raises(GoogleControlError) as excinfo:
        control.inject_fault("/token", 42)
    assert excinfo.value.status == 400
    with pytest.raises(GoogleControlError):
        control.disable_service_account("nobody@x.test")
    control.reset_stats()
    assert control.stats()["total"] == 0
    control.reset()
    state = control.state()
    assert state["user_count"] == len(USERS) + 1
    assert state["faults"] == []
    assert state["authorized_scopes"] == {CLIENT_ID: [MAIL]}
    unreachable = GoogleControl(f"https://127.0.0.1:{free_port()}", lab.ca_path, timeout=1)
    with pytest.raises(GoogleControlError) as excinfo:
        unreachable.health()
    assert excinfo.value.status == 0


def test_debug_log_never_shows_tokens(lab: Lab, http: requests.Session, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tests.lab.google"):
        token = fetch_token(lab, http, [MAIL], USERS[14])
        http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token})
        http.get(f"{lab.base_url}/gmail/v1/users/me/settings/imap", headers=bearer(token))
        # A request line the stdlib rejects is logged by http.server itself: still redacted.
        with socket.create_connection(("127.0.0.1", int(lab.base_url.rsplit(":", 1)[1]))) as raw:
            context = ssl.create_default_context(cafile=lab.ca_path)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(f"GET /tokeninfo?access_token={token} HTTP/1.1 extra\r\n\r\n".encode())
                tls.recv(4096)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/tokeninfo" in logged
    assert token not in logged
    assert token[5:] not in logged


def test_unknown_path_and_loopback_control(lab: Lab, http: requests.Session) -> None:
    response = http.get(f"{lab.base_url}/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert http.post(f"{lab.base_url}/_lab/no-such-action", json={}).status_code == 404


# ---------------------------------------------------------------------------- performance and CLI
def test_keep_alive_token_rate(lab: Lab, http: requests.Session, figure: Callable[[str], None]) -> None:
    """200 sequential token requests + 200 tokeninfo calls on one keep-alive session (rate printed only)."""
    assertions = [assertion(lab, sub=USERS[i % len(USERS)]) for i in range(200)]
    started = time.perf_counter()
    tokens = []
    for jwt in assertions:
        response = post_token(lab, http, jwt)
        assert response.status_code == 200
        tokens.append(response.json()["access_token"])
    token_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for token in tokens:
        assert http.get(f"{lab.base_url}/tokeninfo", params={"access_token": token}).status_code == 200
    info_seconds = time.perf_counter() - started
    figure(
        f"emulated google: {200 / token_seconds:.0f} token requests/s, "
        f"{200 / info_seconds:.0f} tokeninfo requests/s (sequential, one keep-alive connection)"
    )


def test_cli_starts_and_stops_on_sigterm(lab_files: dict[str, Any], tmp_path: Path) -> None:
    config = dict(lab_files["config"], port=free_port())
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.lab.google", "--config", str(config_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        control = GoogleControl(f"https://127.0.0.1:{config['port']}", lab_files["ca"])
        assert control.wait_ready(timeout=20)["pid"] == process.pid
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"listening on https://127.0.0.1:{config['port']}" in stdout
    assert "ya29." not in stdout + stderr


# ---------------------------------------------------------------------------- key lifecycle (issue 12)
ADMIN_PROJECT = "nupoint-admin"
ADMIN_SA = f"key-admin@{ADMIN_PROJECT}.iam.gserviceaccount.com"
NEW_PROJECT = "nupoint-new"


def _admin_token(lab: Lab, http: requests.Session, services: tuple[str, ...] = ("iam.googleapis.com",)) -> str:
    """A service account of another project that the lab lets administer PROJECT and NEW_PROJECT."""
    lab.control.add_service_account(ADMIN_SA, "88", ADMIN_PROJECT)
    lab.control.register_key(ADMIN_SA, "ad" * 20, jwtutil.public_key_pem(lab.sa_key))
    everything = lab.control.state()["projects"][ADMIN_PROJECT]["services"]
    lab.control.set_services(ADMIN_PROJECT, everything, enabled=False)
    lab.control.set_services(ADMIN_PROJECT, services, enabled=True)
    lab.control.add_project(PROJECT, admins=[ADMIN_SA])
    lab.control.add_project(NEW_PROJECT, admins=[ADMIN_SA])
    info = dict(lab.sa_info, client_email=ADMIN_SA, client_id="88", private_key_id="ad" * 20, project_id=ADMIN_PROJECT)
    return fetch_token(lab, http, [CLOUD_PLATFORM], subject=None, info=info)


def test_iam_disable_enable_key_and_token_endpoint(lab: Lab, http: requests.Session) -> None:
    token = _admin_token(lab, http)
    key_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys/{lab.kid}"
    assert http.post(key_url + ":disable", headers=bearer(token), json={}).json() == {}
    assert http.get(key_url, headers=bearer(token)).json()["disabled"] is True
    with pytest.raises(RefreshError) as excinfo:
        fetch_token(lab, http, [MAIL], USERS[0])
    assert excinfo.value.args[1] == BAD_SIGNATURE
    assert lab.control.state()["disabled_keys"] == [lab.kid]
    assert http.post(key_url + ":enable", headers=bearer(token), json={}).json() == {}
    assert "disabled" not in http.get(key_url, headers=bearer(token)).json()
    assert fetch_token(lab, http, [MAIL], USERS[0])


def test_jwt_without_kid_is_verified_against_every_enabled_key(lab: Lab, http: requests.Session) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    lab.control.register_key(SA_EMAIL, "ee" * 20, jwtutil.public_key_pem(other))
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = google.auth.crypt.RSASigner.from_string(pem)  # no key_id: the header carries no kid
    now = int(time.time())
    claims = {"iat": now, "exp": now + 3600, "iss": SA_EMAIL, "aud": GOOGLE_AUD, "scope": MAIL, "sub": USERS[0]}
    jwt = google.auth.jwt.encode(signer, claims).decode("ascii")
    assert "kid" not in json.loads(base64.urlsafe_b64decode(jwt.split(".")[0] + "=="))
    assert post_token(lab, http, jwt).status_code == 200
    lab.control.set_key_disabled("ee" * 20)
    assert post_token(lab, http, jwt).json() == BAD_SIGNATURE


def test_key_creation_refused_by_org_policy(lab: Lab, http: requests.Session) -> None:
    token = _admin_token(lab, http)
    lab.control.set_key_creation_policy(PROJECT, True)
    keys_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys"
    refused = http.post(keys_url, headers=bearer(token), json={})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION"
    assert error["message"] == "Key creation is not allowed on this service account."
    violation = error["details"][0]["violations"][0]
    assert violation["type"] == "constraints/iam.disableServiceAccountKeyCreation"
    assert violation["subject"].startswith(f"projects/{PROJECT}/serviceAccounts/{SA_EMAIL}?configvalue=")
    lab.control.set_key_creation_policy(PROJECT, False)
    assert http.post(keys_url, headers=bearer(token), json={}).status_code == 200


def test_ten_key_quota_body(lab: Lab, http: requests.Session) -> None:
    token = _admin_token(lab, http)
    keys_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys"
    for _attempt in range(9):
        assert http.post(keys_url, headers=bearer(token), json={}).status_code == 200
    full = http.post(keys_url, headers=bearer(token), json={})
    assert full.status_code == 400
    assert full.json() == {
        "error": {"code": 400, "message": "Precondition check failed.", "status": "FAILED_PRECONDITION"}
    }


def test_api_disabled_in_the_callers_project(lab: Lab, http: requests.Session) -> None:
    token = _admin_token(lab, http, services=())
    keys_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys"
    answer = http.get(keys_url, headers=bearer(token))
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["errors"][0]["reason"] == "accessNotConfigured"
    info = error["details"][0]
    assert info["reason"] == "SERVICE_DISABLED"
    number = lab.control.state()["projects"][ADMIN_PROJECT]["number"]
    link = f"https://console.developers.google.com/apis/api/iam.googleapis.com/overview?project={number}"
    assert info["metadata"]["activationUrl"] == link
    assert error["message"].startswith(
        f"Identity and Access Management (IAM) API has not been used in project {number}"
    )
    assert link in error["message"]


def test_permission_denied_by_control(lab: Lab, http: requests.Session) -> None:
    token = _admin_token(lab, http)
    lab.control.deny_permissions(["iam.serviceAccountKeys.delete"])
    key_url = f"{lab.base_url}/v1/projects/{PROJECT}/serviceAccounts/{SA_EMAIL}/keys/{lab.kid}"
    denied = http.delete(key_url, headers=bearer(token))
    assert denied.status_code == 403
    assert denied.json()["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
    assert http.get(key_url, headers=bearer(token)).status_code == 200
    lab.control.deny_permissions([])
    assert http.delete(key_url, headers=bearer(token)).status_code == 200


def test_service_usage_and_service_account_creation_on_an_empty_project(lab: Lab, http: requests.Session) -> None:
    token = _admin_token(lab, http, services=("iam.googleapis.com", "serviceusage.googleapis.com"))
    service_url = f"{lab.base_url}/v1/projects/{NEW_PROJECT}/services/iam.googleapis.com"
    assert http.get(service_url, headers=bearer(token)).json()["state"] == "DISABLED"
    operation = http.post(service_url + ":enable", headers=bearer(token), json={}).json()
    assert operation["done"] is True
    assert operation["response"]["service"]["state"] == "ENABLED"
    assert http.get(service_url, headers=bearer(token)).json()["state"] == "ENABLED"
    email = f"nupoint-um@{NEW_PROJECT}.iam.gserviceaccount.com"
    account_url = f"{lab.base_url}/v1/projects/{NEW_PROJECT}/serviceAccounts/{email}"
    assert http.get(account_url, headers=bearer(token)).status_code == 404
    created = http.post(
        f"{lab.base_url}/v1/projects/{NEW_PROJECT}/serviceAccounts",
        headers=bearer(token),
        json={"accountId": "nupoint-um", "serviceAccount": {"displayName": "NuPoint"}},
    )
    assert created.status_code == 200
    resource = created.json()
    assert resource["email"] == email and resource["oauth2ClientId"] == resource["uniqueId"]
    again = http.post(
        f"{lab.base_url}/v1/projects/{NEW_PROJECT}/serviceAccounts",
        headers=bearer(token),
        json={"accountId": "nupoint-um"},
    )
    assert again.status_code == 409
    assert again.json()["error"]["status"] == "ALREADY_EXISTS"
    assert http.get(account_url, headers=bearer(token)).json()["email"] == email
    # Its first key comes from the usual keys.create.
    assert http.post(account_url + "/keys", headers=bearer(token), json={}).status_code == 200
