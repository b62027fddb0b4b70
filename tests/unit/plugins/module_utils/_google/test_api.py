"""Unit tests for _google.api: URLs, tokens per subject, Google's error envelope, retries, CA."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import api
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures as fl
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import session as ss

SCOPES = [api.SCOPE_GMAIL_SETTINGS_BASIC]

# Google's error envelopes, as the Gmail and Cloud Identity front ends send them.
INSUFFICIENT_SCOPE = {
    "error": {
        "code": 403,
        "message": "Request had insufficient authentication scopes.",
        "errors": [{"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}],
        "status": "PERMISSION_DENIED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com",
                "metadata": {"service": "gmail.googleapis.com", "method": "caribou.api.proto.MailboxService.GetImap"},
            }
        ],
    }
}
CALLER_NO_PERMISSION = {
    "error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}
}
INVALID_CREDENTIALS = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials.",
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError"}],
        "status": "UNAUTHENTICATED",
    }
}
BACKEND_ERROR = {
    "error": {
        "code": 503,
        "message": "The service is currently unavailable.",
        "errors": [{"message": "The service is currently unavailable.", "domain": "global", "reason": "backendError"}],
        "status": "UNAVAILABLE",
    }
}
INVALID_VALUE = {
    "error": {
        "code": 400,
        "message": "Invalid value for maxFolderSize: 3",
        "errors": [{"message": "Invalid value for maxFolderSize: 3", "domain": "global", "reason": "invalidArgument"}],
        "status": "INVALID_ARGUMENT",
    }
}


class FakeResponse:
    def __init__(self, status, body=None, headers=None):
        self.status_code = status
        if body is None:
            self.content = b""
        elif isinstance(body, bytes):
            self.content = body
        else:
            self.content = json.dumps(body).encode()
        self.headers = CaseInsensitiveDict(headers or {})
        self.reason = "Reason"


class ScriptedSession:
    """Answers requests from a script: FakeResponse objects or exceptions to raise, in order."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []
        self.lock = threading.Lock()

    def request(self, method, url, **kwargs):
        with self.lock:
            self.calls.append(dict(kwargs, method=method, url=url))
            item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        pass


class FakeTokens:
    """A token source: one distinct token per call, or a fl.TokenError for chosen subjects."""

    def __init__(self, expiry=None, refuse=None):
        self.calls = []
        self.expiry = expiry
        self.refuse = refuse or {}
        self.lock = threading.Lock()

    def token(self, subject, scopes=None):
        with self.lock:
            self.calls.append((subject, tuple(scopes or ())))
            number = len(self.calls)
        if subject in self.refuse:
            raise self.refuse[subject]
        return "ya29.secret-token-%d" % number, self.expiry


def make_client(session, tokens=None, **kwargs):
    kwargs.setdefault("sleep", lambda seconds: None)
    kwargs.setdefault("rng", lambda: 0.5)
    return api.GoogleApiClient(tokens or FakeTokens(), session=session, **kwargs)


# --------------------------------------------------------------------------- URLs


def test_urls_default_to_googles_hosts():
    client = make_client(ScriptedSession(FakeResponse(200, {})))
    assert client.url("gmail", "/gmail/v1/users/me/settings/imap") == (
        "https://gmail.googleapis.com/gmail/v1/users/me/settings/imap"
    )
    assert client.url("cloudidentity", "v1/policies") == "https://cloudidentity.googleapis.com/v1/policies"
    with pytest.raises(ValueError, match="unknown Google API service"):
        client.url("nope", "/x")


def test_api_base_url_serves_every_api_and_base_urls_override_one():
    client = make_client(ScriptedSession(FakeResponse(200, {})), api_base_url="https://127.0.0.1:18400/")
    assert client.url("gmail", "/gmail/v1/x") == "https://127.0.0.1:18400/gmail/v1/x"
    assert client.url("cloudidentity", "/v1/policies") == "https://127.0.0.1:18400/v1/policies"
    client = make_client(ScriptedSession(FakeResponse(200, {})), base_urls={"gmail": "https://proxy.test"})
    assert client.url("gmail", "/gmail/v1/x") == "https://proxy.test/gmail/v1/x"
    assert client.url("cloudidentity", "/v1/p").startswith("https://cloudidentity.googleapis.com/")


# --------------------------------------------------------------------------- success and tokens


def test_get_sends_bearer_token_and_verifies_with_the_ca():
    session = ScriptedSession(FakeResponse(200, {"enabled": True}))
    client = make_client(session, ca_path="/etc/lab/ca.pem", timeout=7)
    assert client.request("GET", "gmail", "/gmail/v1/users/me/settings/imap", "a@example.test", SCOPES) == {
        "enabled": True
    }
    call = session.calls[0]
    assert call["headers"]["Authorization"] == "Bearer ya29.secret-token-1"
    assert call["verify"] == "/etc/lab/ca.pem"
    assert call["timeout"] == 7
    assert call["allow_redirects"] is False
    assert call["data"] is None


def test_put_sends_json_and_empty_answer_is_empty_dict():
    session = ScriptedSession(FakeResponse(204))
    client = make_client(session)
    assert client.request("PUT", "gmail", "/x", "a@example.test", SCOPES, body={"enabled": True}) == {}
    call = session.calls[0]
    assert json.loads(call["data"]) == {"enabled": True}
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["verify"] is True


def test_tokens_are_cached_per_subject_and_scopes():
    session = ScriptedSession(FakeResponse(200, {}))
    tokens = FakeTokens(expiry=datetime.datetime(2100, 1, 1))
    client = make_client(session, tokens)
    for subject in ("a@example.test", "A@example.test", "b@example.test"):
        client.request("GET", "gmail", "/x", subject, SCOPES)
    client.request("GET", "gmail", "/x", "a@example.test", ["https://mail.google.com/"])
    assert [call[0] for call in tokens.calls] == ["a@example.test", "b@example.test", "a@example.test"]
    assert tokens.calls[-1][1] == ("https://mail.google.com/",)


def test_token_near_expiry_is_minted_again():
    now = datetime.datetime(2030, 1, 1, 12, 0, 0)
    tokens = FakeTokens(expiry=now + datetime.timedelta(seconds=60))
    epoch = (now - datetime.datetime(1970, 1, 1)).total_seconds()
    client = make_client(ScriptedSession(FakeResponse(200, {})), tokens, clock=lambda: epoch)
    client.request("GET", "gmail", "/x", "a@example.test", SCOPES)
    client.request("GET", "gmail", "/x", "a@example.test", SCOPES)
    assert len(tokens.calls) == 2  # 60 s left is inside the refresh margin


def test_401_gets_one_fresh_token_then_succeeds():
    session = ScriptedSession(FakeResponse(401, INVALID_CREDENTIALS), FakeResponse(200, {"ok": 1}))
    tokens = FakeTokens()
    client = make_client(session, tokens)
    assert client.request("GET", "gmail", "/x", "a@example.test", SCOPES) == {"ok": 1}
    assert len(tokens.calls) == 2
    assert session.calls[1]["headers"]["Authorization"] == "Bearer ya29.secret-token-2"


def test_401_twice_is_an_api_error():
    client = make_client(ScriptedSession(FakeResponse(401, INVALID_CREDENTIALS)))
    with pytest.raises(fl.GoogleApiError) as info:
        client.request("GET", "gmail", "/x", "a@example.test", SCOPES)
    assert info.value.failure_class == "api_error"
    assert info.value.status == 401
    assert info.value.api_status == "UNAUTHENTICATED"


def test_token_errors_pass_through_unchanged():
    refusal = fl.TokenError("token_invalid_user", "Google does not know this user", "invalid_grant")
    session = ScriptedSession(FakeResponse(200, {}))
    client = make_client(session, FakeTokens(refuse={"ghost@example.test": refusal}))
    with pytest.raises(fl.TokenError) as info:
        client.request("GET", "gmail", "/x", "ghost@example.test", SCOPES)
    assert info.value is refusal
    assert session.calls == []


# --------------------------------------------------------------------------- Google's refusals


def test_insufficient_scope_is_token_unauthorized_scope():
    session = ScriptedSession(FakeResponse(403, INSUFFICIENT_SCOPE))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session).request("GET", "gmail", "/gmail/v1/users/me/settings/imap", "a@example.test", SCOPES)
    error = info.value
    assert error.failure_class == "token_unauthorized_scope"
    assert error.insufficient_scope and not error.permission_denied
    assert error.reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    assert "GET /gmail/v1/users/me/settings/imap" in error.msg
    assert "insufficient authentication scopes" in error.msg
    assert len(session.calls) == 1


def test_permission_denied_is_api_error_and_not_retried():
    session = ScriptedSession(FakeResponse(403, CALLER_NO_PERMISSION))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session).request("GET", "cloudidentity", "/v1/policies", "user@example.test", SCOPES)
    error = info.value
    assert (error.failure_class, error.status, error.api_status) == ("api_error", 403, "PERMISSION_DENIED")
    assert error.permission_denied
    assert "The caller does not have permission" in error.msg
    assert error.as_result()["http_status"] == 403
    assert len(session.calls) == 1


@pytest.mark.parametrize("status", [400, 404, 409])
def test_client_errors_are_final(status):
    session = ScriptedSession(FakeResponse(status, INVALID_VALUE))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session, retries=5).request("PUT", "gmail", "/x", "a@example.test", SCOPES, body={})
    assert info.value.retryable is False
    assert info.value.attempts == 1
    assert len(session.calls) == 1


def test_non_json_error_body_still_gives_status():
    session = ScriptedSession(FakeResponse(404, b"<html>Not Found</html>"))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session).request("GET", "gmail", "/x", "a@example.test", SCOPES)
    assert info.value.status == 404
    assert "HTTP 404" in info.value.msg


def test_non_json_success_body_names_api_base_url():
    session = ScriptedSession(FakeResponse(200, b"<html>proxy login</html>"))
    with pytest.raises(fl.GoogleApiError, match="api_base_url"):
        make_client(session).request("GET", "gmail", "/x", "a@example.test", SCOPES)


# --------------------------------------------------------------------------- retries


def test_429_and_503_are_retried_with_retry_after():
    waits = []
    session = ScriptedSession(
        FakeResponse(429, BACKEND_ERROR, {"Retry-After": "3"}), FakeResponse(503, BACKEND_ERROR), FakeResponse(200, {})
    )
    client = make_client(session, sleep=waits.append, retries=3, backoff_base=1.0)
    assert client.request("GET", "gmail", "/x", "a@example.test", SCOPES) == {}
    assert len(session.calls) == 3
    assert waits == [3.0, 2.0]  # Retry-After, then base * 2**1 * (0.5 + 0.5)


def test_retries_exhausted_say_so():
    session = ScriptedSession(FakeResponse(503, BACKEND_ERROR))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session, retries=2).request("GET", "gmail", "/x", "a@example.test", SCOPES)
    error = info.value
    assert error.retryable and error.attempts == 3
    assert "kept failing after 3 attempts" in error.msg
    assert len(session.calls) == 3


def test_timeouts_are_retried_refused_connections_are_connect():
    session = ScriptedSession(requests.exceptions.ReadTimeout("read timed out"), FakeResponse(200, {"ok": True}))
    assert make_client(session).request("GET", "gmail", "/x", "a@example.test", SCOPES) == {"ok": True}
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    session = ScriptedSession(refused)
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session, retries=0).request("GET", "gmail", "/x", "a@example.test", SCOPES)
    assert info.value.failure_class == "connect"
    assert "gmail.googleapis.com" in info.value.msg


def test_dns_failure_is_dns():
    error = requests.exceptions.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(ScriptedSession(error), retries=0).request("GET", "gmail", "/x", "a@example.test", SCOPES)
    assert info.value.failure_class == "dns"


# --------------------------------------------------------------------------- envelope parsing


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            INSUFFICIENT_SCOPE,
            ("PERMISSION_DENIED", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", INSUFFICIENT_SCOPE["error"]["message"]),
        ),
        (INVALID_VALUE, ("INVALID_ARGUMENT", "invalidArgument", "Invalid value for maxFolderSize: 3")),
        (
            {
                "error": {
                    "code": 403,
                    "message": "Not Authorized to access this resource/api",
                    "errors": [{"reason": "forbidden"}],
                }
            },
            (None, "forbidden", "Not Authorized to access this resource/api"),
        ),
        ({"error": "invalid_token", "error_description": "Invalid Value"}, (None, "invalid_token", "Invalid Value")),
        (b"not json", (None, None, None)),
        (json.dumps(CALLER_NO_PERMISSION), ("PERMISSION_DENIED", None, "The caller does not have permission")),
        ([1, 2], (None, None, None)),
    ],
)
def test_parse_api_error(body, expected):
    assert fl.parse_api_error(body) == expected


def test_classify_api_error():
    assert fl.classify_api_error(403, "PERMISSION_DENIED", "insufficientPermissions", None) == (
        "token_unauthorized_scope",
        False,
    )
    assert fl.classify_api_error(403, None, None, "Request had insufficient authentication scopes.")[0] == (
        "token_unauthorized_scope"
    )
    assert fl.classify_api_error(403, "PERMISSION_DENIED", None, "The caller does not have permission") == (
        "api_error",
        False,
    )
    assert fl.classify_api_error(500, None, None, None) == ("api_error", True)
    assert fl.classify_api_error(408, None, None, None) == ("api_error", True)


# --------------------------------------------------------------------------- session and secrets


class RecordingAdapter(BaseAdapter):
    def __init__(self):
        super().__init__()
        self.verify = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.verify.append(verify)
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.request = request
        response.url = request.url
        return response

    def close(self):
        pass


def test_session_ca_beats_ca_bundle_environment(monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE replace session.verify; new_session's sessions do not."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/somewhere/else.pem")
    session = ss.new_session("/lab/ca.pem", 4)
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.get("https://example.test/")  # no verify= here, like google-auth's transport
    session.request("GET", "https://example.test/", verify=None)
    assert adapter.verify == ["/lab/ca.pem", "/lab/ca.pem"]
    plain = requests.Session()
    plain.verify = "/lab/ca.pem"
    plain.mount("https://", adapter)
    plain.get("https://example.test/")
    assert adapter.verify[-1] == "/somewhere/else.pem"  # the trap the verifying session avoids


def test_without_ca_path_the_environment_bundle_is_honoured(monkeypatch):
    """No ca_path: requests' usual default store, which REQUESTS_CA_BUNDLE may name."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/corporate/ca.pem")
    session = ss.new_session(None, 4)
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.get("https://example.test/")
    assert adapter.verify == ["/corporate/ca.pem"]
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    session.get("https://example.test/")
    assert adapter.verify[-1] is True


def test_session_refuses_cookies_and_sizes_the_pool():
    session = ss.new_session(None, 32)
    adapter = session.get_adapter("https://gmail.googleapis.com/")
    assert adapter._pool_maxsize == 32
    assert not session.cookies._policy.allowed_domains()


def test_no_token_in_errors_or_repr():
    session = ScriptedSession(FakeResponse(403, INSUFFICIENT_SCOPE))
    with pytest.raises(fl.GoogleApiError) as info:
        make_client(session).request("GET", "gmail", "/x", "a@example.test", SCOPES)
    text = " ".join([str(info.value), repr(info.value), json.dumps(info.value.as_result())])
    assert "ya29" not in text
    assert "secret-token" not in text


def test_concurrent_requests_mint_one_token_per_subject():
    tokens = FakeTokens(expiry=datetime.datetime(2100, 1, 1))
    session = ScriptedSession(FakeResponse(200, {}))
    client = make_client(session, tokens)
    subjects = ["user%04d@example.test" % (index % 50) for index in range(400)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda subject: client.request("GET", "gmail", "/x", subject, SCOPES), subjects))
    assert len(session.calls) == 400
    # A race may mint a second token for a subject; never many.
    assert len({call[0] for call in tokens.calls}) == 50
    assert len(tokens.calls) <= 100
