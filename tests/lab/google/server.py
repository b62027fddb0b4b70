"""Emulated Google: OAuth token endpoint, tokeninfo and the REST APIs the collection uses.

Why it exists: the collection's value is in how it handles Google's answers (refused scopes, removed
users, clock skew, rotated keys, IMAP switched off). A stub that always says yes tests none of that,
so this server checks what Google checks and answers with Google's status codes, bodies and headers.

Design choices:
- One threaded HTTPS server (stdlib), TLS handshake done in the per-connection thread so a slow
  client never blocks ``accept``; HTTP/1.1 keep-alive with buffered writes and TCP_NODELAY, because
  the benchmark and Dovecot make thousands of small requests.
- All state lives in memory in :class:`GoogleState`, guarded by one lock that is held only for
  dictionary work (never during RSA operations or sleeps).
- Paths are Google's real paths; only the host differs (everything is on one server).
- Tokens, private keys and request bodies are never logged.
"""

from __future__ import annotations

import base64
import bisect
import email.utils
import hashlib
import http.server
import ipaddress
import json
import logging
import os
import re
import secrets
import socketserver
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from . import jwtutil

LOG = logging.getLogger("tests.lab.google")

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always signs aud=https://oauth2.googleapis.com/token, whatever token_uri says; Google
# accepts its historical token endpoints too. The lab's own token URI is accepted in addition.
GOOGLE_TOKEN_AUDIENCES = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://accounts.google.com/o/oauth2/token",
        "https://www.googleapis.com/oauth2/v4/token",
    }
)
ACCESS_TOKEN_LIFETIME = 3599
MAX_ASSERTION_LIFETIME = 3600
MAX_KEYS_PER_SERVICE_ACCOUNT = 10
MAX_BODY_BYTES = 10 * 1024 * 1024
P12_PASSWORD = b"notasecret"

# Google's wording, kept verbatim because callers (and the collection's error mapping) match on it.
MSG_INVALID_SUBJECT = "Invalid email or User ID"
MSG_UNAUTHORIZED_CLIENT = (
    "Client is unauthorized to retrieve access tokens using this method, "
    "or client not authorized for any of the scopes requested."
)
MSG_BAD_SIGNATURE = "Invalid JWT Signature."
MSG_BAD_TIMEFRAME = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values and use a clock with skew to account for clock differences between systems."
)
MSG_ACCOUNT_NOT_FOUND = "Invalid grant: account not found"
MSG_MALFORMED_ASSERTION = "Bad Request"
MSG_BAD_AUDIENCE = "Invalid JWT: Failed audience check. The expected audience is {}."
MSG_NO_SCOPE = "Invalid OAuth scope or ID token audience provided."
MSG_TOKENINFO_INVALID = "Invalid Value"
MSG_TOKENINFO_MISSING = "Either access_token, id_token, or token_handle required"
ALERT_IMAP_USER_DISABLED = (
    "[ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page "
    "and enable your account for IMAP access. (Failure)"
)
ALERT_IMAP_DOMAIN_DISABLED = (
    "[ALERT] IMAP access is disabled for your domain. Please contact your domain administrator "
    "for questions about this feature. (Failure)"
)
# What Gmail's IMAP server answers a refused XOAUTH2 login (docs/lab-contract.md, "What Gmail says"): first a
# base64 JSON challenge, then, after the client's empty line, this tagged NO.
IMAP_INVALID_CREDENTIALS = "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"
GMAIL_XOAUTH2_CHALLENGE = {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
MSG_REVOKE_INVALID = "Token expired or revoked"
# Query flag Dovecot adds to its tokeninfo URL (tests/lab/dovecot.py): tokeninfo then answers every token with
# 200 and the IMAP verdict in lab fields, so Dovecot can refuse with Gmail's text instead of its own.
DOVECOT_TOKENINFO_FLAG = "x_lab_dovecot"
MSG_UNAUTHENTICATED_INVALID = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MSG_UNAUTHENTICATED_MISSING = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MSG_INSUFFICIENT_SCOPES = "Request had insufficient authentication scopes."
MSG_NOT_AUTHORIZED_ADMIN = "Not Authorized to access this resource/api"
MSG_CALLER_NO_PERMISSION = "The caller does not have permission"

SCOPE_MAIL = "https://mail.google.com/"
_AUTH = "https://www.googleapis.com/auth/"
SCOPES_GMAIL_IMAP_READ = frozenset(
    {_AUTH + "gmail.settings.basic", SCOPE_MAIL, _AUTH + "gmail.modify", _AUTH + "gmail.readonly"}
)
SCOPES_GMAIL_IMAP_WRITE = frozenset({_AUTH + "gmail.settings.basic"})
SCOPES_IAM = frozenset({_AUTH + "cloud-platform", _AUTH + "iam"})
SCOPES_DIRECTORY_USERS_READ = frozenset({_AUTH + "admin.directory.user.readonly", _AUTH + "admin.directory.user"})
SCOPES_POLICIES_READ = frozenset({_AUTH + "cloud-identity.policies.readonly", _AUTH + "cloud-identity.policies"})

IMAP_POLICY_TYPE = "settings/gmail.imap_access"
EXPUNGE_BEHAVIORS = frozenset({"expungeBehaviorUnspecified", "archive", "trash", "deleteForever"})
MAX_FOLDER_SIZES = frozenset({0, 1000, 2000, 5000, 10000})
DEFAULT_IMAP_SETTINGS: dict[str, Any] = {"autoExpunge": True, "expungeBehavior": "archive", "maxFolderSize": 0}

_COMMON_HEADERS = {"X-XSS-Protection": "0", "X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff"}
_STYLE_HEADERS: dict[str, dict[str, str]] = {
    "oauth": {
        "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
        "Pragma": "no-cache",
        "Expires": "Mon, 01 Jan 1990 00:00:00 GMT",
        "Vary": "Origin, X-Origin, Referer",
        **_COMMON_HEADERS,
    },
    "api": {"Cache-Control": "private", "Vary": "Origin, X-Origin, Referer", **_COMMON_HEADERS},
    "lab": {"Cache-Control": "no-store"},
}
_STYLE_SERVER = {"oauth": "scaffolding on HTTPServer2", "api": "ESF", "lab": "ESF"}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_REDACT = re.compile(r"(ya29\.|access_token=|assertion=|Bearer\s+)[^\s&'\"]+")


def lab_imap_fields(
    email_address: str,
    domain_enabled: bool,
    disabled_users: AbstractSet[str],
    suspended_users: AbstractSet[str] = frozenset(),
) -> dict[str, str]:
    """Lab-only tokeninfo fields telling Dovecot whether Gmail would let this user in over IMAP.

    The single source of the IMAP verdict and of Gmail's refusal texts: Dovecot maps these fields to
    its ``reason`` passdb extra, so a refused login shows exactly Gmail's line. A suspended user is refused
    like a bad token (``[AUTHENTICATIONFAILED] Invalid credentials (Failure)``); the domain switch wins over
    the per-user one, as in Gmail.
    """
    if email_address.lower() in suspended_users:
        return {"x_lab_imap": "suspended", "x_lab_imap_alert": IMAP_INVALID_CREDENTIALS}
    if not domain_enabled:
        return {"x_lab_imap": "disabled_domain", "x_lab_imap_alert": ALERT_IMAP_DOMAIN_DISABLED}
    if email_address.lower() in disabled_users:
        return {"x_lab_imap": "disabled_user", "x_lab_imap_alert": ALERT_IMAP_USER_DISABLED}
    return {"x_lab_imap": "enabled", "x_lab_imap_alert": ""}


def numeric_id(text: str) -> str:
    """A stable 21-digit Google-style numeric id (users' ``sub``/``id``) derived from an address."""
    digest = int.from_bytes(hashlib.sha256(text.lower().encode("utf-8")).digest()[:9], "big")
    return str(100000000000000000000 + digest % 10**20)


def rfc3339(timestamp: float) -> str:
    """Google's timestamp format (UTC, seconds precision, ``Z``)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reply:
    """One HTTP answer: status, JSON body (or raw bytes), extra headers and a header style."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    style: str = "api"


class ReplyError(Exception):
    """Raised inside handlers to answer early with a prepared (error) reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def oauth_error(status: int, error: str, description: str) -> Reply:
    """The OAuth endpoint's flat error body, e.g. ``{"error":"invalid_grant",...}``."""
    return Reply(status, {"error": error, "error_description": description}, style="oauth")


def api_error(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    errors_message: str | None = None,
    status_name: str | None = None,
    info: Mapping[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    legacy: bool = False,
) -> Reply:
    """Google's JSON error envelope (``error.code/message/errors/status/details``).

    ``legacy`` leaves out ``status`` the way the Admin SDK's own 403s still do.
    """
    error: dict[str, Any] = {"code": status, "message": message}
    if reason:
        error["errors"] = [{"message": errors_message or message, "domain": "global", "reason": reason}]
    if not legacy:
        error["status"] = status_name or _STATUS_NAMES.get(status, "UNKNOWN")
    if info:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", **info}]
    return Reply(status, {"error": error}, headers or {})


def is_oauth_path(path: str) -> bool:
    """Token and tokeninfo speak the OAuth error dialect; everything else the API envelope."""
    return path in ("/token", "/tokeninfo") or path.startswith("/oauth2/")


def fault_reply(path: str, status: int, body: Any = None, retry_after: str | None = None) -> Reply:
    """What Google sends when it is overloaded or failing, in the dialect of ``path``.

    ``retry_after`` (delta-seconds or an HTTP date) becomes a ``Retry-After`` header, as Google's 429 and 503
    answers may carry one.
    """
    reply = _fault_body(path, status, body)
    if retry_after is not None:
        reply.headers["Retry-After"] = retry_after
    return reply


def _fault_body(path: str, status: int, body: Any) -> Reply:
    style = "oauth" if is_oauth_path(path) else "api"
    if body is not None:
        return Reply(status, body, style=style)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if style == "oauth":
        error, description = {
            500: ("internal_failure", "Backend Error"),
            503: ("temporarily_unavailable", "The service is currently unavailable."),
            429: ("rate_limit_exceeded", "Rate Limit Exceeded"),
        }.get(status, ("server_error", phrase))
        return oauth_error(status, error, description)
    message, reason = {
        500: ("Internal error encountered.", "backendError"),
        503: ("The service is currently unavailable.", "backendError"),
        429: ("Resource has been exhausted (e.g. check quota).", "rateLimitExceeded"),
    }.get(status, (phrase, "backendError"))
    return api_error(status, message, reason=reason)


@dataclass(frozen=True)
class ApiMethod:
    """An API method's identity (for ErrorInfo metadata) and the scopes that grant it."""

    service: str
    method: str
    scopes: frozenset[str]


GMAIL_GET_IMAP = ApiMethod("gmail.googleapis.com", "caribou.api.proto.MailboxService.GetImap", SCOPES_GMAIL_IMAP_READ)
GMAIL_UPDATE_IMAP = ApiMethod(
    "gmail.googleapis.com", "caribou.api.proto.MailboxService.UpdateImap", SCOPES_GMAIL_IMAP_WRITE
)
IAM_LIST_KEYS = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.ListServiceAccountKeys", SCOPES_IAM)
IAM_GET_KEY = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.GetServiceAccountKey", SCOPES_IAM)
IAM_CREATE_KEY = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.CreateServiceAccountKey", SCOPES_IAM)
IAM_DELETE_KEY = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.DeleteServiceAccountKey", SCOPES_IAM)
IAM_DISABLE_KEY = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.DisableServiceAccountKey", SCOPES_IAM)
IAM_ENABLE_KEY = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.EnableServiceAccountKey", SCOPES_IAM)
IAM_GET_ACCOUNT = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.GetServiceAccount", SCOPES_IAM)
IAM_CREATE_ACCOUNT = ApiMethod("iam.googleapis.com", "google.iam.admin.v1.IAM.CreateServiceAccount", SCOPES_IAM)
SCOPES_SERVICE_USAGE = frozenset({_AUTH + "cloud-platform", _AUTH + "service.management"})
USAGE_GET = ApiMethod(
    "serviceusage.googleapis.com", "google.api.serviceusage.v1.ServiceUsage.GetService", SCOPES_SERVICE_USAGE
)
USAGE_ENABLE = ApiMethod(
    "serviceusage.googleapis.com", "google.api.serviceusage.v1.ServiceUsage.EnableService", SCOPES_SERVICE_USAGE
)
# Service Usage names and titles of the APIs the lab serves (what SERVICE_DISABLED messages call them).
SERVICE_TITLES = {
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "serviceusage.googleapis.com": "Service Usage API",
    "gmail.googleapis.com": "Gmail API",
    "cloudidentity.googleapis.com": "Cloud Identity API",
    "admin.googleapis.com": "Admin SDK API",
    "calendar-json.googleapis.com": "Google Calendar API",
}
MSG_KEY_CREATION_NOT_ALLOWED = "Key creation is not allowed on this service account."
MSG_PRECONDITION = "Precondition check failed."
CONSTRAINT_KEY_CREATION = "constraints/iam.disableServiceAccountKeyCreation"
DIRECTORY_LIST_USERS = ApiMethod(
    "admin.googleapis.com", "ccc.hosted.frontend.directory.v1.DirectoryUsers.List", SCOPES_DIRECTORY_USERS_READ
)
DIRECTORY_GET_USER = ApiMethod(
    "admin.googleapis.com", "ccc.hosted.frontend.directory.v1.DirectoryUsers.Get", SCOPES_DIRECTORY_USERS_READ
)
POLICIES_LIST = ApiMethod(
    "cloudidentity.googleapis.com",
    "google.apps.cloudidentity.policies.v1.PoliciesService.ListPolicies",
    SCOPES_POLICIES_READ,
)
POLICIES_GET = ApiMethod(
    "cloudidentity.googleapis.com",
    "google.apps.cloudidentity.policies.v1.PoliciesService.GetPolicy",
    SCOPES_POLICIES_READ,
)


def _error_info(reason: str, api: ApiMethod) -> dict[str, Any]:
    return {"reason": reason, "domain": "googleapis.com", "metadata": {"service": api.service, "method": api.method}}


@dataclass
class ServiceAccount:
    """A service account as IAM knows it; ``client_id`` is also its unique id."""

    email: str
    client_id: str
    project_id: str
    disabled: bool = False


@dataclass
class RegisteredKey:
    """A public key Google holds for a service account, addressed by ``kid``/private_key_id."""

    key_id: str
    account: str
    public_key: rsa.RSAPublicKey
    public_key_pem: str
    valid_after: float
    disabled: bool = False
    # The key's X.509 certificate (PEM), what keys.get returns with publicKeyType=TYPE_X509_PEM_FILE.
    certificate_pem: str | None = None


@dataclass
class Project:
    """A Google Cloud project as Service Usage and the lab's IAM policy see it.

    ``admins``: service accounts (of other projects) allowed every IAM and Service Usage call here;
    ``no_key_creation``: the organisation policy iam.disableServiceAccountKeyCreation applies.
    """

    project_id: str
    number: str
    services: set[str]
    admins: set[str] = field(default_factory=set)
    no_key_creation: bool = False


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What the lab remembers about an access token it issued (never the JWT itself)."""

    client_id: str
    account: str
    subject: str | None  # impersonated user; None for the service account's own token
    scopes: tuple[str, ...]
    scope_set: frozenset[str]
    expiry: float


@dataclass
class Fault:
    """Answer the next ``remaining`` requests under ``prefix`` with ``status`` (and ``Retry-After`` when set)."""

    prefix: str
    status: int
    remaining: int
    body: Any = None
    retry_after: str | None = None


# How many requests the request log keeps (oldest dropped first): a 2,500-user check makes 2,500 token requests.
REQUEST_LOG_SIZE = 20000
# How many minted access tokens (with the assertions they were minted for) ``/_lab/issued`` keeps, oldest dropped
# first and counted, for secret sweeps that search a run's output for each exact string.
ISSUED_LOG_SIZE = 20000


@dataclass
class Request:
    """The parts of an HTTP request the handlers need."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    content_type: str
    body: bytes


Handler = Callable[[Request, "re.Match[str]"], Reply]


def service_account_key_file(
    account: ServiceAccount, key_id: str, private_key_pem: str, token_uri: str
) -> dict[str, str]:
    """The JSON key file Google hands out (``privateKeyData`` of keys.create), pointed at ``token_uri``."""
    return {
        "type": "service_account",
        "project_id": account.project_id,
        "private_key_id": key_id,
        "private_key": private_key_pem,
        "client_email": account.email,
        "client_id": account.client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + urllib.parse.quote(account.email, safe=""),
        "universe_domain": "googleapis.com",
    }


# Google's key certificates and P12 files, as a real one shows them (a P12 that gcloud created, kept as a test constant
# in googleapis/google-cloud-cpp: google/cloud/storage/testing/constants.h, read with openssl pkcs12 -info and x509
# -text): subject and issuer both CN=<the account's numeric unique ID, the client ID>, X.509 v3, a random 64-bit
# serial, valid from the key's creation for 3650 days, basicConstraints CA:FALSE, keyUsage digitalSignature and
# extendedKeyUsage clientAuth (all critical); PKCS#12 with password "notasecret", the key bag PBE-SHA1-3DES, MAC SHA-1,
# friendly name "privatekey". Differences the lab cannot avoid: the signature is SHA-256 (cryptography refuses SHA-1
# signatures; Google's is sha1WithRSAEncryption), the certificate bag is 3DES rather than RC2-40, and the friendly
# name and localKeyID are on both bags (Google's localKeyID is "Time <ms>" on the certificate bag only).
KEY_CERTIFICATE_DAYS = 3650
_CERTIFICATE_SIGNER: list[rsa.RSAPrivateKey] = []


def google_key_certificate(
    public_key: rsa.RSAPublicKey, client_id: str, valid_after: float, private_key: rsa.RSAPrivateKey | None = None
) -> x509.Certificate:
    """The certificate Google issues for a service-account key (self-signed when ``private_key`` is known).

    A key registered by its public half only (control API) gets the same certificate signed by a lab key: only its
    subject and public key are read by clients, never its signature.
    """
    if private_key is None:
        if not _CERTIFICATE_SIGNER:
            _CERTIFICATE_SIGNER.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        signer = _CERTIFICATE_SIGNER[0]
    else:
        signer = private_key
    start = datetime.fromtimestamp(int(valid_after), UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_id)])
    no_usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(secrets.randbits(63) | 1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=KEY_CERTIFICATE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **no_usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
        .sign(signer, hashes.SHA256())
    )


def service_account_pkcs12(
    private_key: rsa.RSAPrivateKey,
    client_id: str,
    valid_after: float | None = None,
    password: bytes = P12_PASSWORD,
    certificate: x509.Certificate | None = None,
) -> bytes:
    """A P12 key file as Google hands it out (see above).

    Legacy PBE (3DES/SHA1) on purpose: Google's files use it and old OpenSSL builds (MSL) read nothing newer.
    """
    cert = certificate or google_key_certificate(
        private_key.public_key(), client_id, time.time() if valid_after is None else valid_after, private_key
    )
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - PKCS#12 compatibility, not a security boundary
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(b"privatekey", private_key, cert, None, encryption)


class GoogleState:
    """Everything the emulated Google knows, plus the request logic; thread-safe."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config: dict[str, Any] = json.loads(json.dumps(config))
        self.lock = threading.Lock()
        self.started = time.time()
        self.host = str(self._config.get("host", "127.0.0.1"))
        self.port = int(self._config.get("port", 0))
        self._load(self._config)
        self._set_audiences()
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = self._build_routes()

    # ----------------------------------------------------------------- state
    def _load(self, config: Mapping[str, Any]) -> None:
        """(Re)build all mutable state from the config; caller holds the lock or is __init__."""
        self.domain = str(config["domain"]).lower()
        self.admin = str(config["admin"]).lower()
        self.customer_id = str(config.get("customer_id") or "C0" + hashlib.sha256(self.domain.encode()).hexdigest()[:7])
        self.users: set[str] = {str(u).lower() for u in config.get("users", [])} | {self.admin}
        self._sorted_users: list[str] | None = None
        self.accounts: dict[str, ServiceAccount] = {}
        self.accounts_by_id: dict[str, ServiceAccount] = {}
        self.keys: dict[str, RegisteredKey] = {}
        for entry in config.get("service_accounts", []):
            account = ServiceAccount(
                str(entry["email"]).lower(),
                str(entry["client_id"]),
                str(entry["project_id"]),
                bool(entry.get("disabled")),
            )
            self.accounts[account.email] = account
            self.accounts_by_id[account.client_id] = account
            for key in entry.get("keys", []):
                self._register_key(account.email, str(key["private_key_id"]), str(key["public_key_pem"]), self.started)
        # Every project of a configured service account starts with every API enabled (the lab's
        # behaviour before projects existed); projects added through the control API start empty.
        self.projects: dict[str, Project] = {}
        for account in self.accounts.values():
            self._project(account.project_id, set(SERVICE_TITLES))
        self.denied_permissions: set[str] = set()
        self.authorized: dict[str, set[str]] = {
            str(cid): set(scopes) for cid, scopes in config.get("authorized_scopes", {}).items()
        }
        imap = config.get("imap", {})
        self.imap_domain_enabled = bool(imap.get("domain_enabled", True))
        self.imap_disabled_users: set[str] = {str(u).lower() for u in imap.get("disabled_users", [])}
        self.imap_settings: dict[str, dict[str, Any]] = {}
        self.suspended_users: set[str] = {str(u).lower() for u in config.get("suspended_users", [])}
        self.clock_tolerance = float(config.get("clock_tolerance_seconds", 300))
        self.clock_offset = float(config.get("clock_offset_seconds", 0))
        self.token_uri_config: str | None = config.get("token_uri")
        self.tokens: dict[str, IssuedToken] = {}
        self.faults: list[Fault] = []
        self.latency: dict[str, float] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self.faults_served = 0
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.issued_log: deque[dict[str, Any]] = deque(maxlen=ISSUED_LOG_SIZE)
        self.issued_dropped = 0

    def _project(self, project_id: str, services: set[str] | None = None) -> Project:
        """The project, created (with ``services`` enabled) when unknown; caller holds the lock or is _load."""
        project = self.projects.get(project_id)
        if project is None:
            project = Project(project_id, numeric_id("project:" + project_id)[:12], set(services or ()))
            self.projects[project_id] = project
        return project

    def _register_key(self, account: str, key_id: str, pem: str, valid_after: float) -> RegisteredKey:
        key = RegisteredKey(key_id, account, jwtutil.load_public_key(pem), pem, valid_after)
        self.keys[key_id] = key
        return key

    def set_endpoint(self, host: str, port: int) -> None:
        """Record the bound address (port 0 becomes real) so token URIs and audiences are right."""
        with self.lock:
            self.host, self.port = host, port
            self._set_audiences()

    def _set_audiences(self) -> None:
        lab = {f"https://{h}:{self.port}/token" for h in (self.host, "127.0.0.1", "localhost")}
        if self.token_uri_config:
            lab.add(self.token_uri_config)
        self.audiences = frozenset(lab | GOOGLE_TOKEN_AUDIENCES)

    @property
    def token_uri(self) -> str:
        """The token URI key files handed out by the lab carry."""
        return self.token_uri_config or f"https://{self.host}:{self.port}/token"

    def now(self) -> float:
        """The server's clock: real time plus the configured offset (to emulate a skewed Google)."""
        return time.time() + self.clock_offset

    def _users_sorted(self) -> list[str]:
        if self._sorted_users is None:
            self._sorted_users = sorted(self.users)
        return self._sorted_users

    def _users_changed(self) -> None:
        self._sorted_users = None

    # ----------------------------------------------------------------- dispatch
    def _build_routes(self) -> list[tuple[str, re.Pattern[str], str, Handler]]:
        keys = r"/v1/projects/([^/]+)/serviceAccounts/([^/]+)/keys"
        table: list[tuple[str, str, str, Handler]] = [
            ("POST", r"/token|/oauth2/v4/token", "token", self._token),
            ("GET", r"/tokeninfo|/oauth2/v3/tokeninfo", "tokeninfo", self._tokeninfo),
            ("POST", r"/tokeninfo|/oauth2/v3/tokeninfo", "tokeninfo", self._tokeninfo),
            ("POST", r"/revoke|/o/oauth2/revoke", "revoke", self._revoke),
            ("GET", r"/gmail/v1/users/([^/]+)/settings/imap", "gmail.settings.getImap", self._gmail_get_imap),
            ("PUT", r"/gmail/v1/users/([^/]+)/settings/imap", "gmail.settings.updateImap", self._gmail_update_imap),
            ("GET", keys, "iam.keys.list", self._iam_list_keys),
            ("POST", keys, "iam.keys.create", self._iam_create_key),
            ("GET", keys + r"/([^/]+)", "iam.keys.get", self._iam_get_key),
            ("DELETE", keys + r"/([^/]+)", "iam.keys.delete", self._iam_delete_key),
            ("POST", keys + r"/([^/:]+):disable", "iam.keys.disable", self._iam_disable_key),
            ("POST", keys + r"/([^/:]+):enable", "iam.keys.enable", self._iam_enable_key),
            ("POST", r"/v1/projects/([^/]+)/serviceAccounts", "iam.serviceAccounts.create", self._iam_create_account),
            ("GET", r"/v1/projects/([^/]+)/serviceAccounts/([^/]+)", "iam.serviceAccounts.get", self._iam_get_account),
            ("GET", r"/v1/projects/([^/]+)/services/([^/:]+)", "serviceusage.services.get", self._usage_get),
            (
                "POST",
                r"/v1/projects/([^/]+)/services/([^/:]+):enable",
                "serviceusage.services.enable",
                self._usage_enable,
            ),
            ("GET", r"/admin/directory/v1/users", "directory.users.list", self._directory_list_users),
            ("GET", r"/admin/directory/v1/users/([^/]+)", "directory.users.get", self._directory_get_user),
            ("GET", r"/v1/policies", "cloudidentity.policies.list", self._policies_list),
            ("GET", r"/v1/policies/([^/]+)", "cloudidentity.policies.get", self._policies_get),
        ]
        return [(method, re.compile(pattern), name, func) for method, pattern, name, func in table]

    def handle(self, request: Request) -> Reply:
        """Route a (non-control) request, applying injected latency and faults first; log and count it."""
        received_at = time.time()
        endpoint, func, match = "unknown", None, None
        for method, pattern, name, candidate in self._routes:
            found = pattern.fullmatch(request.path)
            if found and method == request.method:
                endpoint, func, match = name, candidate, found
                break
        delay, fault = self._take_latency_and_fault(request.path)
        if delay:
            time.sleep(delay)
        if fault is not None:
            reply = fault
        elif func is None or match is None:
            reply = api_error(404, "Method not found.", status_name="NOT_FOUND")
        else:
            try:
                reply = func(request, match)
            except ReplyError as exc:
                reply = exc.reply
            except Exception:
                LOG.exception("internal error handling %s %s", request.method, request.path)
                reply = fault_reply(request.path, 500)
        with self.lock:
            counts = self.stats.setdefault(endpoint, {"total": 0})
            counts["total"] += 1
            counts[str(reply.status)] = counts.get(str(reply.status), 0) + 1
            # Paths and times only: no query string (tokeninfo's carries a token), no body, no header.
            self.request_log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "endpoint": endpoint,
                    "status": reply.status,
                    "fault": fault is not None,
                    "received_at": received_at,
                    "answered_at": time.time(),
                }
            )
        return reply

    def _take_latency_and_fault(self, path: str) -> tuple[float, Reply | None]:
        with self.lock:
            delay = 0.0
            best = -1
            for prefix, ms in self.latency.items():
                if path.startswith(prefix) and len(prefix) > best:
                    best, delay = len(prefix), ms / 1000.0
            for fault in self.faults:
                if fault.remaining > 0 and path.startswith(fault.prefix):
                    fault.remaining -= 1
                    self.faults_served += 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return delay, fault_reply(path, fault.status, fault.body, fault.retry_after)
        return delay, None

    # ----------------------------------------------------------------- OAuth token endpoint
    def _token(self, request: Request, _match: re.Match[str]) -> Reply:
        params = _form_or_json(request)
        grant_type = params.get("grant_type")
        if not grant_type:
            return oauth_error(400, "invalid_request", "Missing required parameter: grant_type")
        if grant_type != JWT_BEARER_GRANT:
            return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        assertion = params.get("assertion")
        if not assertion:
            return oauth_error(400, "invalid_request", "Missing required parameter: assertion")
        try:
            token = jwtutil.decode(assertion)
        except jwtutil.JWTFormatError:
            return oauth_error(400, "invalid_grant", MSG_MALFORMED_ASSERTION)
        return self.exchange_assertion(token, assertion)

    def exchange_assertion(self, token: jwtutil.DecodedJWT, assertion: str | None = None) -> Reply:
        """Google's JWT-bearer checks, in Google's order, each failing with Google's answer.

        A minted token is remembered with the assertion it was minted for (``assertion``, or the JWT rebuilt from
        ``token``) in the issued log that ``GET /_lab/issued`` lists.
        """
        claims, header = token.claims, token.header
        issuer = str(claims.get("iss", "")).lower()
        kid = header.get("kid")
        with self.lock:
            account = self.accounts.get(issuer)
            if account is None or account.disabled:
                return oauth_error(400, "invalid_grant", MSG_ACCOUNT_NOT_FOUND)
            if isinstance(kid, str) and kid:
                known = self.keys.get(kid)
                usable = known is not None and known.account == account.email and not known.disabled
                candidates = [known.public_key] if known is not None and usable else []
            else:
                # No kid (the P12 flow): Google tries every key of the account, as here.
                candidates = [k.public_key for k in self.keys.values() if k.account == account.email and not k.disabled]
            now, tolerance = self.now(), self.clock_tolerance
            audiences, lab_token_uri = self.audiences, self.token_uri
        if header.get("alg") != "RS256" or not any(jwtutil.verify_rs256(key, token) for key in candidates):
            return oauth_error(400, "invalid_grant", MSG_BAD_SIGNATURE)
        if claims.get("aud") not in audiences:
            return oauth_error(400, "invalid_grant", MSG_BAD_AUDIENCE.format(lab_token_uri))
        iat, exp = claims.get("iat"), claims.get("exp")
        if not _is_number(iat) or not _is_number(exp):
            return oauth_error(400, "invalid_grant", MSG_BAD_TIMEFRAME)
        iat, exp = float(iat), float(exp)  # type: ignore[arg-type]
        if exp <= iat or exp - iat > MAX_ASSERTION_LIFETIME or iat > now + tolerance or exp < now - tolerance:
            return oauth_error(400, "invalid_grant", MSG_BAD_TIMEFRAME)
        scope_claim = claims.get("scope")
        scopes = tuple(dict.fromkeys(scope_claim.split())) if isinstance(scope_claim, str) else ()
        if not scopes:
            return oauth_error(400, "invalid_scope", MSG_NO_SCOPE)
        raw_subject = claims.get("sub") or claims.get("prn")
        subject = str(raw_subject).lower() if raw_subject else None
        with self.lock:
            if subject == account.email:
                subject = None
            if subject is not None:
                if subject not in self.users:
                    return oauth_error(400, "invalid_grant", MSG_INVALID_SUBJECT)
                if not set(scopes) <= self.authorized.get(account.client_id, set()):
                    return oauth_error(401, "unauthorized_client", MSG_UNAUTHORIZED_CLIENT)
            access_token = "ya29.c." + secrets.token_urlsafe(96)
            self.tokens[access_token] = IssuedToken(
                account.client_id, account.email, subject, scopes, frozenset(scopes), now + ACCESS_TOKEN_LIFETIME
            )
            if len(self.tokens) > 200_000:
                self.tokens = {k: v for k, v in self.tokens.items() if v.expiry > now}
            if len(self.issued_log) == self.issued_log.maxlen:
                self.issued_dropped += 1
            self.issued_log.append(
                {
                    "access_token": access_token,
                    "assertion": assertion
                    or token.signing_input.decode("ascii") + "." + jwtutil.b64url_encode(token.signature),
                    "jti": claims.get("jti"),
                    "account": account.email,
                    "subject": subject,
                    "issued_at": time.time(),
                }
            )
        return Reply(
            200,
            {"access_token": access_token, "expires_in": ACCESS_TOKEN_LIFETIME, "token_type": "Bearer"},
            style="oauth",
        )

    def lookup_token(self, access_token: str) -> tuple[IssuedToken | None, str]:
        """(token, "ok") or (None, "invalid"|"expired"). Cheap: a few dict/set lookups."""
        with self.lock:
            issued = self.tokens.get(access_token)
            if issued is None:
                return None, "invalid"
            if self.now() >= issued.expiry:
                return None, "expired"
            account = self.accounts.get(issued.account)
            # Google revokes a disabled account's tokens and a deleted user's; the lab does too.
            if account is None or account.disabled:
                return None, "invalid"
            if issued.subject is not None and issued.subject not in self.users:
                return None, "invalid"
            return issued, "ok"

    # ----------------------------------------------------------------- tokeninfo
    def _tokeninfo(self, request: Request, _match: re.Match[str]) -> Reply:
        access_token = request.query.get("access_token")
        if not access_token and request.method == "POST":
            form = _form_or_json(request)
            # ``token`` is what Dovecot's introspection_mode=post sends; Google itself only knows access_token.
            access_token = form.get("access_token") or form.get("token")
        if not access_token and request.authorization and request.authorization[:7].lower() == "bearer ":
            access_token = request.authorization[7:].strip()
        if not access_token:
            return oauth_error(400, "invalid_request", MSG_TOKENINFO_MISSING)
        return self.tokeninfo(access_token, dovecot=DOVECOT_TOKENINFO_FLAG in request.query)

    def tokeninfo(self, access_token: str, dovecot: bool = False) -> Reply:
        """Google's v3 tokeninfo body (string-valued like Google's) plus the lab IMAP fields.

        ``dovecot``: the lab's Dovecot asks; a token Google would refuse (unknown, expired, revoked) is answered
        200 with an empty ``email`` and the verdict ``invalid_token``, so that Dovecot's passdbs refuse the login
        with Gmail's ``[AUTHENTICATIONFAILED] Invalid credentials (Failure)`` rather than its own words.
        """
        issued, _state = self.lookup_token(access_token)
        if issued is None:
            if dovecot:
                body = {"email": "", "x_lab_imap": "invalid_token", "x_lab_imap_alert": IMAP_INVALID_CREDENTIALS}
                return Reply(200, body | {"x_lab_invalid_credentials": IMAP_INVALID_CREDENTIALS}, style="oauth")
            return oauth_error(400, "invalid_token", MSG_TOKENINFO_INVALID)
        now = self.now()
        if issued.subject is not None:
            address, sub = issued.subject, numeric_id(issued.subject)
        else:
            address, sub = issued.account, issued.client_id
        body = {
            "azp": issued.client_id,
            "aud": issued.client_id,
            "sub": sub,
            "scope": " ".join(issued.scopes),
            "exp": str(int(issued.expiry)),
            "expires_in": str(max(0, int(issued.expiry - now))),
            "email": address,
            "email_verified": "true",
            "access_type": "online",
        }
        with self.lock:
            body.update(
                lab_imap_fields(address, self.imap_domain_enabled, self.imap_disabled_users, self.suspended_users)
            )
        if dovecot:
            # The text Dovecot answers a token presented for another user with (see tests/lab/dovecot.py).
            body["x_lab_invalid_credentials"] = IMAP_INVALID_CREDENTIALS
        return Reply(200, body, style="oauth")

    # ----------------------------------------------------------------- token revocation
    def _revoke(self, request: Request, _match: re.Match[str]) -> Reply:
        """Google's ``POST https://oauth2.googleapis.com/revoke`` (``token=``): the token stops working at once."""
        params = _form_or_json(request)
        token = params.get("token") or request.query.get("token")
        if not token:
            return oauth_error(400, "invalid_request", "Missing required parameter: token")
        with self.lock:
            revoked = self.tokens.pop(token, None)
        if revoked is None:
            return oauth_error(400, "invalid_token", MSG_REVOKE_INVALID)
        return Reply(200, {}, style="oauth")

    # ----------------------------------------------------------------- API authorisation
    def authorize(self, request: Request, api: ApiMethod) -> IssuedToken:
        """Bearer token check + scope check with Google's 401/403 bodies; returns the token."""
        access_token = None
        if request.authorization:
            scheme, _sep, value = request.authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                access_token = value.strip()
        access_token = access_token or request.query.get("access_token")
        if not access_token:
            raise ReplyError(
                api_error(
                    401,
                    MSG_UNAUTHENTICATED_MISSING,
                    reason="required",
                    errors_message="Login Required.",
                    info=_error_info("CREDENTIALS_MISSING", api),
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
                )
            )
        issued, verdict = self.lookup_token(access_token)
        if issued is None:
            raise ReplyError(
                api_error(
                    401,
                    MSG_UNAUTHENTICATED_INVALID,
                    reason="authError",
                    errors_message="Invalid Credentials",
                    info=_error_info(
                        "ACCESS_TOKEN_EXPIRED" if verdict == "expired" else "ACCESS_TOKEN_TYPE_UNSUPPORTED", api
                    ),
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
                )
            )
        if not issued.scope_set & api.scopes:
            raise ReplyError(
                api_error(
                    403,
                    MSG_INSUFFICIENT_SCOPES,
                    reason="insufficientPermissions",
                    errors_message="Insufficient Permission",
                    info=_error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", api),
                    headers={
                        "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="insufficient_scope", '
                        f'scope="{" ".join(sorted(api.scopes))}"'
                    },
                )
            )
        return issued

    def _require_admin_subject(self, issued: IssuedToken, legacy_admin_sdk: bool) -> None:
        """Directory and Policy calls act as the impersonated user, who must be the super admin."""
        if issued.subject == self.admin:
            return
        if legacy_admin_sdk:
            raise ReplyError(api_error(403, MSG_NOT_AUTHORIZED_ADMIN, reason="forbidden", legacy=True))
        raise ReplyError(api_error(403, MSG_CALLER_NO_PERMISSION))

    # ----------------------------------------------------------------- Gmail users.settings.imap
    def _gmail_target(self, request: Request, match: re.Match[str], api: ApiMethod) -> str:
        issued = self.authorize(request, api)
        self._require_service(issued, "gmail.googleapis.com")
        if issued.subject is None:
            # A service account without a subject has no mailbox: Gmail's well-known answer.
            raise ReplyError(
                api_error(
                    400, "Precondition check failed.", reason="failedPrecondition", status_name="FAILED_PRECONDITION"
                )
            )
        user_id = urllib.parse.unquote(match.group(1)).lower()
        target = issued.subject if user_id == "me" else user_id
        if target != issued.subject:
            message = f"Delegation denied for {issued.subject}"
            raise ReplyError(api_error(403, message, reason="forbidden"))
        return target

    def imap_settings_for(self, user: str) -> dict[str, Any]:
        """A user's ImapSettings resource; ``enabled`` is the same flag tokeninfo reports."""
        with self.lock:
            merged = {"enabled": user not in self.imap_disabled_users}
            merged.update(DEFAULT_IMAP_SETTINGS)
            merged.update(self.imap_settings.get(user, {}))
        return merged

    def _gmail_get_imap(self, request: Request, match: re.Match[str]) -> Reply:
        return Reply(200, self.imap_settings_for(self._gmail_target(request, match, GMAIL_GET_IMAP)))

    def _gmail_update_imap(self, request: Request, match: re.Match[str]) -> Reply:
        user = self._gmail_target(request, match, GMAIL_UPDATE_IMAP)
        payload = _json_payload(request)
        checks: dict[str, Callable[[Any], bool]] = {
            "enabled": lambda v: isinstance(v, bool),
            "autoExpunge": lambda v: isinstance(v, bool),
            "expungeBehavior": lambda v: v in EXPUNGE_BEHAVIORS,
            "maxFolderSize": lambda v: isinstance(v, int) and not isinstance(v, bool) and v in MAX_FOLDER_SIZES,
        }
        for name, value in payload.items():
            if name not in checks:
                message = f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                return api_error(400, message, reason="invalid")
            if not checks[name](value):
                return api_error(400, f"Invalid value for {name}: {json.dumps(value)}", reason="invalidArgument")
        with self.lock:
            if "enabled" in payload:
                if payload["enabled"]:
                    self.imap_disabled_users.discard(user)
                else:
                    self.imap_disabled_users.add(user)
            stored = self.imap_settings.setdefault(user, {})
            stored.update({k: v for k, v in payload.items() if k != "enabled"})
        return Reply(200, self.imap_settings_for(user))

    # ----------------------------------------------------------------- IAM service-account keys
    def _require_service(self, issued: IssuedToken, service: str) -> None:
        """Google bills and gates an API call on the caller's project: it must have ``service`` enabled."""
        with self.lock:
            caller = self.accounts.get(issued.account)
            project = self.projects.get(caller.project_id) if caller is not None else None
            if project is None or service in project.services:
                return
            number = project.number
        title = SERVICE_TITLES.get(service, service)
        link = f"https://console.developers.google.com/apis/api/{service}/overview?project={number}"
        message = (
            f"{title} has not been used in project {number} before or it is disabled. Enable it by visiting {link} "
            "then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our "
            "systems and retry."
        )
        error: dict[str, Any] = {
            "code": 403,
            "message": message,
            "errors": [
                {"message": message, "domain": "usageLimits", "reason": "accessNotConfigured", "extendedHelp": link}
            ],
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": service,
                        "consumer": f"projects/{number}",
                        "activationUrl": link,
                        "serviceTitle": title,
                        "containerInfo": number,
                    },
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{"description": "Google developers console API activation", "url": link}],
                },
            ],
        }
        raise ReplyError(Reply(403, {"error": error}))

    def _may_administer(self, issued: IssuedToken, project: str, permission: str) -> None:
        """The lab's IAM policy: the super admin; a service account (acting as itself) in its own project or
        in a project that lists it in ``admins``; never for a permission the control API denied."""
        with self.lock:
            caller = self.accounts.get(issued.account)
            target = self.projects.get(project)
            denied = permission in self.denied_permissions
        caller_project = caller.project_id if caller is not None and issued.subject is None else None
        allowed = issued.subject == self.admin or (
            caller_project is not None
            and (caller_project == project or (target is not None and issued.account in target.admins))
        )
        if denied or not allowed:
            raise ReplyError(
                api_error(
                    403,
                    f"Permission '{permission}' denied on resource (or it may not exist).",
                    info={
                        "reason": "IAM_PERMISSION_DENIED",
                        "domain": "iam.googleapis.com",
                        "metadata": {"permission": permission},
                    },
                )
            )

    def _iam_context(
        self, request: Request, match: re.Match[str], api: ApiMethod, permission: str
    ) -> tuple[ServiceAccount, IssuedToken]:
        issued = self.authorize(request, api)
        self._require_service(issued, "iam.googleapis.com")
        project = urllib.parse.unquote(match.group(1))
        wanted = urllib.parse.unquote(match.group(2)).lower()
        with self.lock:
            account = self.accounts.get(wanted) or self.accounts_by_id.get(wanted)
        target_project = account.project_id if account is not None else project
        if project not in ("-", target_project):
            target_project = project
        self._may_administer(issued, target_project, permission)
        if account is None or project not in ("-", account.project_id):
            raise ReplyError(api_error(404, "Unknown service account"))
        return account, issued

    def _key_resource(self, key: RegisteredKey, account: ServiceAccount) -> dict[str, Any]:
        return {
            "name": f"projects/{account.project_id}/serviceAccounts/{account.email}/keys/{key.key_id}",
            "validAfterTime": rfc3339(key.valid_after),
            "validBeforeTime": "9999-12-31T23:59:59Z",
            "keyAlgorithm": "KEY_ALG_RSA_2048",
            "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": "USER_MANAGED",
            **({"disabled": True} if key.disabled else {}),
        }

    def _iam_list_keys(self, request: Request, match: re.Match[str]) -> Reply:
        account, _issued = self._iam_context(request, match, IAM_LIST_KEYS, "iam.serviceAccountKeys.list")
        wanted_types = request.query.get("keyTypes", "")
        with self.lock:
            keys = sorted((k for k in self.keys.values() if k.account == account.email), key=lambda k: k.valid_after)
        if wanted_types and "USER_MANAGED" not in wanted_types.split(","):
            keys = []
        return Reply(200, {"keys": [self._key_resource(k, account) for k in keys]} if keys else {})

    def _iam_get_key(self, request: Request, match: re.Match[str]) -> Reply:
        account, _issued = self._iam_context(request, match, IAM_GET_KEY, "iam.serviceAccountKeys.get")
        key = self._find_key(account, match.group(3))
        resource = self._key_resource(key, account)
        public_type = request.query.get("publicKeyType", "TYPE_NONE")
        if public_type == "TYPE_X509_PEM_FILE":
            with self.lock:
                if key.certificate_pem is None:
                    certificate = google_key_certificate(key.public_key, account.client_id, key.valid_after)
                    key.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
                pem = key.certificate_pem
            resource["publicKeyData"] = base64.b64encode(pem.encode("ascii")).decode("ascii")
        elif public_type not in ("TYPE_NONE", ""):
            return api_error(
                400, f"Invalid value at 'public_key_type' ({json.dumps(public_type)})", reason="badRequest"
            )
        return Reply(200, resource)

    def _find_key(self, account: ServiceAccount, key_id: str) -> RegisteredKey:
        with self.lock:
            key = self.keys.get(urllib.parse.unquote(key_id))
        if key is None or key.account != account.email:
            name = f"projects/{account.project_id}/serviceAccounts/{account.email}/keys/{key_id}"
            raise ReplyError(api_error(404, f"Service account key {name} does not exist."))
        return key

    def _iam_delete_key(self, request: Request, match: re.Match[str]) -> Reply:
        account, _issued = self._iam_context(request, match, IAM_DELETE_KEY, "iam.serviceAccountKeys.delete")
        key = self._find_key(account, match.group(3))
        with self.lock:
            self.keys.pop(key.key_id, None)
        return Reply(200, {})

    def _iam_create_key(self, request: Request, match: re.Match[str]) -> Reply:
        account, _issued = self._iam_context(request, match, IAM_CREATE_KEY, "iam.serviceAccountKeys.create")
        payload = _json_payload(request) if request.body.strip() else {}
        key_type = payload.get("privateKeyType") or "TYPE_GOOGLE_CREDENTIALS_FILE"
        algorithm = payload.get("keyAlgorithm") or "KEY_ALG_RSA_2048"
        if key_type not in ("TYPE_GOOGLE_CREDENTIALS_FILE", "TYPE_PKCS12_FILE"):
            return api_error(400, f"Invalid value at 'private_key_type' ({json.dumps(key_type)})", reason="badRequest")
        if algorithm not in ("KEY_ALG_RSA_2048", "KEY_ALG_UNSPECIFIED"):
            return api_error(400, f"Invalid value at 'key_algorithm' ({json.dumps(algorithm)})", reason="badRequest")
        with self.lock:
            project = self.projects.get(account.project_id)
            no_key_creation = project is not None and project.no_key_creation
        if no_key_creation:
            # Google's answer when iam.disableServiceAccountKeyCreation applies (default for orgs since 2024-05-03).
            subject = (
                f"projects/{account.project_id}/serviceAccounts/{account.email}"
                f"?configvalue={urllib.parse.quote(account.email, safe='')}"
            )
            body = {
                "error": {
                    "code": 400,
                    "message": MSG_KEY_CREATION_NOT_ALLOWED,
                    "status": "FAILED_PRECONDITION",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                            "violations": [
                                {
                                    "type": CONSTRAINT_KEY_CREATION,
                                    "subject": subject,
                                    "description": MSG_KEY_CREATION_NOT_ALLOWED,
                                }
                            ],
                        }
                    ],
                }
            }
            return Reply(400, body)
        if self._key_count(account) >= MAX_KEYS_PER_SERVICE_ACCOUNT:
            # Google's (unhelpful) answer to the 10-key limit: no reason, no detail.
            return api_error(400, MSG_PRECONDITION, status_name="FAILED_PRECONDITION")
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        private_pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        with self.lock:
            key = self._register_key(account.email, key_id, jwtutil.public_key_pem(private_key), self.now())
            token_uri = self.token_uri
        # Google makes the key's certificate at creation, self-signed; the P12 carries the same one.
        certificate = google_key_certificate(private_key.public_key(), account.client_id, key.valid_after, private_key)
        key.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        if key_type == "TYPE_PKCS12_FILE":
            data = service_account_pkcs12(
                private_key, account.client_id, certificate=x509.load_pem_x509_certificate(key.certificate_pem.encode())
            )
        else:
            data = json.dumps(service_account_key_file(account, key_id, private_pem, token_uri), indent=2).encode(
                "utf-8"
            )
        resource = self._key_resource(key, account)
        created: dict[str, Any] = {
            "name": resource.pop("name"),
            "privateKeyType": key_type,
            "privateKeyData": base64.b64encode(data).decode("ascii"),
            **resource,
        }
        return Reply(200, created)

    def _iam_disable_key(self, request: Request, match: re.Match[str]) -> Reply:
        return self._set_key_disabled(request, match, IAM_DISABLE_KEY, "iam.serviceAccountKeys.disable", True)

    def _iam_enable_key(self, request: Request, match: re.Match[str]) -> Reply:
        return self._set_key_disabled(request, match, IAM_ENABLE_KEY, "iam.serviceAccountKeys.enable", False)

    def _set_key_disabled(
        self, request: Request, match: re.Match[str], api: ApiMethod, permission: str, disabled: bool
    ) -> Reply:
        account, _issued = self._iam_context(request, match, api, permission)
        key = self._find_key(account, match.group(3))
        with self.lock:
            # New assertions signed with a disabled key are refused; tokens already issued live out their hour.
            key.disabled = disabled
        return Reply(200, {})

    def _account_resource(self, account: ServiceAccount) -> dict[str, Any]:
        return {
            "name": f"projects/{account.project_id}/serviceAccounts/{account.email}",
            "projectId": account.project_id,
            "uniqueId": account.client_id,
            "email": account.email,
            "displayName": "",
            "etag": base64.b64encode(hashlib.sha256(account.email.encode()).digest()[:8]).decode("ascii"),
            "oauth2ClientId": account.client_id,
            **({"disabled": True} if account.disabled else {}),
        }

    def _iam_get_account(self, request: Request, match: re.Match[str]) -> Reply:
        issued = self.authorize(request, IAM_GET_ACCOUNT)
        self._require_service(issued, "iam.googleapis.com")
        project = urllib.parse.unquote(match.group(1))
        wanted = urllib.parse.unquote(match.group(2)).lower()
        with self.lock:
            account = self.accounts.get(wanted) or self.accounts_by_id.get(wanted)
        self._may_administer(issued, account.project_id if account is not None else project, "iam.serviceAccounts.get")
        if account is None or project not in ("-", account.project_id):
            return api_error(404, f"Unknown service account: projects/{project}/serviceAccounts/{wanted}")
        return Reply(200, self._account_resource(account))

    def _iam_create_account(self, request: Request, match: re.Match[str]) -> Reply:
        issued = self.authorize(request, IAM_CREATE_ACCOUNT)
        self._require_service(issued, "iam.googleapis.com")
        project_id = urllib.parse.unquote(match.group(1))
        self._may_administer(issued, project_id, "iam.serviceAccounts.create")
        payload = _json_payload(request)
        account_id = str(payload.get("accountId") or "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])", account_id):
            return api_error(400, f"Invalid account ID: {account_id!r}; it must be 6-30 characters [a-z0-9-].")
        with self.lock:
            if project_id not in self.projects:
                return api_error(404, f"Requested entity was not found. (project {project_id})")
        email = f"{account_id}@{project_id}.iam.gserviceaccount.com"
        with self.lock:
            if email in self.accounts:
                return api_error(
                    409, f"Service account {account_id} already exists within project projects/{project_id}."
                )
            account = ServiceAccount(email, numeric_id("sa:" + email), project_id)
            self.accounts[email] = account
            self.accounts_by_id[account.client_id] = account
        resource = self._account_resource(account)
        details = payload.get("serviceAccount") or {}
        resource["displayName"] = str(details.get("displayName") or "")
        return Reply(200, resource)

    # ----------------------------------------------------------------- Service Usage
    def _usage_context(
        self, request: Request, match: re.Match[str], api: ApiMethod, permission: str
    ) -> tuple[Project, str]:
        issued = self.authorize(request, api)
        self._require_service(issued, "serviceusage.googleapis.com")
        project_id = urllib.parse.unquote(match.group(1))
        service = urllib.parse.unquote(match.group(2))
        self._may_administer(issued, project_id, permission)
        with self.lock:
            project = self.projects.get(project_id)
        if project is None:
            raise ReplyError(api_error(403, f"Permission denied to get service [{service}]", reason="forbidden"))
        if service not in SERVICE_TITLES:
            raise ReplyError(api_error(404, f"Service {service} not found or permission denied."))
        return project, service

    def _service_resource(self, project: Project, service: str) -> dict[str, Any]:
        return {
            "name": f"projects/{project.number}/services/{service}",
            "config": {"name": service, "title": SERVICE_TITLES[service]},
            "state": "ENABLED" if service in project.services else "DISABLED",
            "parent": f"projects/{project.number}",
        }

    def _usage_get(self, request: Request, match: re.Match[str]) -> Reply:
        project, service = self._usage_context(request, match, USAGE_GET, "serviceusage.services.get")
        with self.lock:
            return Reply(200, self._service_resource(project, service))

    def _usage_enable(self, request: Request, match: re.Match[str]) -> Reply:
        project, service = self._usage_context(request, match, USAGE_ENABLE, "serviceusage.services.enable")
        with self.lock:
            project.services.add(service)
            resource = self._service_resource(project, service)
        operation = {
            "name": "operations/acat." + secrets.token_hex(16),
            "done": True,
            "response": {
                "@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
                "service": resource,
            },
        }
        return Reply(200, operation)

    def _key_count(self, account: ServiceAccount) -> int:
        with self.lock:
            return sum(1 for k in self.keys.values() if k.account == account.email)

    # ----------------------------------------------------------------- Admin SDK Directory
    def _directory_user(self, address: str) -> dict[str, Any]:
        local = address.split("@", 1)[0]
        given = local[:1].upper() + local[1:]
        return {
            "kind": "admin#directory#user",
            "id": numeric_id(address),
            "etag": '"' + hashlib.sha1(address.encode(), usedforsecurity=False).hexdigest() + '"',
            "primaryEmail": address,
            "name": {"givenName": given, "familyName": "Lab", "fullName": f"{given} Lab"},
            "isAdmin": address == self.admin,
            "isDelegatedAdmin": False,
            "lastLoginTime": "1970-01-01T00:00:00.000Z",
            "creationTime": rfc3339(self.started).replace("Z", ".000Z"),
            "agreedToTerms": True,
            "suspended": address in self.suspended_users,
            "archived": False,
            "changePasswordAtNextLogin": False,
            "ipWhitelisted": False,
            "emails": [{"address": address, "primary": True}],
            "customerId": self.customer_id,
            "orgUnitPath": "/",
            "isMailboxSetup": True,
            "isEnrolledIn2Sv": False,
            "isEnforcedIn2Sv": False,
            "includeInGlobalAddressList": True,
        }

    def _directory_list_users(self, request: Request, _match: re.Match[str]) -> Reply:
        issued = self.authorize(request, DIRECTORY_LIST_USERS)
        self._require_admin_subject(issued, legacy_admin_sdk=True)
        domain = request.query.get("domain", "").lower()
        customer = request.query.get("customer", "")
        if not domain and not customer:
            return api_error(400, "Bad Request", reason="badRequest", legacy=True)
        if (domain and domain != self.domain) or (customer and customer not in ("my_customer", self.customer_id)):
            return api_error(403, MSG_NOT_AUTHORIZED_ADMIN, reason="forbidden", legacy=True)
        raw_max = request.query.get("maxResults", "100")
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 500:
            message = f"Invalid value '{raw_max}'. Values must be within the range: [1, 500]"
            return api_error(400, message, reason="invalid", legacy=True)
        page_size = int(raw_max)
        page_token = request.query.get("pageToken", "")
        after = ""
        if page_token:
            try:
                after = jwtutil.b64url_decode(page_token).decode("utf-8")
            except (jwtutil.JWTFormatError, UnicodeDecodeError):
                return api_error(400, "Invalid Input: pageToken", reason="invalid", legacy=True)
        with self.lock:
            ordered = self._users_sorted()
            start = bisect.bisect_right(ordered, after) if after else 0
            page = ordered[start : start + page_size]
            more = start + page_size < len(ordered)
            users = [self._directory_user(address) for address in page]
        body: dict[str, Any] = {
            "kind": "admin#directory#users",
            "etag": '"' + hashlib.sha1(",".join(page).encode(), usedforsecurity=False).hexdigest() + '"',
            "users": users,
        }
        if more and page:
            body["nextPageToken"] = jwtutil.b64url_encode(page[-1].encode("utf-8"))
        return Reply(200, body)

    def _directory_get_user(self, request: Request, match: re.Match[str]) -> Reply:
        issued = self.authorize(request, DIRECTORY_GET_USER)
        self._require_admin_subject(issued, legacy_admin_sdk=True)
        key = urllib.parse.unquote(match.group(1)).lower()
        with self.lock:
            found = key if key in self.users else next((u for u in self.users if numeric_id(u) == key), None)
            resource = self._directory_user(found) if found else None
        if resource is None:
            return api_error(404, "Resource Not Found: userKey", reason="notFound", legacy=True)
        return Reply(200, resource)

    # ----------------------------------------------------------------- Cloud Identity policies
    def _imap_policy(self) -> dict[str, Any]:
        org_unit = "03ph8a2z" + hashlib.sha256(self.domain.encode()).hexdigest()[:8]
        return {
            "name": "policies/"
            + base64.b32encode(hashlib.sha256(b"imap:" + self.domain.encode()).digest()[:15]).decode("ascii").lower(),
            "customer": f"customers/{self.customer_id}",
            "policyQuery": {
                "query": f"entity.org_units.exists(org_unit, org_unit.org_unit_id == orgUnitId('{org_unit}'))",
                "orgUnit": f"orgUnits/{org_unit}",
                "sortOrder": 1,
            },
            "setting": {"type": IMAP_POLICY_TYPE, "value": {"enableImapAccess": self.imap_domain_enabled}},
            "type": "ADMIN",
        }

    def _policies_list(self, request: Request, _match: re.Match[str]) -> Reply:
        issued = self.authorize(request, POLICIES_LIST)
        self._require_service(issued, "cloudidentity.googleapis.com")
        self._require_admin_subject(issued, legacy_admin_sdk=False)
        text = request.query.get("filter", "")
        with self.lock:
            policy = self._imap_policy()
        selected = [policy]
        type_clause = re.search(r"setting\.type\.matches\(\s*(['\"])(.*?)\1\s*\)", text)
        if type_clause:
            try:
                if re.search(type_clause.group(2), IMAP_POLICY_TYPE) is None:
                    selected = []
            except re.error:
                return api_error(400, f"Invalid filter: {text}")
        customer_clause = re.search(r"customer\s*==\s*(['\"])customers/(.*?)\1", text)
        if customer_clause and customer_clause.group(2) not in ("my_customer", self.customer_id):
            return api_error(403, MSG_CALLER_NO_PERMISSION)
        return Reply(200, {"policies": selected} if selected else {})

    def _policies_get(self, request: Request, match: re.Match[str]) -> Reply:
        issued = self.authorize(request, POLICIES_GET)
        self._require_service(issued, "cloudidentity.googleapis.com")
        self._require_admin_subject(issued, legacy_admin_sdk=False)
        with self.lock:
            policy = self._imap_policy()
        if policy["name"] != "policies/" + match.group(1):
            return api_error(404, "Requested entity was not found.")
        return Reply(200, policy)

    # ----------------------------------------------------------------- control API (/_lab/)
    def control(self, request: Request) -> Reply:
        """Test-only knobs: JSON in, JSON out, no auth (the server is loopback-only)."""
        action = request.path[len("/_lab/") :].strip("/")
        readers: dict[str, Callable[[], Any]] = {
            "health": lambda: {"ok": True, "pid": os.getpid()},
            "state": self._control_state,
            "users": lambda: {"users": list(self._locked(self._users_sorted))},
            "stats": self._control_stats,
            "requests": lambda: self._control_requests(request.query),
            "issued": self._control_issued,
        }
        writers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "reset": self._control_reset,
            "users/add": self._control_add_users,
            "users/remove": self._control_remove_users,
            "users/set": self._control_set_users,
            "scopes/authorize": self._control_authorize,
            "scopes/revoke": self._control_revoke,
            "scopes/set": self._control_set_scopes,
            "imap/user": self._control_imap_user,
            "imap/domain": self._control_imap_domain,
            "users/suspend": self._control_suspend_users,
            "service-accounts/add": self._control_add_account,
            "service-accounts/disable": lambda p: self._control_account_disabled(p, True),
            "service-accounts/enable": lambda p: self._control_account_disabled(p, False),
            "keys/register": self._control_register_key,
            "keys/delete": self._control_delete_key,
            "keys/disable": lambda p: self._control_key_disabled(p, True),
            "keys/enable": lambda p: self._control_key_disabled(p, False),
            "projects/add": self._control_add_project,
            "projects/services": self._control_project_services,
            "projects/org-policy": self._control_org_policy,
            "iam/deny": self._control_deny,
            "clock": self._control_clock,
            "faults": self._control_fault,
            "faults/reset": self._control_reset_faults,
            "latency": self._control_latency,
            "latency/reset": self._control_reset_latency,
            "stats/reset": self._control_reset_stats,
            "tokens/expire": self._control_expire_tokens,
        }
        try:
            if request.method == "GET" and action in readers:
                return Reply(200, readers[action](), style="lab")
            if request.method == "POST" and action in writers:
                payload = json.loads(request.body) if request.body.strip() else {}
                if not isinstance(payload, dict):
                    raise TypeError("the body must be a JSON object")
                return Reply(200, writers[action](payload), style="lab")
        except (ValueError, TypeError, KeyError) as exc:
            return Reply(400, {"error": f"{type(exc).__name__}: {exc}"}, style="lab")
        return Reply(404, {"error": f"no control action {request.method} /_lab/{action}"}, style="lab")

    def _locked(self, func: Callable[[], Any]) -> Any:
        with self.lock:
            return func()

    def _control_state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "domain": self.domain,
                "admin": self.admin,
                "customer_id": self.customer_id,
                "user_count": len(self.users),
                "token_uri": self.token_uri,
                "service_accounts": [
                    {
                        "email": a.email,
                        "client_id": a.client_id,
                        "project_id": a.project_id,
                        "disabled": a.disabled,
                        "keys": sorted(k.key_id for k in self.keys.values() if k.account == a.email),
                    }
                    for a in self.accounts.values()
                ],
                "projects": {
                    p.project_id: {
                        "number": p.number,
                        "services": sorted(p.services),
                        "admins": sorted(p.admins),
                        "no_key_creation": p.no_key_creation,
                    }
                    for p in self.projects.values()
                },
                "denied_permissions": sorted(self.denied_permissions),
                "disabled_keys": sorted(k.key_id for k in self.keys.values() if k.disabled),
                "authorized_scopes": {cid: sorted(s) for cid, s in self.authorized.items()},
                "imap": {
                    "domain_enabled": self.imap_domain_enabled,
                    "disabled_users": sorted(self.imap_disabled_users),
                },
                "suspended_users": sorted(self.suspended_users),
                "clock": {"tolerance_seconds": self.clock_tolerance, "offset_seconds": self.clock_offset},
                "faults": [
                    {"path_prefix": f.prefix, "status": f.status, "remaining": f.remaining}
                    | ({"retry_after": f.retry_after} if f.retry_after is not None else {})
                    for f in self.faults
                ],
                "latency": dict(self.latency),
                "tokens_issued": len(self.tokens),
            }

    def _control_stats(self) -> dict[str, Any]:
        with self.lock:
            endpoints = {name: dict(counts) for name, counts in self.stats.items()}
            return {
                "endpoints": endpoints,
                "total": sum(c["total"] for c in endpoints.values()),
                "faults_served": self.faults_served,
            }

    def _control_requests(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The request log, oldest first, optionally only paths under ``path_prefix``."""
        prefix = query.get("path_prefix", "")
        with self.lock:
            entries = [dict(entry) for entry in self.request_log if entry["path"].startswith(prefix)]
        return {"requests": entries, "capacity": REQUEST_LOG_SIZE}

    def _control_issued(self) -> dict[str, Any]:
        """Every access token minted since the start or the last reset, with the assertion it was minted for."""
        with self.lock:
            entries = [dict(entry) for entry in self.issued_log]
            dropped = self.issued_dropped
        return {"issued": entries, "capacity": ISSUED_LOG_SIZE, "dropped": dropped}

    def _control_reset(self, _payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._load(self._config)
            self._set_audiences()
        return {"ok": True}

    @staticmethod
    def _addresses(payload: dict[str, Any]) -> list[str]:
        users = payload["users"]
        if isinstance(users, str) or not isinstance(users, list):
            raise TypeError("users must be a list of addresses")
        return [str(u).strip().lower() for u in users if str(u).strip()]

    def _control_add_users(self, payload: dict[str, Any]) -> dict[str, Any]:
        addresses = self._addresses(payload)
        with self.lock:
            self.users.update(addresses)
            self._users_changed()
            return {"user_count": len(self.users)}

    def _control_remove_users(self, payload: dict[str, Any]) -> dict[str, Any]:
        addresses = self._addresses(payload)
        with self.lock:
            self.users.difference_update(addresses)
            self._users_changed()
            return {"user_count": len(self.users)}

    def _control_set_users(self, payload: dict[str, Any]) -> dict[str, Any]:
        addresses = set(self._addresses(payload))
        with self.lock:
            if payload.get("keep_admin", True):
                addresses.add(self.admin)
            self.users = addresses
            self._users_changed()
            return {"user_count": len(self.users)}

    def _control_authorize(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            scopes = self.authorized.setdefault(str(payload["client_id"]), set())
            scopes.update(payload["scopes"])
            return {"scopes": sorted(scopes)}

    def _control_revoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            scopes = self.authorized.setdefault(str(payload["client_id"]), set())
            if payload.get("scopes") is None:
                scopes.clear()
            else:
                scopes.difference_update(payload["scopes"])
            return {"scopes": sorted(scopes)}

    def _control_set_scopes(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.authorized[str(payload["client_id"])] = set(payload["scopes"])
            return {"scopes": sorted(self.authorized[str(payload["client_id"])])}

    def _control_imap_user(self, payload: dict[str, Any]) -> dict[str, Any]:
        user = str(payload["user"]).lower()
        with self.lock:
            if payload["enabled"]:
                self.imap_disabled_users.discard(user)
            else:
                self.imap_disabled_users.add(user)
            return {"disabled_users": sorted(self.imap_disabled_users)}

    def _control_suspend_users(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Suspend (``suspended`` true, the default) or restore users, as the Admin console's Suspend user does."""
        addresses = self._addresses(payload)
        with self.lock:
            if payload.get("suspended", True):
                self.suspended_users.update(addresses)
            else:
                self.suspended_users.difference_update(addresses)
            return {"suspended_users": sorted(self.suspended_users)}

    def _control_imap_domain(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.imap_domain_enabled = bool(payload["enabled"])
            return {"domain_enabled": self.imap_domain_enabled}

    def _control_add_account(self, payload: dict[str, Any]) -> dict[str, Any]:
        account = ServiceAccount(
            str(payload["email"]).lower(),
            str(payload["client_id"]),
            str(payload["project_id"]),
            bool(payload.get("disabled")),
        )
        with self.lock:
            self.accounts[account.email] = account
            self.accounts_by_id[account.client_id] = account
            # A project the lab learns of this way behaves like the configured ones: every API enabled.
            self._project(account.project_id, set(SERVICE_TITLES))
        return {"email": account.email}

    def _control_account_disabled(self, payload: dict[str, Any], disabled: bool) -> dict[str, Any]:
        with self.lock:
            account = self.accounts[str(payload["email"]).lower()]
            account.disabled = disabled
            return {"email": account.email, "disabled": account.disabled}

    def _control_register_key(self, payload: dict[str, Any]) -> dict[str, Any]:
        email_address = str(payload["email"]).lower()
        with self.lock:
            if email_address not in self.accounts:
                raise KeyError(f"unknown service account {email_address}")
            key = self._register_key(
                email_address, str(payload["private_key_id"]), str(payload["public_key_pem"]), self.now()
            )
        return {"private_key_id": key.key_id}

    def _control_key_disabled(self, payload: dict[str, Any], disabled: bool) -> dict[str, Any]:
        with self.lock:
            key = self.keys[str(payload["private_key_id"])]
            key.disabled = disabled
        return {"private_key_id": key.key_id, "disabled": disabled}

    def _control_add_project(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A project (empty unless ``services`` say otherwise); ``admins`` may administer it from elsewhere."""
        project_id = str(payload["project_id"])
        with self.lock:
            project = self._project(project_id)
            project.services.update(str(s) for s in payload.get("services", []))
            project.admins.update(str(a).lower() for a in payload.get("admins", []))
            return {"project_id": project_id, "number": project.number, "services": sorted(project.services)}

    def _control_project_services(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Enable or disable APIs of a project: ``{"project_id", "services": [...], "enabled": bool}``."""
        with self.lock:
            project = self.projects[str(payload["project_id"])]
            names = {str(s) for s in payload["services"]}
            if payload.get("enabled", True):
                project.services |= names
            else:
                project.services -= names
            return {"services": sorted(project.services)}

    def _control_org_policy(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``{"project_id", "disable_key_creation": bool}``: iam.disableServiceAccountKeyCreation for the project."""
        with self.lock:
            project = self.projects[str(payload["project_id"])]
            project.no_key_creation = bool(payload["disable_key_creation"])
            return {"no_key_creation": project.no_key_creation}

    def _control_deny(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``{"permissions": [...]}``: IAM permissions nobody but the super admin holds (replaces the list)."""
        with self.lock:
            self.denied_permissions = {str(p) for p in payload.get("permissions", [])}
            return {"denied_permissions": sorted(self.denied_permissions)}

    def _control_delete_key(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            removed = self.keys.pop(str(payload["private_key_id"]), None)
        return {"deleted": removed is not None}

    def _control_clock(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if payload.get("tolerance_seconds") is not None:
                self.clock_tolerance = float(payload["tolerance_seconds"])
            if payload.get("offset_seconds") is not None:
                self.clock_offset = float(payload["offset_seconds"])
            return {"tolerance_seconds": self.clock_tolerance, "offset_seconds": self.clock_offset}

    def _control_fault(self, payload: dict[str, Any]) -> dict[str, Any]:
        retry_after = payload.get("retry_after")
        if retry_after is not None:
            # Seconds (a number) or an HTTP date (text), as the header allows; sent as given.
            retry_after = str(int(retry_after)) if _is_number(retry_after) else str(retry_after)
            if not retry_after or "\n" in retry_after or "\r" in retry_after or retry_after.startswith("-"):
                raise ValueError("retry_after must be seconds >= 0 or an HTTP date")
        fault = Fault(
            str(payload["path_prefix"]),
            int(payload["status"]),
            int(payload.get("count", 1)),
            payload.get("body"),
            retry_after,
        )
        if not 100 <= fault.status <= 599 or fault.remaining < 1 or not fault.prefix.startswith("/"):
            raise ValueError("need a /path_prefix, a status 100-599 and count >= 1")
        with self.lock:
            self.faults.append(fault)
            return {"faults": len(self.faults)}

    def _control_reset_faults(self, _payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.faults.clear()
        return {"faults": 0}

    def _control_latency(self, payload: dict[str, Any]) -> dict[str, Any]:
        prefix, ms = str(payload["path_prefix"]), float(payload["ms"])
        with self.lock:
            if ms > 0:
                self.latency[prefix] = ms
            else:
                self.latency.pop(prefix, None)
            return {"latency": dict(self.latency)}

    def _control_reset_latency(self, _payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.latency.clear()
        return {"latency": {}}

    def _control_reset_stats(self, _payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.stats.clear()
            self.faults_served = 0
            self.request_log.clear()
        return {"ok": True}

    def _control_expire_tokens(self, payload: dict[str, Any]) -> dict[str, Any]:
        subject = payload.get("subject")
        subject = str(subject).lower() if subject else None
        with self.lock:
            doomed = [t for t, v in self.tokens.items() if subject is None or subject in (v.subject, v.account)]
            for token in doomed:
                del self.tokens[token]
        return {"expired": len(doomed)}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _form_or_json(request: Request) -> dict[str, str]:
    """Token/tokeninfo parameters: form-encoded as google-auth sends them, or JSON."""
    if "json" in request.content_type.lower():
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))


def _json_payload(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise ReplyError(
            api_error(400, "Invalid JSON payload received. Unexpected token.", reason="parseError")
        ) from None
    if not isinstance(data, dict):
        raise ReplyError(api_error(400, "Invalid JSON payload received. Expected an object.", reason="parseError"))
    return data


class GoogleHandler(http.server.BaseHTTPRequestHandler):
    """HTTP plumbing only: read the request, hand it to :class:`GoogleState`, write the reply."""

    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""
    # Buffered writes + TCP_NODELAY: without them each keep-alive response stalls ~40 ms (Nagle + delayed ACK).
    wbufsize = -1
    disable_nagle_algorithm = True
    timeout = 300
    server: LabHTTPServer
    _server_header = "ESF"

    def version_string(self) -> str:
        return self._server_header

    def date_time_string(self, timestamp: float | None = None) -> str:
        """RFC 7231 Date from the lab's (possibly offset) clock."""
        return email.utils.formatdate(self.server.state.now() if timestamp is None else timestamp, usegmt=True)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged by _handle (debug level, no query string)."""

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("http: %s", _REDACT.sub(r"\1<redacted>", format % args))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        started = time.perf_counter()
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(method, api_error(400, "Bad Request", reason="badRequest"))
            return
        split = urllib.parse.urlsplit(self.path)
        request = Request(
            method,
            split.path,
            dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            self.headers.get("Authorization"),
            self.headers.get("Content-Type", ""),
            body,
        )
        state = self.server.state
        if split.path.startswith("/_lab/"):
            if _is_loopback(self.client_address[0]):
                reply = state.control(request)
            else:
                reply = Reply(403, {"error": "the control API is loopback-only"}, style="lab")
        else:
            reply = state.handle(request)
        self._send(method, reply)
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("%s %s -> %d (%.1f ms)", method, split.path, reply.status, (time.perf_counter() - started) * 1000)

    def _send(self, method: str, reply: Reply) -> None:
        if isinstance(reply.body, bytes):
            data = reply.body
        else:
            data = (json.dumps(reply.body, indent=2) + "\n").encode("utf-8")
        self._server_header = _STYLE_SERVER.get(reply.style, "ESF")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in _STYLE_HEADERS.get(reply.style, {}).items():
            self.send_header(name, value)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class LabHTTPServer(http.server.ThreadingHTTPServer):
    """Threaded HTTPS server; TLS is negotiated in each connection's own thread."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, state: GoogleState, ssl_context: ssl.SSLContext) -> None:
        self.state = state
        self.ssl_context = ssl_context
        super().__init__((state.host, state.port), GoogleHandler)
        host, port = self.server_address[:2]
        state.set_endpoint(str(host), int(port))

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (getfqdn), which can stall without DNS."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            LOG.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            GoogleHandler(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("connection from %s ended with an error", client_address[0], exc_info=True)


def make_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """Server TLS context (TLS 1.2+) from the lab CA-issued certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def make_server(config: Mapping[str, Any]) -> LabHTTPServer:
    """Build (and bind) the server from a config mapping; call ``serve_forever`` to run it."""
    state = GoogleState(config)
    return LabHTTPServer(state, make_ssl_context(str(config["certfile"]), str(config["keyfile"])))


def load_config(path: str) -> dict[str, Any]:
    """Read the contract's config.json."""
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config must be a JSON object")
    return config


__all__ = [
    "ALERT_IMAP_DOMAIN_DISABLED",
    "ALERT_IMAP_USER_DISABLED",
    "GoogleState",
    "LabHTTPServer",
    "google_key_certificate",
    "lab_imap_fields",
    "load_config",
    "make_server",
    "service_account_key_file",
    "service_account_pkcs12",
]
