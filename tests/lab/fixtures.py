"""Generated lab fixtures: the service account's key files, the users, the Google config.

The JSON key has exactly the fields and layout of a key file downloaded from the Google Cloud
console (with ``token_uri`` pointing at the lab); the P12 holds the same RSA key and a
self-signed certificate, password ``notasecret``, friendly name ``privatekey``, legacy
PBE-SHA1-3DES encryption, as Google issues them (old OpenSSL builds on MSL can read it).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.lab import config as labconfig
from tests.lab.google.server import service_account_pkcs12


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    client_id: str
    project_id: str
    private_key_id: str
    public_key_pem: str
    public_key_sha256: str  # SHA-256 over the DER SubjectPublicKeyInfo, lowercase hex
    key_file: str
    p12_file: str
    p12_password: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def key_file_document(
    key: rsa.RSAPrivateKey, *, client_email: str, client_id: str, project_id: str, private_key_id: str, token_uri: str
) -> dict[str, str]:
    """The JSON key file Google hands out, field for field and in Google's order."""
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id,
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" + quote(client_email, safe=""),
        "universe_domain": "googleapis.com",
    }


def p12_bytes(key: rsa.RSAPrivateKey, client_id: str, password: str = labconfig.P12_PASSWORD) -> bytes:
    """PKCS#12 of ``key`` with Google's certificate (subject CN = the client ID), as Google's console exports it."""
    return service_account_pkcs12(key, client_id, time.time(), password.encode())


def public_key_sha256(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def generate_service_account(cfg: labconfig.LabConfig) -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_id = "1" + "".join(str(secrets.randbelow(10)) for _digit in range(20))
    private_key_id = secrets.token_hex(20)
    document = key_file_document(
        key,
        client_email=labconfig.SERVICE_ACCOUNT_EMAIL,
        client_id=client_id,
        project_id=labconfig.PROJECT_ID,
        private_key_id=private_key_id,
        token_uri=cfg.token_uri,
    )
    _write_private(cfg.sa_json, (json.dumps(document, indent=2) + "\n").encode())
    _write_private(cfg.sa_p12, p12_bytes(key, client_id))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ServiceAccount(
        client_email=labconfig.SERVICE_ACCOUNT_EMAIL,
        client_id=client_id,
        project_id=labconfig.PROJECT_ID,
        private_key_id=private_key_id,
        public_key_pem=public_pem.decode(),
        public_key_sha256=public_key_sha256(key.public_key()),
        key_file=str(cfg.sa_json),
        p12_file=str(cfg.sa_p12),
        p12_password=labconfig.P12_PASSWORD,
    )


def write_users_file(cfg: labconfig.LabConfig, users: list[str]) -> None:
    tmp = cfg.users_file.with_name(cfg.users_file.name + ".tmp")
    tmp.write_text("".join(f"{user}\n" for user in users))
    os.replace(tmp, cfg.users_file)


def google_config(cfg: labconfig.LabConfig, account: ServiceAccount, users: list[str]) -> dict[str, Any]:
    """The emulated Google's start-up config (format: docs/lab-contract.md)."""
    return {
        "host": labconfig.LISTEN_HOST,
        "port": cfg.google_port,
        "certfile": str(cfg.server_cert),
        "keyfile": str(cfg.server_key),
        "domain": labconfig.DOMAIN,
        "admin": labconfig.ADMIN,
        "users": users,
        "service_accounts": [
            {
                "email": account.client_email,
                "client_id": account.client_id,
                "project_id": account.project_id,
                "disabled": False,
                "keys": [{"private_key_id": account.private_key_id, "public_key_pem": account.public_key_pem}],
            }
        ],
        "authorized_scopes": {account.client_id: [labconfig.MAIL_SCOPE]},
        "imap": {"domain_enabled": True, "disabled_users": []},
        "clock_tolerance_seconds": 300,
    }


def write_google_config(cfg: labconfig.LabConfig, document: dict[str, Any]) -> None:
    cfg.google_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.google_config.with_name("config.json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, cfg.google_config)
