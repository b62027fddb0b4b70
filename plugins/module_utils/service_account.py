# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse and validate Google service-account keys (JSON, optional P12) without ever exposing them.

Pure logic, no AnsibleModule: the info module, the action plugins (which validate on the
controller before anything reaches MSL) and the unit tests all call :func:`inspect_key`.

Every problem is raised as :class:`KeyValidationError` with a machine-readable ``reason``, the
offending ``field`` and a message that says what is wrong and how to fix it. Messages name fields
and identities (client ID, e-mail, fingerprints), never key material.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import hashlib
import json
import os
import re
import time
import traceback

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, Optional, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils import key_format
from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from, urlparse

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()  # type: Optional[str]
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

DEFAULT_P12_PASSWORD = "notasecret"  # noqa: S105 - Google's documented, fixed P12 password
# Google's P12 files (docs/key-lifecycle.md, "P12 files"): the key bag's friendly name, and a certificate whose
# subject and issuer are CN=<the account's numeric unique ID, the client ID>, valid for 3650 days from creation.
P12_FRIENDLY_NAME = b"privatekey"
P12_CERTIFICATE_DAYS = 3650
P12_KDF_ROUNDS = 50000
_EPOCH = datetime.datetime(1970, 1, 1)
# What inspect_key says about a P12 twin (ServiceAccountKey.p12_same_account).
P12_SAME_KEY_PAIR = "same_key_pair"
P12_ACCOUNT_UNPROVEN = "unproven"
P12_ACCOUNT_PROVEN = "proven"
DEFAULT_UNIVERSE_DOMAIN = "googleapis.com"
MIN_KEY_SIZE = 2048
REQUIRED_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "client_id", "token_uri")
CREATE_KEY_HINT = (
    "Create a new JSON key in the Google Cloud console (IAM & Admin > Service Accounts > the account > "
    "Keys > Add key > Create new key > JSON) and use the downloaded file unchanged."
)

# Machine-readable reasons, one vocabulary for the info module, the action plugins and the docs.
REASONS = (
    "read_error",
    "not_json",
    "wrong_type",
    "missing_field",
    "bad_field",
    "bad_private_key",
    "unsupported_key_type",
    "weak_private_key",
    "p12_invalid",
    "p12_password",
    "p12_mismatch",
    "missing_library",
)

_PRIVATE_KEY_ID_RE = re.compile(r"^[0-9a-f]{40}$")
_CLIENT_ID_RE = re.compile(r"^[0-9]{6,32}$")
_EMAIL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*[a-z0-9]$")


class KeyValidationError(Exception):
    """A key file is unusable; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason, msg, field=None):  # type: (str, str, Optional[str]) -> None
        super(KeyValidationError, self).__init__(msg)
        self.reason = reason
        self.msg = msg
        self.field = field

    def as_result(self):  # type: () -> Dict[str, Any]
        """Fields for ``fail_json`` besides ``msg``."""
        return {"reason": self.reason, "field": self.field}


class ServiceAccountKey:
    """A validated key. Holds the loaded private key object but never renders it."""

    def __init__(self, info, private_key):  # type: (Dict[str, Any], Any) -> None
        self._info = info
        self.private_key = private_key
        self.client_id = info["client_id"]  # type: str
        self.client_email = info["client_email"]  # type: str
        self.project_id = info["project_id"]  # type: str
        self.private_key_id = info["private_key_id"]  # type: str
        self.token_uri = info["token_uri"]  # type: str
        self.universe_domain = info["universe_domain"]  # type: str
        self.key_size = private_key.key_size  # type: int
        self.fingerprint_sha256 = public_key_fingerprint_sha256(private_key.public_key())
        self.p12_matches = None  # type: Optional[bool]
        # With a P12 twin: its public-key fingerprint, and what is known of its account - the same key pair, or
        # another key of this account by its certificate's name only (unproven) or also by Google's key list (proven).
        self.p12_fingerprint_sha256 = None  # type: Optional[str]
        self.p12_same_account = None  # type: Optional[str]

    def as_info(self):  # type: () -> Dict[str, Any]
        """The public facts about the key, safe to return from a module."""
        return {
            "client_id": self.client_id,
            "client_email": self.client_email,
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "token_uri": self.token_uri,
            "universe_domain": self.universe_domain,
            "public_key_fingerprint_sha256": self.fingerprint_sha256,
            "key_size": self.key_size,
            "p12_matches": self.p12_matches,
            "p12_fingerprint_sha256": self.p12_fingerprint_sha256,
            "p12_same_account": self.p12_same_account,
        }

    def __repr__(self):  # type: () -> str
        # Deliberately no key material, even in tracebacks and debug output.
        return "ServiceAccountKey(client_email=%r, private_key_id=%r)" % (self.client_email, self.private_key_id)


def require_cryptography():  # type: () -> None
    if not HAS_CRYPTOGRAPHY:
        raise KeyValidationError(
            "missing_library",
            "The Python library 'cryptography' is required to validate service-account keys on this node. "
            "Install it (pip install cryptography) for the interpreter Ansible uses here.",
        )


# One comparison rule for fingerprints, on the controller and on MSL (where 'cryptography' is missing).
normalize_fingerprint = key_format.normalize_fingerprint


def format_fingerprint(digest):  # type: (bytes) -> str
    return ":".join("%02x" % byte for byte in bytearray(digest))


def public_key_fingerprint_sha256(public_key):  # type: (Any) -> str
    """SHA-256 over the DER SubjectPublicKeyInfo, hex pairs joined by colons."""
    der = public_key.public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return format_fingerprint(hashlib.sha256(der).digest())


def certificate_fingerprint_sha256(pem):  # type: (bytes) -> str
    """:func:`public_key_fingerprint_sha256` of the public key in a PEM certificate (Google's key certificates)."""
    require_cryptography()
    return public_key_fingerprint_sha256(x509.load_pem_x509_certificate(pem).public_key())


def _to_text(content, what):  # type: (Union[str, bytes], str) -> str
    if isinstance(content, bytes):
        try:
            return content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise_from(
                KeyValidationError(
                    "not_json",
                    "The %s is not UTF-8 text, so it is not a JSON key file (a P12 file given as the JSON key?). %s"
                    % (what, CREATE_KEY_HINT),
                ),
                None,
            )
    if content.startswith("\ufeff"):
        return content[1:]
    return content


def parse_json_key(content):  # type: (Union[str, bytes]) -> Dict[str, Any]
    """Decode the key file and check its structure (not yet the private key)."""
    text = _to_text(content, "service-account key")
    if not text.strip():
        raise KeyValidationError("not_json", "The service-account key is empty. " + CREATE_KEY_HINT)
    try:
        data = json.loads(text)
    except ValueError as exc:
        # A key file is one JSON object: if it opens but never closes, it was cut short.
        stripped = text.strip()
        truncated = stripped.startswith("{") and not stripped.endswith("}")
        detail = "line %s column %s" % (getattr(exc, "lineno", "?"), getattr(exc, "colno", "?"))
        if truncated:
            msg = (
                "The service-account key is not complete JSON: it ends early (at %s), so the file was "
                "truncated while copying or downloading. Copy the original file again. " % detail
            )
        else:
            msg = "The service-account key is not valid JSON (error at %s). " % detail
        raise_from(KeyValidationError("not_json", msg + CREATE_KEY_HINT), None)
    return _validate_structure(data)


def _validate_structure(data):  # type: (Any) -> Dict[str, Any]
    if not isinstance(data, dict):
        raise KeyValidationError(
            "not_json",
            "The service-account key must be a JSON object, got a JSON %s. %s" % (_json_kind(data), CREATE_KEY_HINT),
        )
    _check_type(data)
    for field in REQUIRED_FIELDS:
        value = data.get(field)
        if value is None or (isinstance(value, string_types) and not value.strip()):
            raise KeyValidationError(
                "missing_field",
                "The service-account key has no '%s' field. The file is incomplete or was edited. %s"
                % (field, CREATE_KEY_HINT),
                field,
            )
    return _check_fields(data)


def _json_kind(value):  # type: (Any) -> str
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def _check_type(data):  # type: (Dict[str, Any]) -> None
    key_type = data.get("type")
    if key_type == "service_account":
        return
    if key_type is None:
        if "installed" in data or "web" in data:
            raise KeyValidationError(
                "wrong_type",
                "This is an OAuth client secret file (it has an '%s' section), not a service-account key. "
                "NuPoint needs a service account with domain-wide delegation. %s"
                % ("installed" if "installed" in data else "web", CREATE_KEY_HINT),
                "type",
            )
        raise KeyValidationError(
            "missing_field", "The key has no 'type' field; expected \"service_account\". " + CREATE_KEY_HINT, "type"
        )
    hints = {
        "authorized_user": "It holds a user's credentials (from 'gcloud auth application-default login').",
        "external_account": "It is a workload identity federation configuration, which has no private key.",
        "impersonated_service_account": "It is an impersonation configuration, which has no private key.",
    }
    raise KeyValidationError(
        "wrong_type",
        "The key's 'type' is %r, expected \"service_account\". %s %s"
        % (key_type, hints.get(str(key_type), "It is not a service-account key."), CREATE_KEY_HINT),
        "type",
    )


def _check_fields(data):  # type: (Dict[str, Any]) -> Dict[str, Any]
    info = {}  # type: Dict[str, Any]
    for field in REQUIRED_FIELDS:
        value = data[field]
        if field == "client_id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, string_types):
            raise KeyValidationError(
                "bad_field", "The key's '%s' must be a string, got a JSON %s." % (field, _json_kind(value)), field
            )
        info[field] = value.strip() if field != "private_key" else value
    universe_domain = data.get("universe_domain") or DEFAULT_UNIVERSE_DOMAIN
    if not isinstance(universe_domain, string_types):
        raise KeyValidationError("bad_field", "The key's 'universe_domain' must be a string.", "universe_domain")
    info["universe_domain"] = universe_domain.strip().lower()

    if not _CLIENT_ID_RE.match(info["client_id"]):
        raise KeyValidationError(
            "bad_field",
            "The key's 'client_id' %r is not a numeric Google client ID (the service account's "
            "'Unique ID', 21 digits). Check that the file was not edited." % info["client_id"],
            "client_id",
        )
    if not _PRIVATE_KEY_ID_RE.match(info["private_key_id"]):
        raise KeyValidationError(
            "bad_field",
            "The key's 'private_key_id' is not 40 lowercase hexadecimal characters as Google issues it. "
            "Check that the file was not edited. " + CREATE_KEY_HINT,
            "private_key_id",
        )
    email = info["client_email"].lower()
    allowed_suffixes = (".iam.gserviceaccount.com", "." + info["universe_domain"])
    if not _EMAIL_RE.match(email) or not email.endswith(allowed_suffixes):
        raise KeyValidationError(
            "bad_field",
            "The key's 'client_email' %r is not a service-account address (NAME@PROJECT.iam.gserviceaccount.com). "
            "A user's or group's address cannot be used here." % info["client_email"],
            "client_email",
        )
    info["client_email"] = email
    _check_token_uri(info["token_uri"])
    return info


def _is_loopback(host):  # type: (str) -> bool
    if host == "localhost":
        return True
    try:
        import ipaddress  # novermin (Python 3.3+; the fallback below serves 2.7)
    except ImportError:  # pragma: no cover (Python 2.7 on MSL: only the literal loopback forms)
        return host == "::1" or host.startswith("127.")
    try:
        return ipaddress.ip_address("%s" % host).is_loopback
    except ValueError:
        return False


def token_uri_allowed(token_uri):  # type: (str) -> bool
    """An https:// URL, or plain http to a loopback test server: where a signed JWT assertion may be sent.

    One rule for the key's ``token_uri`` field and the modules' ``token_uri`` option.
    """
    parsed = urlparse(token_uri)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    return bool(parsed.scheme == "http" and parsed.hostname and _is_loopback(parsed.hostname))


def _check_token_uri(token_uri):  # type: (str) -> None
    if token_uri_allowed(token_uri):
        return
    raise KeyValidationError(
        "bad_field",
        "The key's 'token_uri' %r must be an https:// URL (Google's is https://oauth2.googleapis.com/token); "
        "plain http is accepted only for a loopback test server." % token_uri,
        "token_uri",
    )


def load_private_key(pem):  # type: (str) -> Any
    """Load the JSON key's PEM private key; must be RSA of at least 2048 bits."""
    require_cryptography()
    if "-----BEGIN" not in pem:
        raise KeyValidationError(
            "bad_private_key",
            "The key's 'private_key' is not a PEM private key (no '-----BEGIN' line). " + CREATE_KEY_HINT,
            "private_key",
        )
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except TypeError:
        raise_from(
            KeyValidationError(
                "bad_private_key",
                "The key's 'private_key' is encrypted; Google's JSON keys hold an unencrypted PKCS#8 key. "
                + CREATE_KEY_HINT,
                "private_key",
            ),
            None,
        )
    except (ValueError, binascii.Error):
        raise_from(
            KeyValidationError(
                "bad_private_key",
                "The key's 'private_key' cannot be loaded: the PEM block is damaged or incomplete "
                "(lost line breaks or characters while copying?). " + CREATE_KEY_HINT,
                "private_key",
            ),
            None,
        )
    except Exception:  # noqa: BLE001 - cryptography raises backend-specific errors for odd keys
        raise_from(
            KeyValidationError(
                "bad_private_key",
                "The key's 'private_key' cannot be loaded as a private key. " + CREATE_KEY_HINT,
                "private_key",
            ),
            None,
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyValidationError(
            "unsupported_key_type",
            "The key's 'private_key' is a %s key; Google service accounts sign RS256 JWTs with RSA keys. %s"
            % (_key_kind(key), CREATE_KEY_HINT),
            "private_key",
        )
    if key.key_size < MIN_KEY_SIZE:
        raise KeyValidationError(
            "weak_private_key",
            "The key's 'private_key' is a %d-bit RSA key; at least %d bits are required (Google issues 2048-bit "
            "keys). %s" % (key.key_size, MIN_KEY_SIZE, CREATE_KEY_HINT),
            "private_key",
        )
    return key


def _key_kind(key):  # type: (Any) -> str
    name = type(key).__name__.lower()
    for marker, label in (("ec", "elliptic-curve (EC)"), ("ed25519", "Ed25519"), ("ed448", "Ed448"), ("dsa", "DSA")):
        if marker in name:
            return label
    return "non-RSA"


def decode_p12_content(value):  # type: (Union[str, bytes]) -> bytes
    """P12 files are binary: module options carry them base64-encoded."""
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise_from(
            KeyValidationError(
                "p12_invalid",
                "The P12 content is not base64; pass the file with p12_path or b64encode it.",
                "p12_content",
            ),
            None,
        )


def load_p12_private_key(p12_bytes, password):  # type: (bytes, Optional[str]) -> Any
    return load_p12(p12_bytes, password)[0]


def load_p12(p12_bytes, password):  # type: (bytes, Optional[str]) -> Tuple[Any, Any]
    """The P12 file's RSA private key and its certificate (None when it has none)."""
    require_cryptography()
    # A PKCS#12 file is a DER SEQUENCE; anything else cannot be one, whatever the password.
    if not p12_bytes or p12_bytes[:1] != b"\x30":
        raise KeyValidationError(
            "p12_invalid",
            "The P12 file is not a PKCS#12 key file. Download the P12 key of the same service-account key "
            "(Keys > Add key > Create new key > P12), or leave the P12 option out.",
            "p12",
        )
    try:
        key, cert, _extra = pkcs12.load_key_and_certificates(
            p12_bytes, password.encode("utf-8") if password is not None else None
        )
    except ValueError:
        raise_from(
            KeyValidationError(
                "p12_password",
                "The P12 file cannot be opened with the given password. Google issues every P12 key with the same "
                "fixed password (the module's default); leave p12_password unset unless the file was re-exported. "
                "If the password is right, the file is damaged: download it again.",
                "p12_password",
            ),
            None,
        )
    if key is None:
        raise KeyValidationError("p12_invalid", "The P12 file holds no private key.", "p12")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyValidationError("p12_invalid", "The P12 file holds a %s key, not RSA." % _key_kind(key), "p12")
    return key, cert


def certificate_client_id(cert):  # type: (Any) -> Optional[str]
    """The client ID a Google P12 certificate names (its subject's CN, all digits), or None."""
    if cert is None:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = str(names[0].value) if names else ""
    return value if value.isdigit() else None


def p12_pair_warning(info):  # type: (Dict[str, Any]) -> Optional[str]
    """What cannot be proven about a P12 twin that holds another key pair (``as_info()`` facts), or None."""
    if info.get("p12_same_account") != P12_ACCOUNT_UNPROVEN:
        return None
    return (
        "The P12 file holds another key pair than the JSON key %s (P12 fingerprint %s): Google makes a new key for "
        "every download, so a JSON and a P12 file downloaded separately always differ. Its certificate names client "
        "ID %s, this account's, but a certificate's name is no proof: this task did not check at Google that both are "
        "live keys of %s. service_account_keys_info with p12_pair proves it (an admin credential; the oauth_credentials "
        "role does when one is set), or derive the P12 from the JSON key (service_account_key p12_dest) so that both "
        "files carry one key pair."
        % (
            info.get("private_key_id"),
            info.get("p12_fingerprint_sha256"),
            info.get("client_id"),
            info.get("client_email"),
        )
    )


def derive_p12(key, password=DEFAULT_P12_PASSWORD, created_at=None):  # type: (ServiceAccountKey, str, Optional[float]) -> bytes
    """A P12 file of ``key``'s own key pair, laid out as Google's (the controller; needs cryptography).

    The certificate is Google's (self-signed, CN = the client ID, 3650 days, clientAuth) but signed with SHA-256:
    cryptography no longer signs with SHA-1, and nothing reads the signature of a key file's certificate.
    """
    require_cryptography()
    # Naive UTC (cryptography reads it so), without datetime.timezone, which Python 2.7 lacks.
    start = _EPOCH + datetime.timedelta(seconds=int(time.time() if created_at is None else created_at))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "%s" % key.client_id)])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(int(binascii.hexlify(os.urandom(8)), 16) >> 1 | 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=P12_CERTIFICATE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
        .sign(key.private_key, hashes.SHA256())
    )
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(P12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - Google's (legacy) PKCS#12 MAC, which old NuPoint reads
        .build(password.encode("utf-8"))
    )
    return pkcs12.serialize_key_and_certificates(P12_FRIENDLY_NAME, key.private_key, cert, None, encryption)


def inspect_key(content, p12_content=None, p12_password=DEFAULT_P12_PASSWORD):  # type: (Union[str, bytes], Optional[bytes], Optional[str]) -> ServiceAccountKey
    """Validate a JSON key (and optionally its P12 twin); return the validated key."""
    info = parse_json_key(content)
    key = ServiceAccountKey(info, load_private_key(info["private_key"]))
    if p12_content is not None:
        p12_key, p12_cert = load_p12(p12_content, p12_password)
        p12_fingerprint = public_key_fingerprint_sha256(p12_key.public_key())
        key.p12_fingerprint_sha256 = p12_fingerprint
        key.p12_matches = p12_fingerprint == key.fingerprint_sha256
        if key.p12_matches:
            key.p12_same_account = P12_SAME_KEY_PAIR
            return key
        # Another key pair. Google names a P12's certificate after the account's client ID: accepted as a key of the
        # same account on that claim, which the caller reports as unproven until Google's key list proves it.
        named = certificate_client_id(p12_cert)
        if named != key.client_id:
            raise KeyValidationError(
                "p12_mismatch",
                "The P12 file holds another key pair than the JSON key %s (JSON fingerprint %s; P12 fingerprint %s), "
                "and its certificate %s, not this account's client ID %s: it is a key of another service account, or "
                "not a P12 file Google issued. Download a P12 key of %s, or derive one from the JSON key "
                "(service_account_key p12_dest)."
                % (
                    key.private_key_id,
                    key.fingerprint_sha256,
                    p12_fingerprint,
                    "names client ID %s" % named if named else "names no client ID",
                    key.client_id,
                    key.client_email,
                ),
                "p12",
            )
        key.p12_same_account = P12_ACCOUNT_UNPROVEN
    return key
