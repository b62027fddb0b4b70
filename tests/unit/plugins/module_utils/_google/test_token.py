"""Unit tests for _google.token (and failures, pool): classification, retries, clock offset, admin URL, no leaks.

The token source runs google-auth's real refresh code; only the HTTP session is scripted, so what is
tested is what runs against Google (and the lab), minus the network.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import email.utils
import json
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import urllib3
from google.auth import exceptions as google_exceptions
from requests.structures import CaseInsensitiveDict

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures as fl
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import module as gm
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import pool
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import token as tk
from tests.unit import keyfactory as kf

# Google's token endpoint bodies, verbatim.
UNAUTHORIZED = {
    "error": "unauthorized_client",
    "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not "
    "authorized for any of the scopes requested.",
}
INVALID_USER = {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
CLOCK_SKEW = {
    "error": "invalid_grant",
    "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim.",
}
BAD_SIGNATURE = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
ACCOUNT_NOT_FOUND = {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
BAD_AUDIENCE = {
    "error": "invalid_grant",
    "error_description": "Invalid JWT: Failed audience check. The expected audience is https://oauth2.googleapis.com/token.",
}
INTERNAL_FAILURE = {"error": "internal_failure", "error_description": "Backend Error"}

CLASSIFICATION_CASES = [
    (UNAUTHORIZED, 401, "token_unauthorized_scope", False),
    (
        {"error": "access_denied", "error_description": "Requested client not authorized."},
        403,
        "token_unauthorized_scope",
        False,
    ),
    (INVALID_USER, 400, "token_invalid_user", False),
    ({"error": "invalid_grant", "error_description": "Not a valid email."}, 400, "token_invalid_user", False),
    (
        {"error": "invalid_request", "error_description": 'Invalid impersonation "sub" field.'},
        400,
        "token_invalid_user",
        False,
    ),
    (CLOCK_SKEW, 400, "token_clock_skew", False),
    (BAD_SIGNATURE, 400, "token_invalid_key", False),
    (ACCOUNT_NOT_FOUND, 400, "token_invalid_key", False),
    (
        {"error": "invalid_grant", "error_description": "Invalid JWT: No valid verifier found for issuer."},
        400,
        "token_invalid_key",
        False,
    ),
    ({"error": "invalid_grant", "error_description": "Robot is disabled."}, 400, "token_invalid_key", False),
    (
        {"error": "disabled_client", "error_description": "The OAuth client was disabled."},
        401,
        "token_invalid_key",
        False,
    ),
    (BAD_AUDIENCE, 400, "token_other", False),
    (
        {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."},
        400,
        "token_other",
        False,
    ),
    (INTERNAL_FAILURE, 400, "token_other", True),
    ({"error": "temporarily_unavailable"}, 400, "token_other", True),
    (
        {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}},
        503,
        "token_other",
        True,
    ),
    ({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}, 429, "token_other", True),
]


@pytest.mark.parametrize(("body", "status", "failure_class", "retryable"), CLASSIFICATION_CASES)
def test_classify_google_error_bodies(body, status, failure_class, retryable):
    error, description = fl.parse_token_error_body(json.dumps(body).encode())
    assert fl.classify_token_error(error, description, status) == (failure_class, retryable)


def test_non_json_error_body():
    assert fl.parse_token_error_body(b"<html>502 Bad Gateway</html>") == (None, None)
    assert fl.classify_token_error(None, None, 502) == ("token_other", True)
    assert fl.classify_token_error(None, None, 404) == ("token_other", False)


def _wrapped(reason):
    """requests' exception as it wraps urllib3's MaxRetryError(reason)."""
    pool = urllib3.HTTPSConnectionPool("oauth2.googleapis.com", 443)
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(pool, "/token", reason=reason))


def _name_resolution_error():
    conn = urllib3.connection.HTTPSConnection("oauth2.googleapis.com", 443)
    return urllib3.exceptions.NameResolutionError(
        "oauth2.googleapis.com", conn, socket.gaierror(-2, "Name or service not known")
    )


def _refused():
    conn = urllib3.connection.HTTPSConnection("127.0.0.1", 9)
    return urllib3.exceptions.NewConnectionError(
        conn, "Failed to establish a new connection: [Errno 111] Connection refused"
    )


NETWORK_CASES = [
    (_wrapped(_name_resolution_error()), "dns", False),
    (requests.exceptions.ConnectionError(socket.gaierror(-3, "Temporary failure in name resolution")), "dns", False),
    (_wrapped(_refused()), "connect", False),
    (ConnectionRefusedError(111, "Connection refused"), "connect", False),
    (
        requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError(
                "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
            )
        ),
        "connect",
        True,
    ),
    (
        requests.exceptions.ConnectTimeout("Connection to oauth2.googleapis.com timed out. (connect timeout=10)"),
        "timeout",
        True,
    ),
    (requests.exceptions.ReadTimeout("Read timed out. (read timeout=10)"), "timeout", True),
    (TimeoutError("timed out"), "timeout", True),
    (
        requests.exceptions.SSLError(
            urllib3.exceptions.SSLError(
                ssl.SSLCertVerificationError(
                    1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate is not yet valid"
                )
            )
        ),
        "tls",
        False,
    ),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls", False),
    (
        google_exceptions.TransportError(requests.exceptions.ConnectionError(ConnectionResetError(104, "reset"))),
        "connect",
        True,
    ),
]


@pytest.mark.parametrize(("exc", "failure_class", "retryable"), NETWORK_CASES)
def test_classify_network_errors(exc, failure_class, retryable):
    token_error = fl.classify_token_exception(exc)
    assert (token_error.failure_class, token_error.retryable) == (failure_class, retryable)
    assert token_error.google_error is None
    assert fl.hint(failure_class) in token_error.msg


def test_unexpected_exception_is_token_other():
    token_error = fl.classify_token_exception(ValueError("boom"))
    assert token_error.failure_class == "token_other"
    assert "ValueError" in token_error.msg


def test_every_class_has_a_hint_and_vocabulary_matches_design():
    for endpoint in (fl.ENDPOINT_TOKEN, fl.ENDPOINT_IMAP, fl.ENDPOINT_API):
        assert all(fl.hint(failure_class, endpoint) for failure_class in fl.FAILURE_CLASSES if failure_class != "ok")
    assert fl.FAILURE_CLASSES == (
        "ok", "dns", "connect", "tls", "timeout", "token_unauthorized_scope", "token_invalid_user",
        "token_clock_skew", "token_invalid_key", "token_other", "imap_disabled", "imap_auth_failed", "imap_other",
        "api_error",
    )  # fmt: skip


def test_admin_console_url_has_every_scope_and_the_client_id():
    url = fl.admin_console_url(
        "110987654321098765432",
        [
            "https://mail.google.com/",
            "https://www.googleapis.com/auth/gmail.settings.basic",
            "https://mail.google.com/",
        ],
    )
    assert url == (
        "https://admin.google.com/ac/owl/domainwidedelegation?clientScopeToAdd=https://mail.google.com/,"
        "https://www.googleapis.com/auth/gmail.settings.basic&clientIdToAdd=110987654321098765432&overwriteClientId=true"
    )


def test_backoff_delay_grows_and_is_capped_with_jitter():
    assert pool.backoff_delay(1, 1.0, 32.0, lambda: 0.5) == 1.0
    assert pool.backoff_delay(3, 1.0, 32.0, lambda: 0.5) == 4.0
    assert pool.backoff_delay(10, 1.0, 32.0, lambda: 0.5) == 32.0
    assert pool.backoff_delay(2, 1.0, 32.0, lambda: 0.0) == 1.0
    assert pool.backoff_delay(2, 1.0, 32.0, lambda: 0.999) == pytest.approx(2.998)


def test_retry_after():
    assert pool.retry_after_seconds("7") == 7.0
    assert pool.retry_after_seconds("7000", cap=30) == 30
    assert pool.retry_after_seconds(None) is None
    assert pool.retry_after_seconds(email.utils.formatdate(time.time() + 5, usegmt=True)) == pytest.approx(5, abs=1.5)


def test_google_argument_spec_options():
    spec = gm.google_argument_spec()
    assert set(spec) == {"token_uri", "ca_path", "timeout", "retries", "api_base_url", "presigned"}
    assert spec["timeout"]["default"] == tk.DEFAULT_TIMEOUT
    assert spec["presigned"]["no_log"] is True


def test_missing_google_library_is_none_with_both_installed(monkeypatch):
    assert tk.missing_google_library() is None
    monkeypatch.setattr(tk, "HAS_REQUESTS", False)
    monkeypatch.setattr(tk, "REQUESTS_IMPORT_ERROR", "Traceback: no requests")
    assert tk.missing_google_library() == ("requests", "Traceback: no requests")


# --------------------------------------------------------------------------- the token source


class FakeResponse:
    def __init__(self, status, body, headers=None):
        self.status_code = status
        self.content = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = CaseInsensitiveDict({"Date": email.utils.formatdate(time.time(), usegmt=True)})
        self.headers.update(headers or {})


class FakeSession:
    """Plays scripted answers (responses or exceptions) in order; the last one repeats."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []
        self.lock = threading.Lock()
        self.closed = False

    def request(self, method, url, data=None, headers=None, timeout=None, allow_redirects=True, **kwargs):
        with self.lock:
            self.requests.append({"method": method, "url": url, "data": data, "timeout": timeout, "kwargs": kwargs})
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer) and not isinstance(answer, FakeResponse):
            answer = answer(data)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def head(self, url, timeout=None, allow_redirects=True, **kwargs):
        return self.request("HEAD", url, timeout=timeout, **kwargs)

    def close(self):
        self.closed = True


def ok_response(access_token="ya29.unit-token-value"):  # noqa: S107 - a fake token
    return FakeResponse(200, {"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"})


def jwt_parts(form_body):
    assertion = urllib.parse.parse_qs(form_body.decode())["assertion"][0]
    header, payload, _signature = assertion.split(".")

    def decode(part):
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return decode(header), decode(payload)


@pytest.fixture
def key_data():
    return kf.key_dict(kf.rsa_key())


def make_source(key_data, session, **kwargs):
    sleeps = []
    kwargs.setdefault("retries", 3)
    source = tk.DelegatedTokenSource(
        key_data, token_uri="https://127.0.0.1:1/token", session=session, sleep=sleeps.append, rng=lambda: 0.5, **kwargs
    )
    return source, sleeps


def test_token_signs_a_delegated_jwt_and_returns_token(key_data):
    session = FakeSession(ok_response())
    source, sleeps = make_source(key_data, session, timeout=7)
    token, expiry = source.token("user0001@example.test")
    assert token == "ya29.unit-token-value"
    assert expiry is not None
    request = session.requests[0]
    assert (request["method"], request["url"], request["timeout"]) == ("POST", "https://127.0.0.1:1/token", 7.0)
    header, claims = jwt_parts(request["data"])
    assert header["kid"] == key_data["private_key_id"]
    assert header["alg"] == "RS256"
    assert claims["iss"] == kf.CLIENT_EMAIL
    assert claims["sub"] == "user0001@example.test"
    assert claims["scope"] == "https://mail.google.com/"
    assert claims["exp"] - claims["iat"] == 3600
    assert sleeps == []


def test_token_with_other_scopes_one_at_a_time(key_data):
    session = FakeSession(ok_response())
    source = make_source(key_data, session)[0]
    source.token("admin@example.test", ["https://www.googleapis.com/auth/gmail.settings.basic"])
    assert jwt_parts(session.requests[0]["data"])[1]["scope"] == "https://www.googleapis.com/auth/gmail.settings.basic"


@pytest.mark.parametrize(
    ("body", "status", "failure_class"),
    [
        (UNAUTHORIZED, 401, "token_unauthorized_scope"),
        (INVALID_USER, 400, "token_invalid_user"),
        (CLOCK_SKEW, 400, "token_clock_skew"),
        (BAD_SIGNATURE, 400, "token_invalid_key"),
        (ACCOUNT_NOT_FOUND, 400, "token_invalid_key"),
    ],
)
def test_google_refusals_are_not_retried(key_data, body, status, failure_class):
    session = FakeSession(FakeResponse(status, body))
    source, sleeps = make_source(key_data, session)
    with pytest.raises(fl.TokenError) as excinfo:
        source.token("user0001@example.test")
    error = excinfo.value
    assert (error.failure_class, error.retryable, error.status, error.attempts) == (failure_class, False, status, 1)
    assert error.google_description == body["error_description"]
    assert len(session.requests) == 1
    assert sleeps == []


def test_retryable_then_success(key_data):
    session = FakeSession(FakeResponse(503, b"Service Unavailable"), FakeResponse(400, INTERNAL_FAILURE), ok_response())
    source, sleeps = make_source(key_data, session)
    minted = source.mint("user0001@example.test")
    assert minted.access_token == "ya29.unit-token-value"
    assert (minted.attempts, minted.http_status) == (3, 200)
    assert "ya29" not in repr(minted)
    assert len(session.requests) == 3
    assert sleeps == [1.0, 2.0]


def test_retries_exhausted_raise_without_google_auth_retrying_again(key_data):
    session = FakeSession(FakeResponse(500, {"error": "internal_failure"}))
    source, sleeps = make_source(key_data, session, retries=2)
    with pytest.raises(fl.TokenError) as excinfo:
        source.token("user0001@example.test")
    error = excinfo.value
    assert (error.failure_class, error.retryable, error.status, error.attempts) == ("token_other", True, 500, 3)
    assert len(session.requests) == 3
    assert sleeps == [1.0, 2.0]


def test_retry_after_header_is_honoured(key_data):
    session = FakeSession(FakeResponse(429, {"error": "rate_limit_exceeded"}, {"Retry-After": "3"}), ok_response())
    source, sleeps = make_source(key_data, session)
    source.token("user0001@example.test")
    assert sleeps == [3.0]


def test_timeouts_and_resets_are_retried_refusals_are_not(key_data):
    reset = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    session = FakeSession(requests.exceptions.ReadTimeout("Read timed out."), reset, ok_response())
    source, sleeps = make_source(key_data, session)
    source.token("user0001@example.test")
    assert len(sleeps) == 2

    session = FakeSession(_wrapped(_refused()))
    source, sleeps = make_source(key_data, session)
    with pytest.raises(fl.TokenError) as excinfo:
        source.token("user0001@example.test")
    assert (excinfo.value.failure_class, excinfo.value.attempts, sleeps) == ("connect", 1, [])

    session = FakeSession(requests.exceptions.ConnectTimeout("timed out"))
    source, sleeps = make_source(key_data, session, retries=1)
    with pytest.raises(fl.TokenError) as excinfo:
        source.token("user0001@example.test")
    assert (excinfo.value.failure_class, excinfo.value.attempts, len(sleeps)) == ("timeout", 2, 1)


def test_real_refused_connection_is_connect(key_data):
    """A real socket to a closed loopback port, through the real requests session."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = tk.DelegatedTokenSource(key_data, token_uri="https://127.0.0.1:%d/token" % port, timeout=2, retries=0)
    with source, pytest.raises(fl.TokenError) as excinfo:
        source.token("user0001@example.test")
    assert excinfo.value.failure_class == "connect"
    assert source.clock_offset() is None


def test_clock_offset_from_date_header(key_data):
    skewed = FakeResponse(405, b"", {"Date": email.utils.formatdate(time.time() + 600, usegmt=True)})
    source = make_source(key_data, FakeSession(skewed))[0]
    assert source.clock_offset() == pytest.approx(600, abs=1.5)
    source = make_source(key_data, FakeSession(requests.exceptions.ConnectTimeout("timed out")))[0]
    assert source.clock_offset() is None


def test_concurrent_tokens_from_one_source(key_data):
    def answer(form_body):
        subject = jwt_parts(form_body)[1]["sub"]
        return ok_response("ya29.for-" + subject)

    session = FakeSession(answer)
    source = make_source(key_data, session)[0]
    subjects = ["user%04d@example.test" % index for index in range(60)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        tokens = list(pool.map(lambda subject: source.token(subject)[0], subjects))
    assert tokens == ["ya29.for-" + subject for subject in subjects]


def test_no_key_or_token_in_errors_or_repr(key_data):
    key = kf.rsa_key()
    session = FakeSession(FakeResponse(400, BAD_SIGNATURE))
    source = make_source(key_data, session)[0]
    with pytest.raises(fl.TokenError) as excinfo:
        source.token("user0001@example.test")
    rendered = str(excinfo.value) + repr(excinfo.value) + json.dumps(excinfo.value.as_result()) + repr(source)
    assert "assertion" not in rendered
    for marker in kf.secret_markers(key):
        assert marker not in rendered
    assert kf.CLIENT_EMAIL in repr(source)


def test_unloadable_key_is_token_invalid_key_without_echoing_it():
    data = kf.key_dict(private_key=kf.fake_pem("TUlJQ2RRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBbDh3"))
    with pytest.raises(fl.TokenError) as excinfo:
        tk.DelegatedTokenSource(data, session=FakeSession(ok_response()))
    assert excinfo.value.failure_class == "token_invalid_key"
    assert "TUlJQ2RR" not in str(excinfo.value)
    with pytest.raises(fl.TokenError):
        tk.DelegatedTokenSource("{not json", session=FakeSession(ok_response()))


def test_token_uri_from_key_is_used_without_override(key_data):
    session = FakeSession(ok_response())
    source = tk.DelegatedTokenSource(json.dumps(key_data), session=session)
    source.token("user0001@example.test")
    assert session.requests[0]["url"] == "https://oauth2.googleapis.com/token"
    source.close()
    assert session.closed


def test_ca_path_is_passed_per_request(key_data):
    """requests lets REQUESTS_CA_BUNDLE override session.verify, so ca_path goes with every request."""
    session = FakeSession(ok_response())
    source = make_source(key_data, session, ca_path="/lab/ca.pem")[0]
    source.token("user0001@example.test")
    source.clock_offset()
    assert [request["kwargs"] for request in session.requests] == [{"verify": "/lab/ca.pem"}] * 2
    session = FakeSession(ok_response())
    source = make_source(key_data, session)[0]
    source.token("user0001@example.test")
    assert session.requests[0]["kwargs"] == {}


def test_ca_path_beats_requests_ca_bundle_on_a_real_session(key_data, monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "other.pem"))
    source = tk.DelegatedTokenSource(key_data, ca_path=str(tmp_path / "lab.pem"))
    prepared = source._session.merge_environment_settings(
        "https://127.0.0.1/token", {}, None, source._request_options.get("verify"), None
    )
    assert prepared["verify"] == str(tmp_path / "lab.pem")


# --------------------------------------------------------------------------- signed on the controller, exchanged on the node


def test_signature_verifies_with_the_keys_public_key(key_data):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    signer = tk.KeySigner(key_data, token_uri="https://127.0.0.1:1/token", clock=lambda: 1_700_000_000)
    assertion = signer.assertion("user0001@example.test", ["https://mail.google.com/"])
    header, payload, signature = assertion.split(".")
    public_key = serialization.load_pem_private_key(key_data["private_key"].encode(), None).public_key()
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public_key.verify(raw, ("%s.%s" % (header, payload)).encode(), padding.PKCS1v15(), hashes.SHA256())
    claims = tk._assertion_claims(assertion)
    assert claims == {
        "iss": kf.CLIENT_EMAIL,
        "sub": "user0001@example.test",
        "scope": "https://mail.google.com/",
        "aud": "https://127.0.0.1:1/token",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }
    assert signer.identity["token_uri"] == "https://127.0.0.1:1/token"
    assert signer.identity["private_key_id"] == key_data["private_key_id"]


def test_presigned_assertions_are_exchanged_without_the_key(key_data):
    signer = tk.KeySigner(key_data, token_uri="https://127.0.0.1:1/token")
    users = ["User0001@Example.test", "user0002@example.test", "user0001@example.test"]
    presigned = tk.sign_assertions(signer, [(user, ["https://mail.google.com/"]) for user in users])
    assert len(presigned["assertions"]) == 2  # one per subject and scopes, case-folded
    dumped = json.dumps(presigned)
    assert "PRIVATE KEY" not in dumped
    assert key_data["private_key"].splitlines()[1] not in dumped
    session = FakeSession(ok_response())
    source = tk.DelegatedTokenSource(signer=tk.PresignedAssertions(presigned), session=session)
    assert (source.client_email, source.token_uri) == (kf.CLIENT_EMAIL, "https://127.0.0.1:1/token")
    token, _expiry = source.token("user0002@example.test")
    assert token == "ya29.unit-token-value"
    sent = urllib.parse.parse_qs(session.requests[0]["data"].decode())
    assert sent["assertion"][0] == presigned["assertions"]["user0002@example.test https://mail.google.com/"]
    assert sent["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]


def test_presigned_assertion_missing_or_expiring_is_refused_before_any_request(key_data):
    now = [1_700_000_000.0]
    signer = tk.KeySigner(key_data, clock=lambda: now[0])
    presigned = tk.sign_assertions(signer, [("user0001@example.test", ["https://mail.google.com/"])])
    assertions = tk.PresignedAssertions(presigned, clock=lambda: now[0])
    with pytest.raises(fl.TokenError) as missing:
        assertions.assertion("user0009@example.test", ["https://mail.google.com/"])
    assert missing.value.failure_class == "token_other"
    now[0] += 3600 - 30
    with pytest.raises(fl.TokenError) as expiring:
        assertions.assertion("user0001@example.test", ["https://mail.google.com/"])
    assert expiring.value.failure_class == "token_clock_skew"
    assert "1700003600" in expiring.value.msg


def test_a_200_without_a_token_is_token_other(key_data):
    session = FakeSession(FakeResponse(200, b"<html>proxy login</html>"))
    source = make_source(key_data, session)[0]
    with pytest.raises(fl.TokenError) as caught:
        source.token("user0001@example.test")
    assert (caught.value.failure_class, caught.value.status) == ("token_other", 200)


def test_key_signer_without_google_auth_says_how_to_do_without(key_data, monkeypatch):
    monkeypatch.setattr(tk, "HAS_GOOGLE_AUTH", False)
    with pytest.raises(fl.TokenError) as caught:
        tk.KeySigner(key_data)
    assert "give the key as src or content so the controller signs" in caught.value.msg
    assert tk.missing_google_library(signing=False) is None
