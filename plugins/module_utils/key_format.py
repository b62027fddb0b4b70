# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a service-account key says about itself, read with the standard library only.

MSL has no 'cryptography', yet the MSL side must name the key it holds (client ID, e-mail, key ID)
and check that its key file and its db record describe the same key. This reads the JSON key and
derives the public-key fingerprint from the PEM private key with a minimal DER (PKCS#8 / PKCS#1)
parser: the same SHA-256 over the DER SubjectPublicKeyInfo that ``service_account`` computes with
'cryptography' on the controller. It does not validate a key; the controller has done that.

Runs on MSL: standard library only, Python 3.6 compatible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import json
import re

from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import int_from_bytes, int_to_bytes, raise_from

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Dict, List, Optional, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

_RSA_ALGORITHM_ID = bytes(
    bytearray([0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00])
)
_RSA_OID = _RSA_ALGORITHM_ID[2:13]


class CredentialKeyError(Exception):
    """The service-account key cannot be read with the standard library; ``msg`` says why."""

    def __init__(self, msg):  # type: (str) -> None
        super(CredentialKeyError, self).__init__(msg)
        self.msg = msg


def _der_element(data, offset):  # type: (bytes, int) -> Tuple[int, int, int]
    """(tag, content_start, content_end) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        start, length = offset + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or offset + 2 + count > len(data):
            raise ValueError("bad DER length")
        start, length = offset + 2 + count, int_from_bytes(data[offset + 2 : offset + 2 + count])
    if start + length > len(data):
        raise ValueError("truncated DER")
    return tag, start, start + length


def _der_children(data, start, end):  # type: (bytes, int, int) -> List[Tuple[int, int, int, int]]
    """[(tag, element_start, content_start, content_end)] of a constructed element's content."""
    children = []
    offset = start
    while offset < end:
        tag, content_start, content_end = _der_element(data, offset)
        children.append((tag, offset, content_start, content_end))
        offset = content_end
    return children


def _der_tlv(tag, content):  # type: (int, bytes) -> bytes
    length = len(content)
    if length < 0x80:
        header = bytes(bytearray([tag, length]))
    else:
        size = (length.bit_length() + 7) // 8
        header = bytes(bytearray([tag, 0x80 | size])) + int_to_bytes(length, size)
    return header + content


def pem_public_key_fingerprint_sha256(pem):  # type: (str) -> str
    """SHA-256 of the DER SubjectPublicKeyInfo of an RSA private key (PKCS#8 or PKCS#1 PEM), stdlib only.

    The same value as ``service_account.public_key_fingerprint_sha256`` computes with 'cryptography' on the
    controller, so MSL can check that its key file and its db record describe the same key.
    """
    match = re.search(r"-----BEGIN (RSA )?PRIVATE KEY-----(.*?)-----END (RSA )?PRIVATE KEY-----", pem, re.DOTALL)
    if not match:
        raise CredentialKeyError("The key's private_key is not an unencrypted PEM RSA private key.")
    try:
        der = base64.b64decode("".join(match.group(2).split()), validate=True)
        tag, start, end = _der_element(der, 0)
        top = _der_children(der, start, end)
        if match.group(1):  # PKCS#1 RSAPrivateKey: version, n, e, ...
            rsa_fields = top
            rsa_der = der
        else:  # PKCS#8: version, AlgorithmIdentifier, OCTET STRING(RSAPrivateKey)
            if len(top) < 3 or top[1][0] != 0x30 or top[2][0] != 0x04:
                raise ValueError("not PKCS#8")
            if der[top[1][2] : top[1][3]].find(_RSA_OID) != 0:
                raise CredentialKeyError("The key's private_key is not an RSA key.")
            rsa_der = der[top[2][2] : top[2][3]]
            tag, start, end = _der_element(rsa_der, 0)
            rsa_fields = _der_children(rsa_der, start, end)
        if tag != 0x30 or len(rsa_fields) < 3 or rsa_fields[1][0] != 0x02 or rsa_fields[2][0] != 0x02:
            raise ValueError("not an RSAPrivateKey")
        modulus = rsa_der[rsa_fields[1][1] : rsa_fields[1][3]]
        exponent = rsa_der[rsa_fields[2][1] : rsa_fields[2][3]]
    except (ValueError, binascii.Error, IndexError):
        raise_from(CredentialKeyError("The key's private_key cannot be decoded (damaged PEM/DER)."), None)
    public_key = _der_tlv(0x30, modulus + exponent)
    spki = _der_tlv(0x30, _RSA_ALGORITHM_ID + _der_tlv(0x03, b"\x00" + public_key))
    return ":".join("%02x" % byte for byte in bytearray(hashlib.sha256(spki).digest()))


def normalize_fingerprint(value):  # type: (str) -> str
    """Fingerprints compare case- and separator-insensitively: 'AB:CD' == 'abcd'."""
    return re.sub(r"[^0-9a-f]", "", value.lower())


def credential_key_metadata(content):  # type: (Union[str, bytes]) -> Dict[str, str]
    """client_id, client_email, private_key_id, project_id and fingerprint_sha256 of a JSON key, stdlib only.

    The controller has validated the key thoroughly (service_account.inspect_key); this only reads it.
    """
    if isinstance(content, bytes):
        content = content.decode("utf-8-sig")
    try:
        data = json.loads(content)
    except ValueError:
        raise_from(CredentialKeyError("The service-account key is not valid JSON."), None)
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise CredentialKeyError("The service-account key is not a JSON object of type service_account.")
    meta = {}  # type: Dict[str, str]
    for field in ("client_id", "client_email", "private_key_id", "project_id", "private_key"):
        value = data.get(field)
        if not isinstance(value, string_types + (int,)) or isinstance(value, bool) or str(value).strip() == "":
            raise CredentialKeyError("The service-account key has no valid '%s' field." % field)
        meta[field] = str(value).strip()
    meta["fingerprint_sha256"] = pem_public_key_fingerprint_sha256(data["private_key"])
    del meta["private_key"]
    meta["client_email"] = meta["client_email"].lower()
    return meta


def expected_mismatches(
    meta,
    expected_client_id=None,
    expected_client_email=None,
    expected_fingerprint=None,
):  # type: (Dict[str, str], Optional[str], Optional[str], Optional[str]) -> List[str]
    """One sentence per ``expected_*`` value the key does not match (ids and fingerprints only)."""
    problems = []
    if expected_client_id is not None and str(expected_client_id).strip() != meta["client_id"]:
        problems.append("client ID is %s, expected %s" % (meta["client_id"], str(expected_client_id).strip()))
    if expected_client_email is not None and expected_client_email.strip().lower() != meta["client_email"]:
        problems.append("client e-mail is %s, expected %s" % (meta["client_email"], expected_client_email.strip()))
    if expected_fingerprint is not None and normalize_fingerprint(expected_fingerprint) != normalize_fingerprint(
        meta["fingerprint_sha256"]
    ):
        problems.append(
            "public-key fingerprint is %s, expected %s" % (meta["fingerprint_sha256"], expected_fingerprint.strip())
        )
    return problems
