"""Unit tests for module_utils.service_account: every failure reason, and no key material in results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import service_account as sa
from tests.unit import keyfactory as kf


def reason_of(content, p12=None, password=sa.DEFAULT_P12_PASSWORD):
    with pytest.raises(sa.KeyValidationError) as excinfo:
        sa.inspect_key(content, p12, password)
    return excinfo.value


def test_valid_key_returns_public_facts_only():
    key = kf.rsa_key()
    data = kf.key_dict(key)
    result = sa.inspect_key(json.dumps(data)).as_info()
    assert result == {
        "client_id": kf.CLIENT_ID,
        "client_email": kf.CLIENT_EMAIL,
        "project_id": "unit-project",
        "private_key_id": data["private_key_id"],
        "token_uri": "https://oauth2.googleapis.com/token",
        "universe_domain": "googleapis.com",
        "public_key_fingerprint_sha256": sa.public_key_fingerprint_sha256(key.public_key()),
        "key_size": 2048,
        "p12_matches": None,
        "p12_fingerprint_sha256": None,
        "p12_same_account": None,
    }
    rendered = json.dumps(result) + repr(sa.inspect_key(json.dumps(data)))
    for marker in kf.secret_markers(key):
        assert marker not in rendered


def test_fingerprint_is_sha256_of_der_spki_with_colons():
    import hashlib

    from cryptography.hazmat.primitives import serialization

    key = kf.rsa_key()
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = ":".join("%02x" % b for b in hashlib.sha256(der).digest())
    assert sa.public_key_fingerprint_sha256(key.public_key()) == expected
    assert len(expected) == 32 * 3 - 1
    assert sa.normalize_fingerprint(expected.upper()) == expected.replace(":", "")


def test_bytes_with_utf8_bom_are_accepted():
    content = b"\xef\xbb\xbf" + kf.key_json().encode()
    assert sa.inspect_key(content).client_id == kf.CLIENT_ID


def test_pkcs1_private_key_is_accepted():
    key = kf.rsa_key()
    content = kf.key_json(key, private_key=kf.pem_pkcs1(key))
    assert "BEGIN RSA PRIVATE KEY" in kf.pem_pkcs1(key)
    assert sa.inspect_key(content).key_size == 2048


def test_numeric_client_id_is_normalised_to_text():
    assert sa.inspect_key(kf.key_json(client_id=110987654321098765432)).client_id == kf.CLIENT_ID


def test_loopback_http_token_uri_is_allowed():
    assert sa.inspect_key(kf.key_json(token_uri="http://127.0.0.1:8080/token")).token_uri.startswith("http://")


@pytest.mark.parametrize(
    ("content", "reason", "needle"),
    [
        ("", "not_json", "empty"),
        ("{not json}", "not_json", "not valid JSON"),
        ("[1, 2]", "not_json", "JSON array"),
        (b"\x30\x82\x01\xff\x00", "not_json", "not UTF-8"),
    ],
)
def test_not_json(content, reason, needle):
    error = reason_of(content)
    assert error.reason == reason
    assert needle in error.msg


def test_truncated_file_is_called_truncated():
    content = kf.key_json()
    error = reason_of(content[: len(content) // 2])
    assert error.reason == "not_json"
    assert "truncated" in error.msg
    assert "PRIVATE KEY" not in error.msg


@pytest.mark.parametrize(
    ("key_type", "needle"),
    [("authorized_user", "gcloud auth"), ("external_account", "federation"), ("something", "not a service-account")],
)
def test_wrong_type(key_type, needle):
    error = reason_of(kf.key_json(type=key_type))
    assert (error.reason, error.field) == ("wrong_type", "type")
    assert needle in error.msg
    assert "service_account" in error.msg


def test_oauth_client_secret_file_is_recognised():
    error = reason_of(json.dumps({"installed": {"client_id": "x.apps.googleusercontent.com"}}))
    assert error.reason == "wrong_type"
    assert "OAuth client secret" in error.msg


@pytest.mark.parametrize("field", sa.REQUIRED_FIELDS)
def test_missing_field(field):
    error = reason_of(kf.key_json(**{field: None}))
    assert error.reason == "missing_field"
    assert error.field == field
    assert "'%s'" % field in error.msg or field == "type"


@pytest.mark.parametrize(
    ("overrides", "field", "needle"),
    [
        ({"client_email": "someone@gmail.com"}, "client_email", "not a service-account address"),
        ({"client_email": "not-an-address"}, "client_email", "not a service-account address"),
        ({"client_id": "abc123"}, "client_id", "numeric"),
        ({"private_key_id": "XYZ"}, "private_key_id", "40 lowercase hexadecimal"),
        ({"token_uri": "http://oauth2.googleapis.com/token"}, "token_uri", "https://"),
        ({"token_uri": "ftp://x/token"}, "token_uri", "https://"),
        ({"project_id": ["a"]}, "project_id", "must be a string"),
    ],
)
def test_bad_field(overrides, field, needle):
    error = reason_of(kf.key_json(**overrides))
    assert (error.reason, error.field) == ("bad_field", field)
    assert needle in error.msg


def test_universe_domain_allows_its_own_email_suffix():
    content = kf.key_json(universe_domain="example-universe.test", client_email="sa@proj.example-universe.test")
    assert sa.inspect_key(content).universe_domain == "example-universe.test"


@pytest.mark.parametrize(
    "pem",
    [
        "not a pem",
        kf.fake_pem("AAAA"),
    ],
)
def test_bad_private_key(pem):
    error = reason_of(kf.key_json(private_key=pem))
    assert (error.reason, error.field) == ("bad_private_key", "private_key")


def test_private_key_with_escaped_line_breaks_is_damaged():
    # A PEM pasted through a second layer of JSON/YAML escaping keeps literal "\\n" sequences.
    pem = kf.pem_pkcs8(kf.rsa_key())
    error = reason_of(kf.key_json(private_key=pem.replace("\n", "\\n")))
    assert error.reason == "bad_private_key"


def test_truncated_private_key():
    pem = kf.pem_pkcs8(kf.rsa_key())
    error = reason_of(kf.key_json(private_key=pem[: len(pem) // 2] + "\n-----END PRIVATE KEY-----\n"))
    assert error.reason == "bad_private_key"


def test_encrypted_private_key():
    from cryptography.hazmat.primitives import serialization

    pem = (
        kf.rsa_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
        .decode()
    )
    error = reason_of(kf.key_json(private_key=pem))
    assert error.reason == "bad_private_key"
    assert "encrypted" in error.msg


def test_ec_key_is_unsupported():
    error = reason_of(kf.key_json(kf.ec_key()))
    assert error.reason == "unsupported_key_type"
    assert "elliptic-curve" in error.msg


def test_1024_bit_key_is_weak():
    error = reason_of(kf.key_json(kf.rsa_key(1024)))
    assert error.reason == "weak_private_key"
    assert "1024-bit" in error.msg


def test_matching_p12():
    key = kf.rsa_key()
    result = sa.inspect_key(kf.key_json(key), kf.p12_bytes(key))
    assert result.p12_matches is True


def test_matching_p12_says_same_key_pair():
    key = kf.rsa_key()
    result = sa.inspect_key(kf.key_json(key), kf.p12_bytes(key)).as_info()
    assert result["p12_same_account"] == "same_key_pair"
    assert result["p12_fingerprint_sha256"] == result["public_key_fingerprint_sha256"]
    assert sa.p12_pair_warning(result) is None


def test_p12_of_another_account_is_a_mismatch_showing_both_fingerprints():
    key, other = kf.rsa_key(), kf.rsa_key(index=1)
    error = reason_of(kf.key_json(key), kf.p12_bytes(other, client_id=kf.OTHER_CLIENT_ID))
    assert error.reason == "p12_mismatch"
    assert sa.public_key_fingerprint_sha256(key.public_key()) in error.msg
    assert sa.public_key_fingerprint_sha256(other.public_key()) in error.msg
    assert "names client ID %s" % kf.OTHER_CLIENT_ID in error.msg and kf.CLIENT_ID in error.msg


def test_p12_of_another_key_of_the_same_account_is_accepted_as_unproven():
    # What Google hands out when both files are downloaded: two key pairs, the P12's certificate naming the account.
    key, other = kf.rsa_key(), kf.rsa_key(index=1)
    checked = sa.inspect_key(kf.key_json(key), kf.p12_bytes(other))
    result = checked.as_info()
    assert result["p12_matches"] is False and result["p12_same_account"] == "unproven"
    assert result["p12_fingerprint_sha256"] == sa.public_key_fingerprint_sha256(other.public_key())
    warning = sa.p12_pair_warning(result)
    assert "did not check at Google" in warning and result["private_key_id"] in warning and kf.CLIENT_ID in warning
    assert "service_account_keys_info with p12_pair" in warning and "p12_dest" in warning
    for marker in kf.secret_markers(key) + kf.secret_markers(other):
        assert marker not in repr(result) + warning + repr(checked)


def test_p12_whose_certificate_names_no_client_id_is_a_mismatch():
    key, other = kf.rsa_key(), kf.rsa_key(index=1)
    error = reason_of(kf.key_json(key), kf.p12_bytes(other, client_id="nupoint-um@unit-project"))
    assert error.reason == "p12_mismatch" and "names no client ID" in error.msg


def test_derived_p12_carries_the_json_keys_own_pair_in_googles_layout():
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = kf.rsa_key()
    checked = sa.inspect_key(kf.key_json(key))
    derived = sa.derive_p12(checked, created_at=1700000000)
    assert sa.inspect_key(kf.key_json(key), derived).p12_same_account == "same_key_pair"
    loaded = pkcs12.load_pkcs12(derived, b"notasecret")
    cert = loaded.cert.certificate
    assert loaded.cert.friendly_name == b"privatekey"
    assert cert.subject.rfc4514_string() == cert.issuer.rfc4514_string() == "CN=%s" % kf.CLIENT_ID
    assert cert.not_valid_before_utc.timestamp() == 1700000000
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 3650
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert sa.certificate_client_id(cert) == kf.CLIENT_ID
    # Another password, as a re-exported file may carry.
    assert sa.inspect_key(kf.key_json(key), sa.derive_p12(checked, "other"), "other").p12_matches is True


def test_p12_wrong_password():
    key = kf.rsa_key()
    error = reason_of(kf.key_json(key), kf.p12_bytes(key, b"other"), "notasecret")
    assert (error.reason, error.field) == ("p12_password", "p12_password")


def test_p12_custom_password():
    key = kf.rsa_key()
    assert sa.inspect_key(kf.key_json(key), kf.p12_bytes(key, b"other"), "other").p12_matches is True


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 a zip file", kf.key_json().encode()])
def test_p12_that_is_not_pkcs12(data):
    error = reason_of(kf.key_json(), data)
    assert error.reason == "p12_invalid"


def test_truncated_p12_fails_cleanly():
    key = kf.rsa_key()
    data = kf.p12_bytes(key)
    error = reason_of(kf.key_json(key), data[: len(data) // 2])
    assert error.reason in ("p12_password", "p12_invalid")


def test_decode_p12_content_accepts_wrapped_base64_and_rejects_garbage():
    import base64

    raw = kf.p12_bytes(kf.rsa_key())
    text = base64.b64encode(raw).decode()
    wrapped = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    assert sa.decode_p12_content(wrapped) == raw
    with pytest.raises(sa.KeyValidationError) as excinfo:
        sa.decode_p12_content("***")
    assert excinfo.value.reason == "p12_invalid"


def test_every_reason_is_documented_in_the_module():
    from ansible_collections.nupoint.gworkspace.plugins.modules import service_account_key_info as module

    for reason in sa.REASONS:
        assert "V(%s)" % reason in module.RETURN
