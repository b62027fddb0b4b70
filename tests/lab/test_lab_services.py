"""Self-tests of the running lab's services: real Dovecot, chrony, the skewed SNTP responder, and
the generated service-account key used by the unmodified google-auth library."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time

import google.auth.transport.requests
import imapclient
import imapclient.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from google.oauth2 import service_account

from tests.lab.google.server import ALERT_IMAP_DOMAIN_DISABLED, ALERT_IMAP_USER_DISABLED, IMAP_INVALID_CREDENTIALS

MAIL = "https://mail.google.com/"


def mint_token(lab, user, scopes=(MAIL,)):
    """A delegated access token from the lab, minted by the real google-auth library."""
    credentials = service_account.Credentials.from_service_account_file(lab.key_file, scopes=list(scopes), subject=user)
    credentials.refresh(google.auth.transport.requests.Request(lab.requests_session()))
    return credentials.token


def imap(lab):
    return imapclient.IMAPClient(lab.host, lab.imap_port, ssl_context=lab.ssl_context(), timeout=15)


def raw_authenticate(lab, mechanism, initial_response):
    """AUTHENTICATE on the wire; returns every server line after the greeting (challenge answered)."""
    context = lab.ssl_context()
    with (
        socket.create_connection((lab.host, lab.imap_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=lab.host) as tls,
    ):
        stream = tls.makefile("rwb")
        assert stream.readline().startswith(b"* OK")
        stream.write(b"a1 AUTHENTICATE %s %s\r\n" % (mechanism, base64.b64encode(initial_response)))
        stream.flush()
        lines = []
        while True:
            line = stream.readline()
            lines.append(line.decode().rstrip("\r\n"))
            if line.startswith(b"+ "):
                # Error details of a failed SASL exchange; the client acknowledges with an empty response.
                stream.write(b"\r\n")
                stream.flush()
            elif not line or line.startswith(b"a1 "):
                return lines


def xoauth2(user, token):
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


# --- emulated Google + google-auth ----------------------------------------------------------


def test_key_file_is_googles_format(lab):
    with open(lab.key_file, encoding="utf-8") as handle:
        document = json.load(handle)
    assert list(document) == [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
        "universe_domain",
    ]
    assert document["type"] == "service_account"
    assert document["token_uri"] == lab.token_uri
    assert document["client_email"] == lab.client_email == "nupoint-um@nupoint-lab.iam.gserviceaccount.com"
    assert document["client_id"] == lab.client_id and lab.client_id.isdigit() and len(lab.client_id) == 21
    assert len(document["private_key_id"]) == 40 and int(document["private_key_id"], 16) >= 0
    assert document["private_key"].startswith("-----BEGIN " + "PRIVATE KEY-----\n")


def test_p12_holds_the_same_key(lab):
    with open(lab.p12_file, "rb") as handle:
        key, cert, extra = pkcs12.load_key_and_certificates(handle.read(), lab.p12_password.encode())
    with open(lab.key_file, encoding="utf-8") as handle:
        json_key = serialization.load_pem_private_key(json.load(handle)["private_key"].encode(), None)
    assert key is not None and cert is not None and not extra
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert key.public_key().public_bytes(der, public) == json_key.public_key().public_bytes(der, public)
    assert cert.public_key().public_bytes(der, public) == json_key.public_key().public_bytes(der, public)
    assert key.key_size == 2048
    # Google names the certificate after the account's numeric ID (the client ID), subject and issuer alike.
    assert cert.subject.rfc4514_string() == cert.issuer.rfc4514_string() == "CN=%s" % lab.client_id


def test_google_auth_refresh_with_only_the_lab_ca(lab, lab_reset):
    token = mint_token(lab, lab.users[0])
    assert token


def test_unauthorised_scope_is_refused_through_google_auth(lab, lab_reset):
    from google.auth.exceptions import RefreshError

    with pytest.raises(RefreshError, match="unauthorized_client"):
        mint_token(lab, lab.users[0], scopes=["https://www.googleapis.com/auth/gmail.settings.basic"])


# --- Dovecot ----------------------------------------------------------------------------------


def test_dovecot_accepts_a_good_token_and_selects_inbox(lab, lab_reset):
    user = lab.users[0]
    client = imap(lab)
    try:
        assert client.oauth2_login(user, mint_token(lab, user)) == [b"Logged in"]
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


def test_dovecot_oauthbearer(lab, lab_reset):
    user = lab.users[1]
    client = imap(lab)
    try:
        client.oauthbearer_login(user, mint_token(lab, user))
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
    finally:
        client.logout()


def test_dovecot_refuses_a_bad_token(lab, lab_reset):
    client = imap(lab)
    with pytest.raises(imapclient.exceptions.LoginError) as refused:
        client.oauth2_login(lab.users[0], "ya29.not-a-token")
    client.shutdown()
    assert str(refused.value) == IMAP_INVALID_CREDENTIALS  # Gmail's words, not Dovecot's


def test_dovecot_refuses_a_token_of_another_user(lab, lab_reset):
    client = imap(lab)
    with pytest.raises(imapclient.exceptions.LoginError) as refused:
        client.oauth2_login(lab.users[0], mint_token(lab, lab.users[1]))
    client.shutdown()
    assert str(refused.value) == IMAP_INVALID_CREDENTIALS


def test_dovecot_refuses_imap_disabled_user_with_gmails_text(lab, lab_reset):
    user = lab.users[2]
    token = mint_token(lab, user)
    lab.google.set_user_imap(user, False)
    client = imap(lab)
    with pytest.raises(imapclient.exceptions.LoginError) as refused:
        client.oauth2_login(user, token)
    client.shutdown()
    assert str(refused.value) == ALERT_IMAP_USER_DISABLED
    # On the wire: exactly Gmail's line, after the SASL error challenge.
    lines = raw_authenticate(lab, b"XOAUTH2", xoauth2(user, token))
    assert lines[-1] == "a1 NO " + ALERT_IMAP_USER_DISABLED
    # Other users are unaffected, and switching IMAP back on lets the user in.
    other = lab.users[3]
    assert raw_authenticate(lab, b"XOAUTH2", xoauth2(other, mint_token(lab, other)))[-1].startswith("a1 OK ")
    lab.google.set_user_imap(user, True)
    assert raw_authenticate(lab, b"XOAUTH2", xoauth2(user, token))[-1].startswith("a1 OK ")


def test_dovecot_refuses_when_imap_is_disabled_for_the_domain(lab, lab_reset):
    user = lab.users[4]
    token = mint_token(lab, user)
    lab.google.set_domain_imap(False)
    lines = raw_authenticate(lab, b"XOAUTH2", xoauth2(user, token))
    assert lines[-1] == "a1 NO " + ALERT_IMAP_DOMAIN_DISABLED
    bearer = f"n,a={user},\x01host={lab.host}\x01port={lab.imap_port}\x01auth=Bearer {token}\x01\x01".encode()
    assert raw_authenticate(lab, b"OAUTHBEARER", bearer)[-1] == "a1 NO " + ALERT_IMAP_DOMAIN_DISABLED


def test_dovecot_has_no_auth_penalty_after_failures(lab, lab_reset):
    for _attempt in range(3):
        raw_authenticate(lab, b"XOAUTH2", xoauth2(lab.users[0], "ya29.bad"))
    user = lab.users[5]
    token = mint_token(lab, user)
    started = time.monotonic()
    assert raw_authenticate(lab, b"XOAUTH2", xoauth2(user, token))[-1].startswith("a1 OK ")
    assert time.monotonic() - started < 2.0


def test_dovecot_only_speaks_tls_with_the_lab_certificate(lab):
    strict = ssl.create_default_context()  # system CAs only: the lab CA is not among them
    with (
        socket.create_connection((lab.host, lab.imap_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        strict.wrap_socket(raw, server_hostname=lab.host)


# --- time -----------------------------------------------------------------------------------


def test_chrony_answers_sntp(lab):
    reply = lab.sntp_query()
    assert reply.mode == 4 and reply.stratum == 8 and reply.leap == 0
    assert abs(reply.offset) < 1.0


@pytest.mark.parametrize("seconds", [3600.0, -421.5])
def test_skewed_responder_reports_the_set_offset(lab, lab_reset, seconds):
    lab.skew(seconds)
    reply = lab.sntp_query(lab.skewed_ntp_port)
    assert reply.mode == 4 and reply.stratum == 1
    assert abs(reply.offset - seconds) < 0.5
    lab.skew(0)
    assert abs(lab.sntp_query(lab.skewed_ntp_port).offset) < 0.5


def test_skewed_responder_answers_sntp_v3(lab, lab_reset):
    from tests.lab import sntp

    lab.skew(-90)
    reply = sntp.query(lab.host, lab.skewed_ntp_port, version=3)
    assert reply.version == 3 and abs(reply.offset + 90) < 0.5
