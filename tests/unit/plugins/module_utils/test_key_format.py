"""module_utils.key_format (stdlib only): key metadata and the public-key fingerprint, as the controller computes them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import key_format
from ansible_collections.nupoint.gworkspace.plugins.module_utils import service_account as sa
from tests.unit import keyfactory as kf


def key_bytes(index=0):
    key = kf.rsa_key(index=index)
    return key, kf.key_json(key, private_key_id="%040x" % (index + 1)).encode()


@pytest.mark.parametrize("pem", [kf.pem_pkcs8, kf.pem_pkcs1])
def test_stdlib_fingerprint_equals_cryptography(pem):
    for index in (0, 1):
        key = kf.rsa_key(index=index)
        assert key_format.pem_public_key_fingerprint_sha256(pem(key)) == sa.public_key_fingerprint_sha256(
            key.public_key()
        )


def test_stdlib_fingerprint_4096_bit_key():
    key = kf.rsa_key(bits=4096)
    assert key_format.pem_public_key_fingerprint_sha256(kf.pem_pkcs8(key)) == sa.public_key_fingerprint_sha256(
        key.public_key()
    )


@pytest.mark.parametrize(
    "pem",
    [
        "not a key",
        kf.fake_pem("AAAA"),
        kf.fake_pem("!!!"),
    ],
)
def test_stdlib_fingerprint_refuses_garbage(pem):
    with pytest.raises(key_format.CredentialKeyError):
        key_format.pem_public_key_fingerprint_sha256(pem)


def test_stdlib_fingerprint_refuses_ec_key():
    with pytest.raises(key_format.CredentialKeyError, match="not an RSA key"):
        key_format.pem_public_key_fingerprint_sha256(kf.pem_pkcs8(kf.ec_key()))


def test_key_metadata_has_no_private_key():
    key, content = key_bytes()
    meta = key_format.credential_key_metadata(content)
    assert meta == {
        "client_id": kf.CLIENT_ID,
        "client_email": kf.CLIENT_EMAIL,
        "private_key_id": "%040x" % 1,
        "project_id": "unit-project",
        "fingerprint_sha256": sa.public_key_fingerprint_sha256(key.public_key()),
    }


def test_expected_mismatches_show_both_values():
    _key, content = key_bytes()
    meta = key_format.credential_key_metadata(content)
    assert (
        key_format.expected_mismatches(meta, kf.CLIENT_ID, kf.CLIENT_EMAIL.upper(), meta["fingerprint_sha256"].upper())
        == []
    )
    problems = key_format.expected_mismatches(meta, "123456789", "other@p.iam.gserviceaccount.com", "00:11")
    assert problems == [
        "client ID is %s, expected 123456789" % kf.CLIENT_ID,
        "client e-mail is %s, expected other@p.iam.gserviceaccount.com" % kf.CLIENT_EMAIL,
        "public-key fingerprint is %s, expected 00:11" % meta["fingerprint_sha256"],
    ]


def test_one_fingerprint_rule_for_controller_and_msl():
    assert sa.normalize_fingerprint is key_format.normalize_fingerprint
    assert key_format.normalize_fingerprint("AB:cd:01") == "abcd01"
